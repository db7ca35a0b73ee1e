//! Memory mappings (and starting a process without inherited
//! descriptors): the one place outside the DPDK wrapper where rvs calls
//! the C library itself. A [`Region`] is anonymous memory (zeroed, faulted
//! in lazily) or a shared mapping of a file, seen as 64-bit atomic words,
//! so that the connection table can live in a file that outlives the
//! process (see `conn::persist`). Whatever a previous process left there
//! is read through a private mapping, as atomics (any bit pattern is a
//! valid `AtomicU64`), and checked before it is used.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::AtomicU64;

/// A mapping of `len` bytes (a multiple of 8), unmapped on drop.
pub struct Region {
    ptr: *mut libc::c_void,
    len: usize,
    /// The file behind a shared mapping (kept open for its lifetime).
    _file: Option<File>,
}

// SAFETY: the mapping is plain memory owned by this value and accessed only
// through `&[AtomicU64]`, which is Sync; moving the owner to another thread
// moves nothing but the pointer.
unsafe impl Send for Region {}
// SAFETY: as above: shared access goes through atomics only.
unsafe impl Sync for Region {}

impl Region {
    /// `len` bytes of zeroed private memory.
    pub fn anonymous(len: usize) -> io::Result<Region> {
        Self::map(len, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, None)
    }

    /// A new file `path` (mode 0600; refused if anything is there, a
    /// symlink included) of `len` bytes of zeros, its blocks allocated now
    /// (so a full tmpfs is an error here, not a SIGBUS later), mapped
    /// shared: what is stored in the region is in the file.
    pub fn create(path: &Path, len: usize) -> io::Result<Region> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        file.set_len(len as u64)?;
        // SAFETY: a plain system call on a file descriptor we own; the
        // result is checked.
        let r = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len as libc::off_t) };
        if r != 0 {
            let e = io::Error::from_raw_os_error(r);
            drop(file);
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        let fd = file.as_raw_fd();
        Self::map(len, libc::MAP_SHARED, fd, Some(file))
    }

    /// File `path` whole, read-only on disk and mapped private (writes
    /// stay in this process): for reading what another process left.
    pub fn open_private(path: &Path) -> io::Result<Region> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        let len = file.metadata()?.len() as usize;
        if len == 0 || !len.is_multiple_of(8) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("size {len} is not a table's"),
            ));
        }
        let fd = file.as_raw_fd();
        Self::map(len, libc::MAP_PRIVATE, fd, Some(file))
    }

    fn map(len: usize, flags: i32, fd: i32, file: Option<File>) -> io::Result<Region> {
        assert!(
            len > 0 && len.is_multiple_of(8),
            "a region is whole 64-bit words"
        );
        // SAFETY: a fresh mapping chosen by the kernel (address NULL), of a
        // file we hold open or of anonymous memory; no existing memory is
        // affected. The result is checked against MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Region {
            ptr,
            len,
            _file: file,
        })
    }

    /// The region as atomic words.
    #[inline]
    pub fn words(&self) -> &[AtomicU64] {
        // SAFETY: `ptr` is a live mapping of `len` bytes, page-aligned (so
        // aligned for u64), readable and writable, until `self` is dropped,
        // which the returned borrow prevents. AtomicU64 has no invalid bit
        // patterns. A shared file mapping is only ever this rvsd's: the file
        // is created 0600 by `create`, and rvsd holds the table's lock
        // (`lock`) for as long as it runs, so no other process writes or
        // truncates it meanwhile; a private mapping is this process's alone.
        unsafe { std::slice::from_raw_parts(self.ptr as *const AtomicU64, self.len / 8) }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// An exclusive lock on file `path` (created 0600 if missing), held until
/// the returned file is dropped or the process ends; an error if another
/// process holds it.
pub fn lock(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    // SAFETY: a plain system call on a file descriptor we own; the result
    // is checked.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// Milliseconds on CLOCK_BOOTTIME: one clock for every process of this
/// boot, unmoved by changes to the wall clock, counting suspended time.
pub fn boottime_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a pointer to a
    // live local; the result is checked.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if r != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `map` made; no borrow of it
        // outlives `self`.
        unsafe {
            libc::munmap(self.ptr, self.len);
        }
    }
}

