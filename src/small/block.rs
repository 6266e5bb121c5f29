//! The one word of a free block: its link on its page's free list, the index
//! of the next free block XOR the page's key (drawn for each page when it is
//! assigned to a class, see [`crate::sys::random::draw`]).
//!
//! An index, not an address: a link that was overwritten (a write after
//! free) decodes to an index the page can check in one compare before it is
//! followed, the page's blocks ever handed out being `0..bumped`
//! (`Page::has_free`, which `Page::pop` relies on); and it takes 32 bits, so that the smallest class is 8
//! bytes on both widths. The key keeps a stray write of a plausible value from
//! redirecting the list, and a leaked link gives away nothing of another
//! page's.
//!
//! Nothing else of a free block is ever read or written by the allocator:
//! whether a block is live, or freed by another thread, is kept out of line,
//! in its page's bitmaps (see `crate::small::bitmaps`); another thread's free
//! never touches the block at all. The word is read and written as a relaxed
//! atomic: a program that misuses the allocator can make such accesses race
//! with its own, and that must stay defined behaviour (a plain load or store
//! on x86).

use core::sync::atomic::{AtomicU32, Ordering::Relaxed};

/// The link word of the free block at `block`.
///
/// # Safety
/// `block` points to a 4-aligned block of ours that the caller owns (free,
/// and on no list but the caller's).
#[inline(always)]
unsafe fn word<'a>(block: *const u8) -> &'a AtomicU32 {
    // SAFETY: per the contract; atomics may alias other accesses.
    unsafe { &*block.cast::<AtomicU32>() }
}

/// The encoded link stored in the free block at `block`.
///
/// # Safety
/// As for [`word`].
#[inline(always)]
pub unsafe fn link(block: *const u8) -> u32 {
    // SAFETY: per the contract.
    unsafe { word(block) }.load(Relaxed)
}

/// Stores the encoded link `value` in the free block at `block`.
///
/// # Safety
/// As for [`word`].
#[inline(always)]
pub unsafe fn set_link(block: *mut u8, value: u32) {
    // SAFETY: per the contract.
    unsafe { word(block) }.store(value, Relaxed);
}

/// A fresh key for a page's free list.
pub fn page_key() -> u32 {
    crate::sys::random::draw() as u32
}
