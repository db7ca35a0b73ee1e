//! Memory advice for large tables allocated outside DPDK.

/// Ask the kernel to back `s` with transparent huge pages
/// (`madvise(MADV_HUGEPAGE)`), before it is touched. Returns false where the
/// kernel refuses (THP disabled); the memory works either way, with more
/// TLB misses.
pub fn advise_hugepages<T>(s: &[T]) -> bool {
    const HUGE: usize = 2 << 20;
    let start = s.as_ptr() as usize;
    let end = start + std::mem::size_of_val(s);
    // Only whole 2 MiB pages inside the allocation can become huge pages.
    let a = start.next_multiple_of(HUGE);
    let b = end / HUGE * HUGE;
    if b <= a {
        return false;
    }
    // SAFETY: [a, b) lies inside the live allocation behind `s`, which the
    // caller's borrow keeps alive for the call; MADV_HUGEPAGE only changes
    // how the kernel backs those pages, never their contents or mapping, so
    // no Rust object is affected.
    unsafe { libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_HUGEPAGE) == 0 }
}

/// `n` zeroed `T`s on transparent huge pages where the kernel allows:
/// advised before the first touch. (An over-aligned zeroed allocation is
/// written with zeros by the allocator, which faults it all in as 4 KiB
/// pages before any advice could apply.)
pub fn zeroed_on_hugepages<T: bytemuck::Zeroable>(n: usize) -> Box<[T]> {
    let mut v: Vec<T> = Vec::with_capacity(n);
    advise_hugepages(v.spare_capacity_mut());
    v.resize_with(n, T::zeroed);
    v.into_boxed_slice()
}

/// Hint the CPU to bring the cache line holding `r` into L1 (the packet
/// loop uses it for a whole burst's connection-table lines before it needs
/// them). Never faults; a no-op off x86_64.
#[inline(always)]
pub fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE (and so PREFETCHT0) is part of the x86_64 baseline, so the
    // target feature `_mm_prefetch` requires is always present; a prefetch
    // only loads a cache line, never faults and changes no memory, and `r`
    // is a valid reference anyway.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(r as *const T as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}
