//! Fork safety. A child process has only the thread that called `fork`; a
//! lock held by any other thread at that moment would stay locked forever in
//! the child. The handlers take the allocator's locks before `fork` and
//! release them on both sides, so the child starts with consistent shared
//! structures.
//!
//! Thread heaps need nothing: the forking thread's heap is its own, and heaps
//! of threads that do not exist in the child stay owned (their blocks freed in
//! the child go to those heaps' remote lists and are not reused there).

use crate::small::segment::SmallSegment;
use crate::{large, profiler, segment, thread};
use core::sync::atomic::{AtomicBool, Ordering};

static REGISTERED: AtomicBool = AtomicBool::new(false);

/// Registers the handlers once. Called after initialisation is complete:
/// `pthread_atfork` may allocate, and that allocation must find a working
/// allocator.
pub fn register() {
    if !REGISTERED.swap(true, Ordering::AcqRel) {
        // SAFETY: the handlers have the C ABI and live as long as the library.
        unsafe { libc::pthread_atfork(Some(prepare), Some(resume), Some(resume)) };
    }
}

/// Takes the locks, always in this order (nothing takes them the other way).
extern "C" fn prepare() {
    thread::lock_for_fork();
    large::lock_for_fork();
    profiler::lock_for_fork();
    SmallSegment::lock_for_fork();
    segment::tombstones::lock_for_fork();
}

/// Releases them, in the parent and in the child.
extern "C" fn resume() {
    // SAFETY: `prepare` took the locks in this process before `fork`.
    unsafe {
        segment::tombstones::unlock_after_fork();
        SmallSegment::unlock_after_fork();
        profiler::unlock_after_fork();
        large::unlock_after_fork();
        thread::unlock_after_fork();
    }
}
