//! The entry points: route each request to the thread heap (small blocks) or
//! the large-region allocator, and each free to the owner of its memory.

use crate::error::{self, Misuse};
use crate::heap::Heap;
use crate::large;
use crate::os::{self, OS_PAGE};
use crate::page::{BadBlock, SmallSegment};
use crate::segment::{self, Kind};
use crate::size_class::{MAX_SMALL, class_of};
use crate::{options, page, thread};
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicU8, Ordering};

/// Every block is at least this aligned (all classes are multiples of 8).
pub const MIN_ALIGN: usize = 8;

const UNINIT: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;
static INIT: AtomicU8 = AtomicU8::new(UNINIT);

/// One-time set-up: the free-marker secret, the options, the thread-exit key.
/// Runs from the library's constructor, or earlier from the first allocation
/// (ld.so and other constructors may allocate before ours runs). Nothing in
/// it allocates.
pub fn init() {
    if INIT.load(Ordering::Acquire) == DONE {
        return;
    }
    if INIT.compare_exchange(UNINIT, RUNNING, Ordering::Acquire, Ordering::Acquire).is_err() {
        while INIT.load(Ordering::Acquire) != DONE {
            // SAFETY: no preconditions.
            unsafe { libc::sched_yield() };
        }
        return;
    }
    let mut key = [0u8; size_of::<usize>()];
    if !os::random_bytes(&mut key) {
        // No entropy yet (early boot): the address of a stack slot still
        // differs between runs under ASLR.
        key = (&raw const key as usize).rotate_left(17).to_ne_bytes();
    }
    page::set_key(usize::from_ne_bytes(key));
    options::init();
    thread::init();
    INIT.store(DONE, Ordering::Release);
}

/// Allocates `size` bytes aligned to `align` (a power of two). Null with
/// `errno = ENOMEM` when memory cannot be had.
#[inline]
pub fn alloc(size: usize, align: usize) -> *mut u8 {
    let p = if align <= MIN_ALIGN && size <= MAX_SMALL { alloc_small(size) } else { alloc_aligned(size, align) };
    if p.is_null() {
        os::set_errno(libc::ENOMEM);
    }
    p
}

#[inline(always)]
fn alloc_small(size: usize) -> *mut u8 {
    let heap: *mut Heap = thread::heap();
    if heap.is_null() {
        return null_mut();
    }
    // SAFETY: the calling thread owns its heap.
    unsafe { (*heap).alloc(class_of(size)) }
}

#[cold]
fn alloc_aligned(size: usize, align: usize) -> *mut u8 {
    if align <= 16 && size <= MAX_SMALL {
        // Classes that are multiples of 16 yield 16-aligned blocks.
        return alloc_small(size.next_multiple_of(16).max(16));
    }
    if align <= OS_PAGE {
        // A power-of-two class of at least `align` is aligned to it (pages
        // start on OS-page boundaries).
        if let Some(pow2) = size.max(align).checked_next_power_of_two().filter(|&p| p <= MAX_SMALL) {
            return alloc_small(pow2);
        }
    }
    large::alloc(size, align)
}

/// Frees a block. Null is ignored; a pointer that is not a live block of ours
/// is reported (see [`error`]) and otherwise ignored.
///
/// # Safety
/// Any pointer may be passed, but if `p` is a live block, nothing may use it
/// afterwards.
#[inline]
pub unsafe fn free(p: *mut u8) {
    if p.is_null() {
        return;
    }
    let Some(seg) = segment::find(p) else {
        return error::report(Misuse::Foreign, p, None);
    };
    // SAFETY: `find` returned a live segment of ours that contains `p`.
    let result = unsafe {
        match (*seg.as_ptr()).kind {
            Kind::Small => return free_small(p),
            Kind::Large => large::free(seg, p),
            Kind::Huge => large::free_huge(seg, p),
        }
    };
    if let Err(bad) = result {
        report(bad, p, None);
    }
}

#[inline(always)]
fn free_small(p: *mut u8) {
    // SAFETY: `p` lies in a live small segment (checked by the caller), and a
    // page descriptor of a live segment is always readable.
    unsafe {
        let (seg, page) = SmallSegment::page_of(p);
        match (*page).check(p) {
            Ok(block) => {
                let heap = (*seg).heap;
                if heap == thread::heap_if_any() {
                    (*heap).free_local(page, block);
                } else {
                    (*heap).free_remote(block);
                }
            }
            Err(bad) => report(bad, p, Some((*page).block_size()).filter(|&s| s != 0)),
        }
    }
}

#[cold]
fn report(bad: BadBlock, p: *mut u8, block_size: Option<usize>) {
    let kind = match bad {
        BadBlock::DoubleFree => Misuse::DoubleFree,
        BadBlock::Invalid => Misuse::Interior,
    };
    error::report(kind, p, block_size);
}

/// The usable size of a live block of ours (at least what was asked for).
///
/// # Safety
/// `p` is a live block returned by this allocator.
pub unsafe fn usable_size(p: *const u8) -> usize {
    let Some(seg) = segment::find(p) else { return 0 };
    // SAFETY: per the contract `p` is a live block in `seg`.
    unsafe {
        match (*seg.as_ptr()).kind {
            Kind::Small => (*SmallSegment::page_of(p).1).block_size(),
            Kind::Large | Kind::Huge => large::usable_size(seg, p),
        }
    }
}

/// The allocator as a Rust global allocator:
/// `#[global_allocator] static GLOBAL: memory::Mallocator = memory::Mallocator;`
pub struct Mallocator;

// SAFETY: `alloc` returns blocks of at least `layout.size()` bytes aligned to
// `layout.align()` that no other live allocation overlaps, or null.
unsafe impl GlobalAlloc for Mallocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        alloc(layout.size(), layout.align())
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: the caller gives the block up (GlobalAlloc contract).
        unsafe { free(ptr) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` is a live block of ours (GlobalAlloc contract).
        let usable = unsafe { usable_size(ptr) };
        if new_size <= usable && new_size >= usable / 2 {
            return ptr;
        }
        let q = alloc(new_size, layout.align());
        if !q.is_null() {
            // SAFETY: both blocks are live and distinct; the copy stays within
            // both sizes.
            unsafe {
                core::ptr::copy_nonoverlapping(ptr, q, layout.size().min(new_size));
                free(ptr);
            }
        }
        q
    }
}
