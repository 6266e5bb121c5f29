//! The sampling heap profiler (`MALLOCATOR_PROFILE=<prefix>`,
//! `MALLOCATOR_LEAKS=1`).
//!
//! Each thread heap counts down the bytes it hands out; when the count
//! passes zero the allocation that crossed it is sampled, and the count
//! starts again from an exponentially distributed interval of mean
//! `MALLOCATOR_PROFILE_RATE` bytes. The sample points then form a Poisson
//! process over the allocated bytes, so a block of `s` bytes is sampled with
//! chance `p = 1 - e^(-s/rate)` whatever came before it, and counting it as
//! `1/p` blocks gives unbiased estimates (tcmalloc's and jemalloc's scheme).
//! With profiling off the interval is effectively infinite: the countdown
//! that replaced the requested-bytes counter is all the fast path pays.
//!
//! A sampled block is served by the large allocator (a page at least; small
//! requests too), so that its `free` takes the large path, which asks the
//! store to forget it; small frees never look. One sample in half a
//! megabyte makes the page it costs negligible.

#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
mod cfi;
mod dumps;
mod gzip;
mod leaks;
mod maps;
mod math;
mod pprof;
mod stack;
mod store;
mod symbols;
#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
mod walk;

use crate::diag::options;
use crate::large;
use crate::os::OS_PAGE;
use crate::sys::lock::SpinLock;
use core::ffi::CStr;
use core::sync::atomic::{AtomicBool, Ordering::Relaxed};
use store::{MAX_FRAMES, Store};

pub use dumps::install as install_signal;
pub use pprof::View;
pub use store::Detached;

static STORE: SpinLock<Store> = SpinLock::new(Store::new());

/// Runs `f` on the store, under its lock; then writes a dump that a signal
/// asked for meanwhile (see `dumps`).
fn with_store<R>(f: impl FnOnce(&mut Store) -> R) -> R {
    let r = f(&mut STORE.lock());
    dumps::after_unlock();
    r
}
static ENABLED: AtomicBool = AtomicBool::new(false);

/// The interval with profiling off: never reached on 64-bit; on 32-bit
/// every GiB a heap allocates costs one trip through the slow path.
pub const OFF: isize = isize::MAX / 2;

/// Reads the options (after `options::init`).
pub fn init() {
    ENABLED.store(options::profile_prefix().is_some() || options::leaks(), Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Relaxed)
}

/// Bytes until the next sample: exponential with mean the sampling rate
/// (`-ln(u) * rate`, `u` uniform in (0, 1]), from the heap's generator.
pub fn next_interval(rng: &mut u64) -> isize {
    if !enabled() {
        return OFF;
    }
    if *rng == 0 {
        // Seeded by the address of the heap's generator and the clock: each
        // heap draws its own sequence.
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid out-pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        // Times 2^64 / golden ratio spreads the few changing bits over all.
        *rng = (rng as *mut u64 as u64 ^ ts.tv_nsec as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    }
    // xorshift64*: fast, and good to far more than the 53 bits used.
    *rng ^= *rng >> 12;
    *rng ^= *rng << 25;
    *rng ^= *rng >> 27;
    let bits = rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
    let u = (bits + 1) as f64 / (1u64 << 53) as f64;
    let interval = -math::ln(u) * options::profile_rate() as f64;
    (interval as isize).clamp(1, OFF)
}

/// Serves a sampled small request: a large block (see the module comment),
/// recorded. Null if no memory (the caller serves the request unsampled).
pub fn alloc_sampled(size: usize) -> *mut u8 {
    let (p, _) = large::alloc(size, OS_PAGE);
    if !p.is_null() {
        record(p, size);
    }
    p
}

/// Records a sampled block of `size` bytes at `p`, allocated from the
/// calling stack.
pub fn record(p: *mut u8, size: usize) {
    let mut frames = [0usize; MAX_FRAMES];
    let n = stack::capture(&mut frames);
    let frames = stack::Own::get().trim(&frames[..n]);
    with_store(|store| {
        store.record(p as usize, size, weight(size), frames);
        dumps::after_sample(store);
    });
}

/// The blocks a sample of `size` bytes stands for: one over its chance of
/// being one.
fn weight(size: usize) -> f64 {
    1.0 / math::one_minus_exp_neg(size.max(1) as f64 / options::profile_rate() as f64)
}

/// The large or huge block at `p` is being freed: if it was sampled, its
/// stack no longer holds it. Called before the block can be reused.
pub fn forget(p: *mut u8) {
    if enabled() {
        with_store(|store| store.forget(p as usize));
    }
}

/// Whether the block at `p` is a sample.
pub fn is_sample(p: *mut u8) -> bool {
    enabled() && with_store(|store| store.contains(p as usize))
}

/// The block at `p` was resized to `size` bytes and now lies at `q` (or
/// still at `p`): if it is a sample, its record follows it, and if it
/// `grew`, it is weighed as a block of its new size. False if it is no
/// sample.
pub fn resized(p: *mut u8, q: *mut u8, size: usize, grew: bool) -> bool {
    // The weight is worked out before the lock is taken.
    let weight = grew.then(|| weight(size));
    enabled()
        && with_store(|store| {
            let sample = store.resize(p as usize, q as usize, size, weight);
            if sample {
                // A sample that grew counts toward the interval as a new one.
                dumps::after_sample(store);
            }
            sample
        })
}

/// Takes the record of `p` out while the block moves (`mremap`).
pub fn detach(p: *mut u8) -> Option<Detached> {
    if enabled() { with_store(|store| store.detach(p as usize)) } else { None }
}

/// Puts a record back for the block now at `p`; resized to `(size, grew)`
/// as in [`resized`].
pub fn attach(p: *mut u8, record: Option<Detached>, resize: Option<(usize, bool)>) {
    if let Some(d) = record {
        let weight = resize.and_then(|(size, grew)| grew.then(|| weight(size)));
        with_store(|store| {
            store.attach(p as usize, d);
            if let Some((size, _)) = resize {
                store.resize(p as usize, p as usize, size, weight);
                dumps::after_sample(store);
            }
        });
    }
}

/// Longest file name: the prefix and what follows it, NUL included.
const PATH_MAX: usize = 4096;

/// Writes the profile, of the present or of the peak, to `path`, or to
/// `<prefix>.<pid>.pb.gz` (the peak: `<prefix>.<pid>.peak.pb.gz`) without
/// one. `Err(errno)`: `EINVAL` if profiling is off or there is no path,
/// `ENAMETOOLONG`, or what `open`/`write` or a mapping said.
pub fn dump(path: Option<&CStr>, view: View) -> Result<(), i32> {
    if !enabled() {
        return Err(libc::EINVAL);
    }
    let mut name = [0u8; PATH_MAX];
    let path = match path {
        Some(p) => p.to_bytes_with_nul(),
        None => default_path(&mut name, if view == View::Peak { b".peak" } else { b"" }, 0)?,
    };
    dump_to(path, view)
}

/// [`dump`] to `path` (NUL-terminated).
fn dump_to(path: &[u8], view: View) -> Result<(), i32> {
    // The mappings are read before the store is locked: samples wait less.
    let maps = maps::Maps::read().ok_or_else(errno)?;
    with_store(|store| write_file(path, store, &maps, view))
}

/// One line on stderr: the profile `path` (NUL-terminated) could not be
/// written, and why.
fn report_failure(path: &[u8], errno: i32) {
    let mut line = crate::diag::text::Line::new();
    line.push(b"mallocator: could not write the heap profile ").push(path.strip_suffix(b"\0").unwrap_or(path));
    line.push(b" (errno ").dec(errno as u64).push(b")").newline().write_to(2);
}

/// Writes the profile of `store` to `path` (NUL-terminated).
fn write_file(path: &[u8], store: &Store, maps: &maps::Maps, view: View) -> Result<(), i32> {
    // SAFETY: `path` is NUL-terminated; the descriptor is closed below.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o644,
        )
    } as libc::c_int;
    if fd < 0 {
        return Err(errno());
    }
    let written = match gzip::Gzip::new(fd) {
        Some(mut out) => {
            let ok = pprof::write(&mut out, store, maps, options::profile_rate(), view);
            out.finish() && ok
        }
        None => false,
    };
    let error = errno();
    // SAFETY: `fd` was opened above.
    unsafe { libc::syscall(libc::SYS_close, fd) };
    if written { Ok(()) } else { Err(error) }
}