/// Start `cmd` without the descriptors this process holds open beyond
/// stdin, stdout and stderr: DPDK opens hugepage files, memfds, packet
/// sockets and tap queues without close-on-exec, and a successor rvsd
/// (SIGUSR2) that inherited them would keep the old process's hugepages,
/// sockets and taps alive for its whole life. In the child, between fork
/// and exec, every descriptor from 3 up is marked close-on-exec
/// (close_range(2), Linux 5.11), so the exec drops them — except that the
/// standard library's own error pipe, already close-on-exec, still reports
/// an exec failure.
pub fn spawn_without_inherited_fds(
    cmd: &mut std::process::Command,
) -> io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    // Kernels before 5.11 lack CLOSE_RANGE_CLOEXEC: then every descriptor
    // up to the limit is marked one by one (the limit read here, before
    // the fork).
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into `lim`, which we own.
    let max_fd = match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } {
        0 => lim.rlim_cur.min(1 << 20) as libc::c_int,
        _ => 65536,
    };
    // SAFETY: the closure runs in the forked child before exec and makes
    // raw system calls only (async-signal-safe: no allocation, no lock);
    // it touches no memory of the parent.
    unsafe {
        cmd.pre_exec(move || {
            let r = libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            if r != 0 {
                for fd in 3..max_fd {
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                }
            }
            Ok(())
        });
    }
    cmd.spawn()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn a_child_inherits_no_descriptor_beyond_the_standard_three() {
        let f = File::open("/dev/null").unwrap();
        // SAFETY: dup of a valid descriptor; the copy is inheritable (no
        // close-on-exec), as DPDK's are, and closed below.
        let fd = unsafe { libc::dup(f.as_raw_fd()) };
        assert!(fd > 2);
        let listed = |out: std::process::Output| {
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .any(|n| n == fd.to_string())
        };
        let ls = || {
            let mut c = std::process::Command::new("ls");
            c.arg("/proc/self/fd").stdout(std::process::Stdio::piped());
            c
        };
        let plain = ls().spawn().unwrap().wait_with_output().unwrap();
        assert!(listed(plain), "the test's descriptor is inheritable");
        let child = spawn_without_inherited_fds(&mut ls()).unwrap();
        assert!(!listed(child.wait_with_output().unwrap()), "not inherited");
        // An exec failure is still reported.
        let mut missing = std::process::Command::new("/nonexistent/rvsd");
        assert!(spawn_without_inherited_fds(&mut missing).is_err());
        // SAFETY: fd is ours, open, and closed once.
        unsafe { libc::close(fd) };
    }

    #[test]
    fn a_file_region_keeps_what_was_written_after_it_is_unmapped() {
        let dir = std::env::temp_dir().join(format!("rvs-sys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("r");
        let _ = std::fs::remove_file(&path);
        let r = Region::create(&path, 4096).unwrap();
        assert!(r.words().iter().all(|w| w.load(Relaxed) == 0));
        r.words()[7].store(42, Relaxed);
        assert!(Region::create(&path, 4096).is_err(), "never over a file");
        drop(r);
        let p = Region::open_private(&path).unwrap();
        assert_eq!((p.len(), p.words()[7].load(Relaxed)), (4096, 42));
        p.words()[7].store(1, Relaxed);
        drop(p);
        let p = Region::open_private(&path).unwrap();
        assert_eq!(
            p.words()[7].load(Relaxed),
            42,
            "private writes stay private"
        );
        std::fs::write(&path, [1u8; 12]).unwrap();
        assert!(Region::open_private(&path).is_err(), "not whole words");
        let a = Region::anonymous(1 << 20).unwrap();
        assert_eq!(a.words().len(), 1 << 17);
        // The lock is exclusive, also between two opens in one process.
        let l = lock(&dir.join("l")).unwrap();
        assert!(lock(&dir.join("l")).is_err());
        drop(l);
        assert!(lock(&dir.join("l")).is_ok());
        assert!(boottime_ms() > 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
