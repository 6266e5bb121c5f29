//! Which heap serves the calling thread.
//!
//! A thread finds its heap in one thread-local pointer. Its first allocation
//! takes a heap from the pool (an abandoned one, adopted with its live blocks,
//! or a new one) and registers a pthread key whose destructor abandons the
//! heap when the thread exits. Heaps are never unmapped: other threads may
//! still be returning blocks to one long after its thread is gone.

use super::heap::{EMPTY_HEAP, Heap};
use super::slot;
use crate::os::{self, OS_PAGE};
use crate::sys::lock::SpinLock;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

/// A heap's mapping: most of it is the table by address (see
/// `tables::SLOTS`), of which only the slots of pages in use are written.
const HEAP_BYTES: usize = size_of::<Heap>().next_multiple_of(OS_PAGE);

struct Pool {
    /// Heaps whose thread exited, linked through `pool_next`.
    abandoned: *mut Heap,
}

// SAFETY: the pool is only reached through its lock.
unsafe impl Send for Pool {}

static POOL: SpinLock<Pool> = SpinLock::new(Pool { abandoned: null_mut() });

/// Every heap ever made, newest first, linked through `all_next`. Heaps are
/// never freed, so the list only grows and can be read without the lock.
static ALL_HEAPS: AtomicPtr<Heap> = AtomicPtr::new(null_mut());

/// Calls `f` on every heap (for statistics: only its counters may be read,
/// since other threads own the rest).
pub fn for_each_heap(mut f: impl FnMut(&Heap)) {
    let mut heap = ALL_HEAPS.load(Ordering::Acquire);
    while !heap.is_null() {
        // SAFETY: heaps in the list are never freed; `f` reads only atomics.
        unsafe {
            f(&*heap);
            heap = (*heap).all_next.get();
        }
    }
}

/// The pthread key whose destructor runs at thread exit; `u32::MAX` if none.
static EXIT_KEY: AtomicU32 = AtomicU32::new(u32::MAX);

/// Creates the thread-exit key. Called once, from the library's initialisation.
pub fn init() {
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: `key` is a valid out-pointer and the destructor has the right ABI.
    if unsafe { libc::pthread_key_create(&mut key, Some(on_thread_exit)) } == 0 {
        EXIT_KEY.store(key as u32, Ordering::Release);
    }
}

/// Deletes the thread-exit key when the library is unloaded: a thread that
/// exits afterwards must not call a destructor whose code is gone.
pub fn fini() {
    let key = EXIT_KEY.swap(u32::MAX, Ordering::AcqRel);
    if key != u32::MAX {
        // SAFETY: the key was created by `init` and is deleted once.
        unsafe { libc::pthread_key_delete(key as libc::pthread_key_t) };
    }
}

/// Holds the heap pool's lock across `fork` (see [`crate::api::fork`]).
pub fn lock_for_fork() {
    POOL.lock_forever();
}

/// # Safety
/// After [`lock_for_fork`], in the parent or the child.
pub unsafe fn unlock_after_fork() {
    // SAFETY: per the contract.
    unsafe { POOL.force_unlock() };
}

/// The calling thread's heap: its own, or [`EMPTY_HEAP`] if it has none yet
/// (or no longer).
#[inline(always)]
pub fn current() -> &'static Heap {
    // SAFETY: the slot holds the empty heap or a heap, and heaps are never
    // freed.
    unsafe { &*slot::get() }
}

/// The calling thread's heap, or null if it has none yet (or no longer).
#[inline(always)]
pub fn heap_if_any() -> *mut Heap {
    let heap = slot::get();
    if current().is_empty_heap() { null_mut() } else { heap }
}

/// The calling thread's heap, attaching one on first use; null when no memory
/// is left even for a heap.
#[inline(always)]
pub fn heap() -> *mut Heap {
    let heap = heap_if_any();
    if !heap.is_null() {
        return heap;
    }
    attach()
}

#[cold]
fn attach() -> *mut Heap {
    crate::api::alloc::init();
    let heap = take_heap();
    if heap.is_null() {
        return heap;
    }
    // Set before registering: pthread_setspecific may allocate, and that
    // allocation must find this heap rather than recurse.
    slot::set(heap);
    let key = EXIT_KEY.load(Ordering::Acquire);
    if key != u32::MAX {
        // SAFETY: the key was created by `init`.
        unsafe { libc::pthread_setspecific(key as libc::pthread_key_t, heap.cast()) };
    }
    heap
}

/// Gives back the emptied pages that the heaps of exited threads keep for
/// the threads that will adopt them (`malloc_trim`); a heap another thread
/// holds for a moment is skipped.
pub fn trim_abandoned() {
    let pool = POOL.lock();
    let mut heap = pool.abandoned;
    while !heap.is_null() {
        // SAFETY: the abandoned list holds live heaps and only changes under
        // the pool lock, which we hold.
        unsafe {
            if (*heap).try_take() {
                (*heap).owner().trim();
                (*heap).abandon();
            }
            heap = (*heap).pool_next.get();
        }
    }
}

/// Adopts an abandoned heap, or carves a new one.
fn take_heap() -> *mut Heap {
    let mut pool = POOL.lock();
    let mut link: *mut *mut Heap = &mut pool.abandoned;
    // SAFETY: the abandoned list holds live heaps and is only changed under
    // the pool lock, which we hold.
    unsafe {
        while !(*link).is_null() {
            let heap = *link;
            if (*heap).try_take() {
                *link = (*heap).pool_next.get();
                (*heap).owner().adopt();
                return heap;
            }
            // Claimed for a moment by a thread freeing one of its blocks.
            link = (*heap).pool_next.as_ptr();
        }
    }
    let heap = os::map_aligned(HEAP_BYTES, OS_PAGE).cast::<Heap>();
    if heap.is_null() {
        return null_mut();
    }
    // SAFETY: zeroed memory is a valid, untaken heap once its tables are
    // filled; nobody else has seen it, so taking it cannot fail. It is
    // published to the list of all heaps under the pool lock (one writer at
    // a time).
    unsafe {
        (*heap).init();
        let taken = (*heap).try_take();
        debug_assert!(taken);
        (*heap).all_next.set(ALL_HEAPS.load(Ordering::Relaxed));
    }
    ALL_HEAPS.store(heap, Ordering::Release);
    heap
}

/// Runs (through the pthread key) when a thread that allocated exits.
extern "C" fn on_thread_exit(value: *mut libc::c_void) {
    let heap = value.cast::<Heap>();
    slot::set(&EMPTY_HEAP.0 as *const Heap as *mut Heap);
    // SAFETY: `value` is the heap this thread owned; it stays valid forever.
    // It goes into the pool list before being released, so that a new thread
    // finds it once the release is done.
    unsafe {
        let mut pool = POOL.lock();
        (*heap).pool_next.set(pool.abandoned);
        pool.abandoned = heap;
        drop(pool);
        (*heap).abandon();
    }
}
