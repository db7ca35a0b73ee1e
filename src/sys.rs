//! Memory mappings: the one place outside the DPDK wrapper where rvs calls
//! the C library itself. A [`Region`] is anonymous memory (zeroed, faulted
//! in lazily) or a shared mapping of a file, seen as 64-bit atomic words,
//! so that the connection table can live in a file that outlives the
//! process (see `conn::persist`). Whatever another process wrote there is
//! only ever read through atomics: any bit pattern is a valid `AtomicU64`,
//! and the table validates every word it decodes.

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

    /// Map file `path` whole and shared, creating it (mode 0600) at `len`
    /// bytes of zeros if it does not exist. Returns the region and whether
    /// the file existed; an existing file keeps its size (the caller checks
    /// it).
    pub fn file(path: &Path, len: usize) -> io::Result<(Region, bool)> {
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        let size = file.metadata()?.len() as usize;
        let len = if existed && size > 0 {
            size
        } else {
            file.set_len(len as u64)?;
            len
        };
        if len == 0 || !len.is_multiple_of(8) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: size {len} is not a table's", path.display()),
            ));
        }
        let fd = file.as_raw_fd();
        let r = Self::map(len, libc::MAP_SHARED, fd, Some(file))?;
        Ok((r, existed && size > 0))
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
        // patterns, and all access (also by other processes mapping the
        // same file) is atomic, so no data race is possible.
        unsafe { std::slice::from_raw_parts(self.ptr as *const AtomicU64, self.len / 8) }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn a_file_region_keeps_what_was_written_after_it_is_unmapped() {
        let dir = std::env::temp_dir().join(format!("rvs-sys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("r");
        let _ = std::fs::remove_file(&path);
        let (r, existed) = Region::file(&path, 4096).unwrap();
        assert!(!existed);
        assert!(r.words().iter().all(|w| w.load(Relaxed) == 0));
        r.words()[7].store(42, Relaxed);
        drop(r);
        let (r, existed) = Region::file(&path, 8192).unwrap();
        assert!(existed);
        assert_eq!(r.len(), 4096, "an existing file keeps its size");
        assert_eq!(r.words()[7].load(Relaxed), 42);
        std::fs::write(&path, [1u8; 12]).unwrap();
        assert!(Region::file(&path, 4096).is_err(), "not whole words");
        let a = Region::anonymous(1 << 20).unwrap();
        assert_eq!(a.words().len(), 1 << 17);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
