//! The allocator as Rust's global allocator.

use super::alloc::{alloc, alloc_zeroed, free, realloc};
use core::alloc::{GlobalAlloc, Layout};

/// The allocator as a Rust global allocator:
/// `#[global_allocator] static GLOBAL: mallocator::Mallocator = mallocator::Mallocator;`
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

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        alloc_zeroed(layout.size(), layout.align())
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` is a live block of ours with `layout` (GlobalAlloc
        // contract), so it is the caller's to resize.
        unsafe { realloc(ptr, new_size, layout.align()) }
    }
}
