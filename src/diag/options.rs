//! Run-time options, read once from the environment at initialisation
//! (`getenv` only reads `environ`: no allocation). The README's option table
//! lists them; each has a default that needs no setting.

use core::ffi::CStr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering::Relaxed};

/// `MALLOCATOR_ON_ERROR=abort`: a bad free aborts instead of being reported
/// and ignored.
static ABORT_ON_ERROR: AtomicBool = AtomicBool::new(false);
/// `MALLOCATOR_STATS=1`: print the statistics table to stderr at exit.
static PRINT_STATS: AtomicBool = AtomicBool::new(false);
/// `MALLOCATOR_VERBOSE=1`: one line on stderr per mapping made or returned.
static VERBOSE: AtomicBool = AtomicBool::new(false);
/// `MALLOCATOR_SECURE=1`: guard pages after segment headers and a shuffled
/// order of fresh blocks in each page.
static SECURE: AtomicBool = AtomicBool::new(false);
/// `MALLOCATOR_RETAIN_PAGES=n` (0..=64, default 64): emptied small pages a
/// thread keeps before purging.
static RETAIN_PAGES: AtomicUsize = AtomicUsize::new(MAX_RETAIN_PAGES);
/// `MALLOCATOR_DIRTY_KIB=n` (default 2048): the least KiB of freed large
/// memory kept resident (the budget is twice the live large bytes if more).
static DIRTY_LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_DIRTY_KIB << 10);
/// `MALLOCATOR_DECAY_MS=n` (default 100): freed large memory unused this
/// long goes back to the system (see `large::budget`).
static DECAY_MS: AtomicUsize = AtomicUsize::new(DEFAULT_DECAY_MS);
/// `MALLOCATOR_PROFILE=<prefix>`: sample allocations and write
/// `<prefix>.<pid>.pb.gz` at exit (a pointer into the environment, which
/// outlives us; null when unset).
static PROFILE_PREFIX: AtomicPtr<u8> = AtomicPtr::new(core::ptr::null_mut());
static PROFILE_PREFIX_LEN: AtomicUsize = AtomicUsize::new(0);
/// `MALLOCATOR_PROFILE_RATE=n`: one sample per `n` bytes allocated on average.
static PROFILE_RATE: AtomicUsize = AtomicUsize::new(DEFAULT_PROFILE_RATE);
/// `MALLOCATOR_LEAKS=1`: sample, and report the sampled blocks still live at
/// exit on stderr.
static LEAKS: AtomicBool = AtomicBool::new(false);

/// The ring of emptied pages has this many slots (see `heap.rs` for the
/// measurement behind the default).
pub const MAX_RETAIN_PAGES: usize = 64;
/// 2 MiB, about the L2+L3 share of a core: what a program recycling large
/// buffers reuses while still warm (see `large.rs`).
const DEFAULT_DIRTY_KIB: usize = 2048;
/// 100 ms: ten times mimalloc's 10 ms, because on a loaded machine (2 shared
/// CPUs, `make -C bench run`'s own load) a step of `big_buffers` (25 MiB
/// faulted in) can take over 20 ms, and with 10 ms every such step gave all
/// cached mappings back and the next ones were mapped and faulted afresh:
/// 4.9 s against 0.68 s, 209 against 78 `mmap`/`munmap` calls. Short enough
/// that `sqlite`'s freed sort buffers go while its page cache grows (peak
/// RSS 39 MB with 10 to 200 ms, 46 MB with 1 s), and a program that stopped
/// using large memory gets it back at its next large request 50 ms later.
const DEFAULT_DECAY_MS: usize = 100;
/// 512 KiB, tcmalloc's and jemalloc's default sampling interval: a few
/// samples per megabyte keep the cost near zero (one stack capture, a few
/// microseconds, per half megabyte allocated) while a site that holds 1 % of
/// a 100 MB heap still gets about 20 samples.
const DEFAULT_PROFILE_RATE: usize = 512 << 10;

