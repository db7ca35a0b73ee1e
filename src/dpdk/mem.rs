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
