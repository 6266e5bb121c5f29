//! The time the large allocator's purge by decay goes by.

/// Milliseconds of `CLOCK_MONOTONIC_COARSE`: read from the vDSO, no system
/// call, some 20 ns; its resolution (the kernel's tick, 1-4 ms) is fine for
/// delays of 10 ms and more.
pub fn now_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer; this clock cannot fail on Linux
    // (2.6.32 and later), and on success errno is untouched.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}