/// `<prefix>.<pid><middle>[.<seq>].pb.gz` and a NUL in `buf` (`seq` 0:
/// none; else at least four digits, so that the files sort by it).
fn default_path<'b>(buf: &'b mut [u8; PATH_MAX], middle: &[u8], seq: u64) -> Result<&'b [u8], i32> {
    let prefix = options::profile_prefix().ok_or(libc::EINVAL)?;
    let mut tail = crate::diag::text::Line::new();
    // SAFETY: getpid has no preconditions.
    tail.push(b".").dec(unsafe { libc::getpid() } as u64).push(middle);
    if seq != 0 {
        let mut digits = crate::diag::text::Line::new();
        digits.dec(seq);
        tail.push(b".");
        for _ in digits.as_bytes().len()..4 {
            tail.push(b"0");
        }
        tail.push(digits.as_bytes());
    }
    tail.push(b".pb.gz\0");
    let (a, b) = (prefix.len(), tail.as_bytes().len());
    if a + b > buf.len() {
        return Err(libc::ENAMETOOLONG);
    }
    buf[..a].copy_from_slice(prefix);
    buf[a..a + b].copy_from_slice(tail.as_bytes());
    Ok(&buf[..a + b])
}

fn errno() -> i32 {
    // SAFETY: reads this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// Now, `CLOCK_REALTIME` in nanoseconds (pprof's `time_nanos`).
fn now_nanos() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// At exit (the library's finalizer): the profile files (the present and
/// the peak) and the leak report, as asked for. A failed write is reported
/// on stderr.
pub fn at_exit() {
    if options::profile_prefix().is_some() {
        for (view, middle) in [(View::Now, &b""[..]), (View::Peak, b".peak")] {
            let mut name = [0u8; PATH_MAX];
            match default_path(&mut name, middle, 0) {
                Ok(path) => {
                    if let Err(e) = dump_to(path, view) {
                        report_failure(path, e);
                    }
                }
                Err(e) => report_failure(b"<prefix>.<pid>.pb.gz", e),
            }
        }
    }
    if options::leaks() {
        with_store(|store| leaks::report(store));
    }
}

/// Holds the profile's lock across `fork` (see [`crate::api::fork`]).
pub fn lock_for_fork() {
    stack::Own::lock_for_fork();
    STORE.lock_forever();
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    walk::lock_for_fork();
}

/// # Safety
/// After [`lock_for_fork`], in the parent or the child.
pub unsafe fn unlock_after_fork() {
    // SAFETY: per the contract.
    unsafe {
        #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
        walk::unlock_after_fork();
        STORE.force_unlock();
        stack::Own::unlock_after_fork();
    }
}
