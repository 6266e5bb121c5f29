//! Profiles of a process that does not exit: one when the program gets the
//! signal `MALLOCATOR_PROFILE_SIGNAL` names, and one every
//! `MALLOCATOR_PROFILE_INTERVAL` bytes allocated (tcmalloc's
//! `HEAP_PROFILE_ALLOCATION_INTERVAL`, jemalloc's `prof_interval`), each in
//! a file of its own, `<prefix>.<pid>.<seq>.pb.gz`, numbered from 0001 in the
//! order they are written. Like every dump, they allocate nothing from the
//! program's heap (the scratch memory is mapped) and other threads run on
//! meanwhile; samples and large frees wait for the store's lock while a
//! file is written.
//!
//! The signal handler may interrupt a thread that holds the store (inside a
//! sample, a large free, another dump): waiting for it there would wait
//! forever. So the handler raises [`PENDING`] and writes the dump only if it
//! gets the store at once; otherwise whoever holds the store writes it when
//! it lets go ([`after_unlock`]). A fence on both sides (the handler's
//! raise-then-try, the holder's release-then-check) makes sure one of them
//! sees the other: the request is never lost, and never waits on a lock.
//!
//! The interval is measured by the profile's own estimate of the bytes
//! allocated (the sum of its `alloc_space`), checked at each sample: dumps
//! come every N bytes on average, as jemalloc's do, and cost nothing
//! between samples.

use super::maps::Maps;
use super::pprof::View;
use super::store::Store;
use super::{PATH_MAX, STORE, default_path, report_failure, write_file};
use crate::diag::options;
use crate::sys::errno::SavedErrno;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};

/// A handler is installed: unlocking the store checks [`PENDING`].
static ARMED: AtomicBool = AtomicBool::new(false);
/// A signal asked for a dump that is not written yet.
static PENDING: AtomicBool = AtomicBool::new(false);
/// The last sequence number given to a file.
static SEQ: AtomicU64 = AtomicU64::new(0);
/// Interval dumps written so far (under the store's lock).
static INTERVALS: AtomicU64 = AtomicU64::new(0);

/// Installs the signal handler, if a signal was asked for (from the
/// library's constructor: not inside a first `malloc`).
pub fn install() {
    let Some(signal) = options::profile_signal() else { return };
    if !super::enabled() || options::profile_prefix().is_none() {
        crate::sys::errno::write_fd(
            2,
            b"mallocator: MALLOCATOR_PROFILE_SIGNAL needs MALLOCATOR_PROFILE (the files' prefix); no dumps on a signal\n",
        );
        return;
    }
    ARMED.store(true, Ordering::Relaxed);
    // SAFETY: a zeroed `sigaction` is a valid value to fill; the handler
    // has the ABI of a plain handler and lives as long as the library.
    unsafe {
        let mut action: libc::sigaction = core::mem::zeroed();
        action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(signal, &action, core::ptr::null_mut()) != 0 {
            ARMED.store(false, Ordering::Relaxed);
            crate::sys::errno::write_fd(2, b"mallocator: cannot handle MALLOCATOR_PROFILE_SIGNAL\n");
        }
    }
}

extern "C" fn on_signal(_signal: libc::c_int) {
    let _errno = SavedErrno::new();
    PENDING.store(true, Ordering::SeqCst);
    fence(Ordering::SeqCst);
    serve();
}

/// Writes the dump a signal asked for if the store is free; else its holder
/// will, when it lets go.
fn serve() {
    while PENDING.load(Ordering::SeqCst) {
        let Some(store) = STORE.try_lock() else { return };
        if PENDING.swap(false, Ordering::SeqCst) {
            write_numbered(&store);
        }
        drop(store);
        fence(Ordering::SeqCst);
    }
}

/// Called after the store is unlocked: writes a dump a signal asked for
/// meanwhile. One load when no signal is configured.
#[inline]
pub fn after_unlock() {
    if ARMED.load(Ordering::Relaxed) {
        fence(Ordering::SeqCst);
        if PENDING.load(Ordering::Relaxed) {
            serve();
        }
    }
}

/// Called with the store locked after a sample: a dump if the bytes
/// allocated passed the next multiple of the interval.
pub fn after_sample(store: &Store) {
    let every = options::profile_interval();
    if every == 0 || options::profile_prefix().is_none() {
        return;
    }
    let due = (store.allocated / every as f64) as u64;
    if due > INTERVALS.load(Ordering::Relaxed) {
        INTERVALS.store(due, Ordering::Relaxed);
        write_numbered(store);
    }
}

/// Writes the profile as the next numbered file; a failure is reported on
/// stderr (the program goes on).
fn write_numbered(store: &Store) {
    let seq = SEQ.fetch_add(1, Ordering::Relaxed) + 1;
    let mut name = [0u8; PATH_MAX];
    match default_path(&mut name, b"", seq) {
        Ok(path) => {
            let written =
                Maps::read().ok_or_else(super::errno).and_then(|maps| write_file(path, store, &maps, View::Now));
            if let Err(e) = written {
                report_failure(path, e);
            }
        }
        Err(e) => report_failure(b"<prefix>.<pid>.<seq>.pb.gz", e),
    }
}
