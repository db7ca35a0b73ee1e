//! The interposed C functions: the only `unsafe` code of the library.
//!
//! Each one calls the next definition of itself (`dlsym(RTLD_NEXT)`, the
//! C library's) unless the fd is a tracked generic-netlink socket and the
//! call concerns rvsd; then the safe logic in the crate root decides. The
//! pointers come from the caller under the contracts of the C functions
//! these replace (POSIX `sendmsg`, `recvmsg`, ...); this module only turns
//! them into slices within the lengths the caller gave.

use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicUsize, Ordering};

use libc::{c_char, c_int, c_void, iovec, msghdr, size_t, sockaddr, socklen_t, ssize_t, FILE};

/// Resolves `name` in the libraries after this one, once; None if absent.
fn next_symbol(slot: &AtomicUsize, name: &CStr) -> Option<usize> {
    let p = slot.load(Ordering::Relaxed);
    if p != 0 {
        return Some(p);
    }
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name has no
    // preconditions; it returns null when the symbol does not exist.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
    if p == 0 {
        return None;
    }
    slot.store(p, Ordering::Relaxed);
    Some(p)
}

/// The next definition of `$name` as a function pointer of type `$ty`.
macro_rules! next {
    ($name:literal, $ty:ty) => {{
        static SLOT: AtomicUsize = AtomicUsize::new(0);
        next_symbol(&SLOT, $name).map(|p| {
            // SAFETY: p is the address dlsym returned for this symbol, whose
            // C prototype is $ty; usize and fn pointers have the same size.
            unsafe { std::mem::transmute::<usize, $ty>(p) }
        })
    }};
}

fn set_errno(e: c_int) {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() = e };
}

type SocketFn = unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;
type CloseFn = unsafe extern "C" fn(c_int) -> c_int;
type SendToFn = unsafe extern "C" fn(
    c_int,
    *const c_void,
    size_t,
    c_int,
    *const sockaddr,
    socklen_t,
) -> ssize_t;
type SendFn = unsafe extern "C" fn(c_int, *const c_void, size_t, c_int) -> ssize_t;
type SendMsgFn = unsafe extern "C" fn(c_int, *const msghdr, c_int) -> ssize_t;
type RecvFromFn = unsafe extern "C" fn(
    c_int,
    *mut c_void,
    size_t,
    c_int,
    *mut sockaddr,
    *mut socklen_t,
) -> ssize_t;
type RecvFn = unsafe extern "C" fn(c_int, *mut c_void, size_t, c_int) -> ssize_t;
type RecvMsgFn = unsafe extern "C" fn(c_int, *mut msghdr, c_int) -> ssize_t;
type FopenFn = unsafe extern "C" fn(*const c_char, *const c_char) -> *mut FILE;

/// The netlink port id the kernel gave `fd` (0 if unbound).
fn portid(fd: c_int) -> u32 {
    // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
    let mut a: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_nl>() as socklen_t;
    // SAFETY: a and len are valid for writes of len bytes.
    let r = unsafe { libc::getsockname(fd, &mut a as *mut _ as *mut sockaddr, &mut len) };
    if r == 0 {
        a.nl_pid
    } else {
        0
    }
}

/// The kernel's address (`sockaddr_nl`, pid 0) into a caller's name buffer.
///
/// # Safety
/// `name` is null or valid for `*len` bytes of writes; `len` is null or
/// valid.
unsafe fn fill_kernel_addr(name: *mut c_void, len: *mut socklen_t) {
    if len.is_null() {
        return;
    }
    let size = std::mem::size_of::<libc::sockaddr_nl>();
    // SAFETY: len is non-null and valid by the function's contract.
    let room = unsafe { *len } as usize;
    if !name.is_null() && room >= size {
        // SAFETY: as above; all-zero sockaddr_nl is valid.
        let mut a: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        a.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: name has room for size bytes (checked above).
        unsafe { std::ptr::write_unaligned(name as *mut libc::sockaddr_nl, a) };
    }
    // SAFETY: len is valid for writes.
    unsafe { *len = size as socklen_t };
}

/// A datagram to the kernel or to rvsd; `Some(len)` if rvsd took it.
fn divert_bytes(fd: c_int, data: &[u8]) -> Option<ssize_t> {
    if !crate::tracked(fd) {
        return None;
    }
    crate::divert(fd, portid(fd), data).then_some(data.len() as ssize_t)
}

