//! The lock of the allocator's few shared structures (the large-region
//! allocator, the pool of abandoned heaps, the tombstones, the profiler's
//! tables). A waiter spins for about the length of a critical section here
//! (a best-fit search, a list splice), then sleeps on a futex until the
//! holder wakes it: it never calls `sched_yield`, which on a busy machine
//! made every waiter a stream of system calls and gave the CPU to whoever
//! the scheduler picked, not to the holder (issue 24: 12,619 `sched_yield`
//! in a producer/consumer program whose large blocks crossed threads).
//!
//! The word has three states, after Drepper's "Futexes Are Tricky"
//! (mutex 2): unlocked, locked, and locked with sleepers (or ones about to
//! sleep). Only the release of a lock that may have sleepers makes a system
//! call, a `FUTEX_WAKE` of one of them. It cannot allocate, and a `fork`
//! child needs nothing repaired but the word. `tests/loom_lock.rs` checks
//! the protocol (mutual exclusion, no lost wake-up) under loom.
//!
//! The type keeps the name `SpinLock`, which the thread layer imports.

use crate::sys::errno::SavedErrno;
use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU32, Ordering};

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
/// Locked, and a thread may be asleep on the word (or about to be).
const SLEEPERS: u32 = 2;

/// Spins before sleeping: 128 `pause`s are some 2-15 us (10 to 140 cycles
/// each by microarchitecture), longer than any critical section here, which
/// make no system call on the paths threads meet on (`large::State`'s purges
/// run on ticks of the decay, a few per 10 ms at most).
const SPINS_BEFORE_SLEEP: u32 = 128;

pub struct SpinLock<T> {
    word: AtomicU32,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out access to `value` to one thread at a time.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub const fn new(value: T) -> Self {
        Self { word: AtomicU32::new(UNLOCKED), value: UnsafeCell::new(value) }
    }

    #[inline]
    pub fn lock(&self) -> SpinGuard<'_, T> {
        if self.word.compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed).is_err() {
            self.lock_contended();
        }
        SpinGuard { lock: self }
    }

    /// The lock if it is free now; never waits (a signal handler's way).
    pub fn try_lock(&self) -> Option<SpinGuard<'_, T>> {
        self.word.compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed).ok()?;
        Some(SpinGuard { lock: self })
    }

    #[cold]
    #[inline(never)]
    fn lock_contended(&self) {
        for _ in 0..SPINS_BEFORE_SLEEP {
            core::hint::spin_loop();
            if self.word.load(Ordering::Relaxed) == UNLOCKED
                && self.word.compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed).is_ok()
            {
                return;
            }
        }
        // From here the word says SLEEPERS whenever we hold it, so that our
        // release wakes whoever went to sleep meanwhile: we cannot tell
        // whether we were the last sleeper.
        let _errno = SavedErrno::new();
        while self.word.swap(SLEEPERS, Ordering::Acquire) != UNLOCKED {
            futex_wait(&self.word, SLEEPERS);
        }
    }

    fn unlock(&self) {
        if self.word.swap(UNLOCKED, Ordering::Release) == SLEEPERS {
            let _errno = SavedErrno::new();
            futex_wake_one(&self.word);
        }
    }

    /// Takes the lock and keeps it past any guard (around `fork`).
    pub fn lock_forever(&self) {
        core::mem::forget(self.lock());
    }

    /// Releases a lock taken with [`Self::lock_forever`] (and wakes a thread
    /// that waits for it: in the parent, another thread may have come to
    /// sleep on it during the fork).
    ///
    /// # Safety
    /// The lock was taken with `lock_forever` by this thread (or, in a `fork`
    /// child, by the thread that forked).
    pub unsafe fn force_unlock(&self) {
        self.unlock();
    }
}

/// Sleeps while `word` holds `expected` (or until woken; the caller checks
/// again either way: a signal or a spurious wake-up returns early).
fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: FUTEX_WAIT reads the aligned word, which lives as long as the
    // lock, and sleeps; no timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            core::ptr::null::<libc::timespec>(),
        )
    };
}

fn futex_wake_one(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE only wakes threads sleeping on the word.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, 1) };
}

pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while the lock is held.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes the access unique.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn threads_that_sleep_on_it_are_woken_and_excluded() {
        // Critical sections long enough (a sleep) that waiters pass their
        // spins and sleep on the futex: a lost wake-up hangs the test, a
        // broken exclusion counts wrong.
        let lock = Arc::new(SpinLock::new(0usize));
        let inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (lock, inside) = (Arc::clone(&lock), Arc::clone(&inside));
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let mut g = lock.lock();
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders at once");
                        std::thread::sleep(std::time::Duration::from_micros(200));
                        *g += 1;
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(*lock.lock(), 200);
        assert_eq!(lock.word.load(Ordering::Relaxed), UNLOCKED);
    }
}
