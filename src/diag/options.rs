//! Run-time options, read once from the environment at initialisation
//! (`getenv` only reads `environ`: no allocation). The README's option table
//! lists them; each has a default that needs no setting.

use core::ffi::CStr;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU64, AtomicUsize, Ordering::Relaxed};

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
/// long goes back to the system (see `large::budget`), and so do a heap's
/// dirty small pages once the first has waited this long
/// (`thread::pages::DIRTY_PAGES_MAX`).
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
/// `MALLOCATOR_PROFILE_SIGNAL=<name or number>`: a numbered profile file
/// each time the process gets this signal (0: none).
static PROFILE_SIGNAL: AtomicI32 = AtomicI32::new(0);
/// `MALLOCATOR_PROFILE_INTERVAL=n`: a numbered profile file every `n` bytes
/// allocated (0: none).
static PROFILE_INTERVAL: AtomicU64 = AtomicU64::new(0);

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
    if let Some(name) = env(c"MALLOCATOR_PROFILE_SIGNAL").filter(|n| !n.is_empty()) {
        match parse_signal(name) {
            Some(signal) => PROFILE_SIGNAL.store(signal, Relaxed),
            None => crate::sys::errno::write_fd(
                2,
                b"mallocator: MALLOCATOR_PROFILE_SIGNAL is not a signal a program can catch; no dumps on a signal\n",
            ),
        }
    }
    if let Some(n) = env(c"MALLOCATOR_PROFILE_INTERVAL").and_then(parse_u64) {
        PROFILE_INTERVAL.store(n, Relaxed);
    }
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

pub fn profile_signal() -> Option<libc::c_int> {
    Some(PROFILE_SIGNAL.load(Relaxed)).filter(|&s| s != 0)
}

pub fn profile_interval() -> u64 {
    PROFILE_INTERVAL.load(Relaxed)
}

/// Signals a program may name for its dumps, by name (`SIG` optional).
/// Left out: those it cannot catch (`KILL`, `STOP`) and those the kernel
/// sends for a fault of the thread (`SEGV`, `BUS`, `FPE`, `ILL`, `TRAP`,
/// `ABRT`, `SYS`), which must keep their meaning.
const SIGNALS: [(&[u8], libc::c_int); 18] = [
    (b"HUP", libc::SIGHUP),
    (b"INT", libc::SIGINT),
    (b"QUIT", libc::SIGQUIT),
    (b"USR1", libc::SIGUSR1),
    (b"USR2", libc::SIGUSR2),
    (b"PIPE", libc::SIGPIPE),
    (b"ALRM", libc::SIGALRM),
    (b"TERM", libc::SIGTERM),
    (b"CHLD", libc::SIGCHLD),
    (b"CONT", libc::SIGCONT),
    (b"TSTP", libc::SIGTSTP),
    (b"TTIN", libc::SIGTTIN),
    (b"TTOU", libc::SIGTTOU),
    (b"URG", libc::SIGURG),
    (b"VTALRM", libc::SIGVTALRM),
    (b"PROF", libc::SIGPROF),
    (b"WINCH", libc::SIGWINCH),
    (b"PWR", libc::SIGPWR),
];

/// A signal by name (`USR2`, `SIGUSR2`) or number (one of the named, or a
/// real-time signal); None for anything else.
fn parse_signal(s: &[u8]) -> Option<libc::c_int> {
    let name = s.strip_prefix(b"SIG").unwrap_or(s);
    if let Some(&(_, signal)) = SIGNALS.iter().find(|(n, _)| *n == name) {
        return Some(signal);
    }
    let n = libc::c_int::try_from(parse_number(s)?).ok()?;
    // glibc's real-time range, after the ones it keeps for itself.
    let realtime = libc::SIGRTMIN()..=libc::SIGRTMAX();
    (SIGNALS.iter().any(|&(_, signal)| signal == n) || realtime.contains(&n)).then_some(n)
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
    usize::try_from(parse_u64(s)?).ok()
}

/// A decimal number of 64 bits (byte counts past 4 GiB on 32-bit too).
fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(
        0u64,
        |n, &c| {
            if c.is_ascii_digit() { n.checked_mul(10)?.checked_add(u64::from(c - b'0')) } else { None }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal(b"USR2"), Some(libc::SIGUSR2));
        assert_eq!(parse_signal(b"SIGUSR1"), Some(libc::SIGUSR1));
        assert_eq!(parse_signal(b"12"), Some(12));
        assert_eq!(parse_signal(b"34"), Some(34));
        for refused in [&b"KILL"[..], b"SIGSEGV", b"9", b"11", b"0", b"usr2", b"", b"99"] {
            assert_eq!(parse_signal(refused), None, "{}", String::from_utf8_lossy(refused));
        }
    }

    #[test]
    fn numbers_parse_strictly() {
        assert_eq!(parse_number(b"2048"), Some(2048));
        assert_eq!(parse_number(b"0"), Some(0));
        assert_eq!(parse_number(b""), None);
        assert_eq!(parse_number(b"12k"), None);
        assert_eq!(parse_number(b"-1"), None);
        assert_eq!(parse_number(b"99999999999999999999999999"), None);
        assert_eq!(parse_u64(b"20000000000"), Some(20_000_000_000));
    }
}