/// # Safety
/// As `socket(2)`.
#[no_mangle]
pub unsafe extern "C" fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    let Some(f) = next!(c"socket", SocketFn) else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    // SAFETY: the C library's socket with the caller's arguments.
    let fd = unsafe { f(domain, ty, protocol) };
    if fd >= 0 {
        crate::track(
            fd,
            domain == libc::AF_NETLINK && protocol == libc::NETLINK_GENERIC,
        );
    }
    fd
}

/// # Safety
/// As `close(2)`.
#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    crate::untrack(fd);
    let Some(f) = next!(c"close", CloseFn) else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    // SAFETY: the C library's close.
    unsafe { f(fd) }
}

/// # Safety
/// As `sendto(2)`: `buf` is valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    len: size_t,
    flags: c_int,
    addr: *const sockaddr,
    alen: socklen_t,
) -> ssize_t {
    if !buf.is_null() && crate::tracked(fd) {
        // SAFETY: buf is valid for len bytes (sendto's contract).
        let data = unsafe { std::slice::from_raw_parts(buf as *const u8, len) };
        if let Some(n) = divert_bytes(fd, data) {
            return n;
        }
    }
    let Some(f) = next!(c"sendto", SendToFn) else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    // SAFETY: the C library's sendto with the caller's arguments.
    unsafe { f(fd, buf, len, flags, addr, alen) }
}

/// # Safety
/// As `send(2)`.
#[no_mangle]
pub unsafe extern "C" fn send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t {
    if !buf.is_null() && crate::tracked(fd) {
        // SAFETY: buf is valid for len bytes (send's contract).
        let data = unsafe { std::slice::from_raw_parts(buf as *const u8, len) };
        if let Some(n) = divert_bytes(fd, data) {
            return n;
        }
    }
    let Some(f) = next!(c"send", SendFn) else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    // SAFETY: the C library's send with the caller's arguments.
    unsafe { f(fd, buf, len, flags) }
}

/// The iovecs of a msghdr as slices.
///
/// # Safety
/// `msg` is a valid msghdr whose `msg_iov` has `msg_iovlen` valid entries,
/// each valid for `iov_len` bytes, for the lifetime 'a.
unsafe fn iovecs<'a>(msg: *const msghdr) -> Vec<&'a mut [u8]> {
    // SAFETY: msg is valid (contract).
    let m = unsafe { &*msg };
    if m.msg_iov.is_null() {
        return Vec::new();
    }
    // SAFETY: msg_iov has msg_iovlen entries (contract).
    let iov: &[iovec] = unsafe { std::slice::from_raw_parts(m.msg_iov, m.msg_iovlen) };
    iov.iter()
        .filter(|v| !v.iov_base.is_null() && v.iov_len > 0)
        // SAFETY: each iovec is valid for iov_len bytes (contract).
        .map(|v| unsafe { std::slice::from_raw_parts_mut(v.iov_base as *mut u8, v.iov_len) })
        .collect()
}

/// # Safety
/// As `sendmsg(2)`.
#[no_mangle]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    if !msg.is_null() && crate::tracked(fd) {
        // SAFETY: msg and its iovecs are valid (sendmsg's contract).
        let data: Vec<u8> = unsafe { iovecs(msg) }.concat();
        if let Some(n) = divert_bytes(fd, &data) {
            return n;
        }
    }
    let Some(f) = next!(c"sendmsg", SendMsgFn) else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    // SAFETY: the C library's sendmsg with the caller's arguments.
    unsafe { f(fd, msg, flags) }
}

/// Length to return for a datagram of `len` with `copied` bytes delivered.
fn recv_result(len: usize, copied: usize, flags: c_int) -> ssize_t {
    if flags & libc::MSG_TRUNC != 0 {
        len as ssize_t
    } else {
        copied as ssize_t
    }
}

/// # Safety
/// As `recvmsg(2)`.
#[no_mangle]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    if !msg.is_null() && crate::tracked(fd) {
        // SAFETY: msg and its iovecs are valid for writes (recvmsg's contract).
        let mut bufs = unsafe { iovecs(msg) };
        if let Some((len, copied)) = crate::take(fd, &mut bufs, flags & libc::MSG_PEEK != 0) {
            // SAFETY: msg is valid for writes (contract).
            let m = unsafe { &mut *msg };
            // SAFETY: msg_name is null or valid for msg_namelen bytes.
            unsafe { fill_kernel_addr(m.msg_name, &mut m.msg_namelen) };
            m.msg_controllen = 0;
            m.msg_flags = if copied < len { libc::MSG_TRUNC } else { 0 };
            return recv_result(len, copied, flags);
        }
    }
    let Some(f) = next!(c"recvmsg", RecvMsgFn) else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    // SAFETY: the C library's recvmsg with the caller's arguments.
    unsafe { f(fd, msg, flags) }
}

