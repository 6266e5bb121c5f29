//! `errno` and raw writes: what `free` and the diagnostics need to leave a
//! caller's `errno` as they found it.

/// Restores `errno` when dropped: `free` must leave `errno` as it found it,
/// and its rare system calls (munmap, madvise, write) could change it.
pub struct SavedErrno(libc::c_int);

impl SavedErrno {
    pub fn new() -> Self {
        // SAFETY: __errno_location returns the calling thread's errno slot.
        Self(unsafe { *libc::__errno_location() })
    }
}

impl Drop for SavedErrno {
    fn drop(&mut self) {
        set_errno(self.0);
    }
}

/// Sets the calling thread's `errno`.
pub fn set_errno(code: libc::c_int) {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() = code };
}

/// Writes bytes to a file descriptor, ignoring failure: diagnostics must
/// never make things worse.
pub fn write_fd(fd: i32, bytes: &[u8]) {
    let _errno = SavedErrno::new();
    // SAFETY: the slice is valid for its length.
    unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
}