pub fn init() {
    ABORT_ON_ERROR.store(env(c"MALLOCATOR_ON_ERROR") == Some(b"abort"), Relaxed);
    PRINT_STATS.store(env_flag(c"MALLOCATOR_STATS"), Relaxed);
    VERBOSE.store(env_flag(c"MALLOCATOR_VERBOSE"), Relaxed);
    SECURE.store(env_flag(c"MALLOCATOR_SECURE"), Relaxed);
    if let Some(n) = env_number(c"MALLOCATOR_RETAIN_PAGES") {
        RETAIN_PAGES.store(n.min(MAX_RETAIN_PAGES), Relaxed);
    }
    if let Some(kib) = env_number(c"MALLOCATOR_DIRTY_KIB") {
        DIRTY_LIMIT.store(kib.saturating_mul(1024), Relaxed);
    }
    if let Some(ms) = env_number(c"MALLOCATOR_DECAY_MS") {
        DECAY_MS.store(ms, Relaxed);
    }
    if let Some(prefix) = env(c"MALLOCATOR_PROFILE").filter(|p| !p.is_empty()) {
        PROFILE_PREFIX_LEN.store(prefix.len(), Relaxed);
        PROFILE_PREFIX.store(prefix.as_ptr().cast_mut(), Relaxed);
    }
    if let Some(rate) = env_number(c"MALLOCATOR_PROFILE_RATE") {
        PROFILE_RATE.store(rate.max(1), Relaxed);
    }
    LEAKS.store(env_flag(c"MALLOCATOR_LEAKS"), Relaxed);
    if let Some(n) = env_number(c"MALLOCATOR_FAIL_MMAP") {
        crate::os::fail_nth_map(n as u64);
    }
}

pub fn abort_on_error() -> bool {
    ABORT_ON_ERROR.load(Relaxed)
}

pub fn print_stats() -> bool {
    PRINT_STATS.load(Relaxed)
}

pub fn verbose() -> bool {
    VERBOSE.load(Relaxed)
}

pub fn secure() -> bool {
    SECURE.load(Relaxed)
}

pub fn retain_pages() -> usize {
    RETAIN_PAGES.load(Relaxed)
}

pub fn dirty_limit() -> usize {
    DIRTY_LIMIT.load(Relaxed)
}

pub fn decay_ms() -> u64 {
    DECAY_MS.load(Relaxed) as u64
}

/// The profile's file prefix, if profiling was asked for.
pub fn profile_prefix() -> Option<&'static [u8]> {
    let p = PROFILE_PREFIX.load(Relaxed);
    // SAFETY: `init` stored a pointer into the environment and its length.
    (!p.is_null()).then(|| unsafe { core::slice::from_raw_parts(p, PROFILE_PREFIX_LEN.load(Relaxed)) })
}

pub fn profile_rate() -> usize {
    PROFILE_RATE.load(Relaxed)
}

pub fn leaks() -> bool {
    LEAKS.load(Relaxed)
}

fn env(name: &CStr) -> Option<&'static [u8]> {
    // SAFETY: `name` is NUL-terminated; the result, if not null, is a
    // NUL-terminated string owned by the environment, which outlives us.
    unsafe {
        let v = libc::getenv(name.as_ptr());
        (!v.is_null()).then(|| CStr::from_ptr(v).to_bytes())
    }
}

/// Set, and not "0".
fn env_flag(name: &CStr) -> bool {
    env(name).is_some_and(|v| !v.is_empty() && v != b"0")
}

fn env_number(name: &CStr) -> Option<usize> {
    parse_number(env(name)?)
}

/// A decimal number; None for anything else (the default then stays).
fn parse_number(s: &[u8]) -> Option<usize> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0usize, |n, &c| {
        if c.is_ascii_digit() { n.checked_mul(10)?.checked_add((c - b'0') as usize) } else { None }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_strictly() {
        assert_eq!(parse_number(b"2048"), Some(2048));
        assert_eq!(parse_number(b"0"), Some(0));
        assert_eq!(parse_number(b""), None);
        assert_eq!(parse_number(b"12k"), None);
        assert_eq!(parse_number(b"-1"), None);
        assert_eq!(parse_number(b"99999999999999999999999999"), None);
    }
}