/// # Safety
/// As `recvfrom(2)`.
#[no_mangle]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    alen: *mut socklen_t,
) -> ssize_t {
    if crate::tracked(fd) {
        let mut bufs: Vec<&mut [u8]> = if buf.is_null() || len == 0 {
            Vec::new()
        } else {
            // SAFETY: buf is valid for len bytes of writes (contract).
            vec![unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, len) }]
        };
        if let Some((dlen, copied)) = crate::take(fd, &mut bufs, flags & libc::MSG_PEEK != 0) {
            // SAFETY: addr is null or valid for *alen bytes (contract).
            unsafe { fill_kernel_addr(addr as *mut c_void, alen) };
            return recv_result(dlen, copied, flags);
        }
    }
    let Some(f) = next!(c"recvfrom", RecvFromFn) else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    // SAFETY: the C library's recvfrom with the caller's arguments.
    unsafe { f(fd, buf, len, flags, addr, alen) }
}

/// # Safety
/// As `recv(2)`.
#[no_mangle]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t {
    if crate::tracked(fd) {
        // SAFETY: same contract as recvfrom without an address.
        return unsafe {
            recvfrom(
                fd,
                buf,
                len,
                flags,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
    }
    let Some(f) = next!(c"recv", RecvFn) else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    // SAFETY: the C library's recv with the caller's arguments.
    unsafe { f(fd, buf, len, flags) }
}

/// rvsd's `/proc/net/ip_vs_conn` as a FILE, or None (then the real file
/// is opened, which does not exist without ip_vs).
///
/// # Safety
/// `path` and `mode` are NUL-terminated strings (fopen's contract).
unsafe fn open_conn_proc(path: *const c_char, mode: *const c_char) -> Option<*mut FILE> {
    if path.is_null() || mode.is_null() {
        return None;
    }
    // SAFETY: path is NUL-terminated (contract).
    let p = unsafe { CStr::from_ptr(path) };
    if p.to_bytes() != crate::CONN_PROC_FILE.as_bytes() {
        return None;
    }
    let text = crate::conn_text()?;
    let name = CString::new("ip_vs_conn").ok()?;
    // SAFETY: name is NUL-terminated; memfd_create has no other precondition.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut off = 0;
    while off < text.len() {
        // SAFETY: text[off..] is valid for reading its length.
        let n = unsafe { libc::write(fd, text[off..].as_ptr() as *const c_void, text.len() - off) };
        if n <= 0 {
            // SAFETY: fd is ours.
            unsafe { close(fd) };
            return None;
        }
        off += n as usize;
    }
    // SAFETY: fd is ours; mode is NUL-terminated (contract).
    unsafe {
        libc::lseek(fd, 0, libc::SEEK_SET);
        let f = libc::fdopen(fd, mode);
        if f.is_null() {
            close(fd);
            return None;
        }
        Some(f)
    }
}

/// # Safety
/// As `fopen(3)`.
#[no_mangle]
pub unsafe extern "C" fn fopen(path: *const c_char, mode: *const c_char) -> *mut FILE {
    // SAFETY: fopen's contract holds for the caller's arguments.
    if let Some(f) = unsafe { open_conn_proc(path, mode) } {
        return f;
    }
    let Some(f) = next!(c"fopen", FopenFn) else {
        set_errno(libc::ENOSYS);
        return std::ptr::null_mut();
    };
    // SAFETY: the C library's fopen with the caller's arguments.
    unsafe { f(path, mode) }
}

/// # Safety
/// As `fopen64(3)`.
#[no_mangle]
pub unsafe extern "C" fn fopen64(path: *const c_char, mode: *const c_char) -> *mut FILE {
    // SAFETY: fopen's contract holds for the caller's arguments.
    if let Some(f) = unsafe { open_conn_proc(path, mode) } {
        return f;
    }
    let Some(f) = next!(c"fopen64", FopenFn) else {
        set_errno(libc::ENOSYS);
        return std::ptr::null_mut();
    };
    // SAFETY: the C library's fopen64 with the caller's arguments.
    unsafe { f(path, mode) }
}
