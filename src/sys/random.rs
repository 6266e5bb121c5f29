//! Randomness for the per-process secrets.

/// Fills `buf` from the kernel's random source; returns false when it cannot.
pub fn random_bytes(buf: &mut [u8]) -> bool {
    // SAFETY: the buffer is valid for writes of its length; GRND_NONBLOCK
    // keeps an early-boot call from blocking inside malloc.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), libc::GRND_NONBLOCK) };
    n == buf.len() as isize
}
