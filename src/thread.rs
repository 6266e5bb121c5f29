//! Which heap serves the calling thread.
//!
//! A thread finds its heap in one thread-local pointer. Its first allocation
//! takes a heap from the pool (an abandoned one, adopted with its live blocks,
//! or a new one) and registers a pthread key whose destructor abandons the
//! heap when the thread exits. Heaps are never unmapped: other threads may
//! still be returning blocks to one long after its thread is gone.

use crate::heap::Heap;
use crate::os::{self, OS_PAGE};
use crate::sync::SpinLock;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

// The slot itself, one pointer in the static TLS block. Global but hidden:
// other objects of a build that links the rlib without LTO must resolve it;
// the shared library does not export it.
#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
core::arch::global_asm!(
    ".pushsection .tbss,\"awT\",@nobits",
    ".balign {size}",
    ".globl mallocator_thread_heap",
    ".hidden mallocator_thread_heap",
    ".type mallocator_thread_heap, @object",
    ".size mallocator_thread_heap, {size}",
    "mallocator_thread_heap:",
    ".zero {size}",
    ".popsection",
    size = const size_of::<usize>(),
);

/// The calling thread's heap pointer.
///
/// On x86_64 it is a TLS slot declared in assembly and reached with the
/// initial-exec model: one `mov` from `fs`. Rust's `thread_local!` in a shared
/// library uses the general-dynamic model, a call to `__tls_get_addr` on every
/// access (measured with callgrind on a malloc/free loop of 16..128-byte
/// blocks: 162 instructions per pair with `thread_local!`, 126 with this).
/// Initial-exec needs the slot in the static TLS block, which a library loaded
/// at start-up (linked or `LD_PRELOAD`) always gets, and a `dlopen`ed one gets
/// from glibc's surplus reserved for this (8 bytes here).
#[cfg(target_arch = "x86_64")]
mod slot {
    use super::Heap;

    #[inline(always)]
    pub fn get() -> *mut Heap {
        let heap: *mut Heap;
        // SAFETY: reads this thread's slot: GOTTPOFF gives its offset from
        // the thread pointer, which `fs` holds.
        unsafe {
            core::arch::asm!(
                "mov {heap}, qword ptr [rip + mallocator_thread_heap@GOTTPOFF]",
                "mov {heap}, qword ptr fs:[{heap}]",
                heap = out(reg) heap,
                options(nostack, readonly, preserves_flags, pure),
            );
        }
        heap
    }

    #[inline(always)]
    pub fn set(heap: *mut Heap) {
        // SAFETY: writes this thread's slot, as in `get`.
        unsafe {
            core::arch::asm!(
                "mov {offset}, qword ptr [rip + mallocator_thread_heap@GOTTPOFF]",
                "mov qword ptr fs:[{offset}], {heap}",
                offset = out(reg) _,
                heap = in(reg) heap,
                options(nostack, preserves_flags),
            );
        }
    }
}

/// On i686 the same slot, reached the same way; position-independent code
/// there has no `rip`-relative addressing, so the slot's offset is read
/// relative to the GOT's address, which the compiler keeps in a register for
/// its own accesses anyway (an own `call`/`pop` to find it cost two more
/// instructions per access: 173 -> 171 per malloc+free pair).
#[cfg(target_arch = "x86")]
mod slot {
    use super::Heap;

    unsafe extern "C" {
        /// Defined by the linker at the start of the GOT.
        static _GLOBAL_OFFSET_TABLE_: u8;
    }

    #[inline(always)]
    pub fn get() -> *mut Heap {
        let heap: *mut Heap;
        // SAFETY: reads this thread's slot: GOTNTPOFF gives its offset from
        // the thread pointer, which `gs` holds.
        unsafe {
            core::arch::asm!(
                "movl mallocator_thread_heap@GOTNTPOFF({got}), {heap}",
                "movl %gs:({heap}), {heap}",
                got = in(reg) &raw const _GLOBAL_OFFSET_TABLE_,
                heap = out(reg) heap,
                options(att_syntax, nostack, readonly, preserves_flags, pure),
            );
        }
        heap
    }

    #[inline(always)]
    pub fn set(heap: *mut Heap) {
        // SAFETY: writes this thread's slot, as in `get`.
        unsafe {
            core::arch::asm!(
                "movl mallocator_thread_heap@GOTNTPOFF({got}), {offset}",
                "movl {heap}, %gs:({offset})",
                got = in(reg) &raw const _GLOBAL_OFFSET_TABLE_,
                offset = out(reg) _,
                heap = in(reg) heap,
                options(att_syntax, nostack, preserves_flags),
            );
        }
    }
}

/// Elsewhere, Rust's `thread_local!` (a `const` initialiser of a type without
/// Drop compiles to a plain TLS slot: no destructor registration, which would
/// call malloc).
#[cfg(not(any(target_arch = "x86_64", target_arch = "x86")))]
mod slot {
    use super::Heap;
    use core::cell::Cell;
    use core::ptr::null_mut;

    std::thread_local! {
        static HEAP: Cell<*mut Heap> = const { Cell::new(null_mut()) };
    }

    #[inline(always)]
    pub fn get() -> *mut Heap {
        HEAP.with(Cell::get)
    }

    #[inline(always)]
    pub fn set(heap: *mut Heap) {
        HEAP.with(|h| h.set(heap));
    }
}

/// Heaps (about 2 KiB each, most of it statistics counters) are carved from
/// mappings of this size: one `mmap` per 30 or so threads.
const HEAP_CHUNK: usize = 16 * OS_PAGE;

struct Pool {
    /// Heaps whose thread exited, linked through `pool_next`.
    abandoned: *mut Heap,
    /// The unused rest of the last heap chunk.
    cursor: usize,
    end: usize,
}

// SAFETY: the pool is only reached through its lock.
unsafe impl Send for Pool {}

static POOL: SpinLock<Pool> = SpinLock::new(Pool { abandoned: null_mut(), cursor: 0, end: 0 });

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

/// Holds the heap pool's lock across `fork` (see [`crate::fork`]).
pub fn lock_for_fork() {
    POOL.lock_forever();
}

/// # Safety
/// After [`lock_for_fork`], in the parent or the child.
pub unsafe fn unlock_after_fork() {
    // SAFETY: per the contract.
    unsafe { POOL.force_unlock() };
}

/// The calling thread's heap, or null if it has none yet (or no longer).
#[inline(always)]
pub fn heap_if_any() -> *mut Heap {
    slot::get()
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
    crate::alloc::init();
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
                return heap;
            }
            // Claimed for a moment by a thread freeing one of its blocks.
            link = (*heap).pool_next.as_ptr();
        }
    }
    let size = size_of::<Heap>().next_multiple_of(64);
    if pool.end - pool.cursor < size {
        let chunk = os::map_aligned(HEAP_CHUNK, OS_PAGE);
        if chunk.is_null() {
            return null_mut();
        }
        pool.cursor = chunk as usize;
        pool.end = chunk as usize + HEAP_CHUNK;
    }
    let heap = pool.cursor as *mut Heap;
    pool.cursor += size;
    // SAFETY: zeroed memory is a valid, empty, untaken heap; nobody else has
    // seen it, so taking it cannot fail. It is published to the list of all
    // heaps under the pool lock (one writer at a time).
    unsafe {
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
    slot::set(null_mut());
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
