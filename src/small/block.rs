//! A free block's first two words: the links of the two lists a freed block
//! can be on, each encoded with a per-process secret of its own, so that a
//! stray write of a plausible pointer does not redirect a list, and a leaked
//! link gives away nothing of the other. Nothing else of a free block is ever
//! read: whether a block is live or already freed is kept out of line, in its
//! page's bitmaps (see `crate::small::page`).
//!
//! Which thread touches what: the owner of a page writes the [`Link::Free`]
//! word when it frees a block locally, and reads it when it hands the block
//! out again; a thread freeing another thread's block writes the
//! [`Link::Posted`] word to chain it into a batch for the owner, which reads
//! it when it takes the batch. Two words, because a double free by the owner
//! and another thread at the same instant can put one block on both lists
//! (neither free sees the other's mark in time); each list then stays whole,
//! and the owner tells the two apart by the bitmaps. A program that misuses
//! the allocator can make such accesses race, so the words are accessed as
//! relaxed atomics: plain loads and stores on x86, and defined behaviour in
//! Rust's memory model whatever the program does.

use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The list a link belongs to, and so the word of the block it is in.
#[derive(Clone, Copy)]
pub enum Link {
    /// The owner's free list of the block's page.
    Free = 0,
    /// A chain posted to the owner by other threads (`crate::thread::remote`).
    Posted = 1,
}

/// The secrets that encode the two links, chosen at initialisation.
static KEYS: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

pub fn set_keys(keys: [usize; 2]) {
    KEYS[0].store(keys[0], Relaxed);
    KEYS[1].store(keys[1], Relaxed);
}

/// The free list's secret (secure mode's shuffle seeds from it).
pub fn key() -> usize {
    KEYS[Link::Free as usize].load(Relaxed)
}

/// The first two words of a free block (every block has them: the smallest
/// class is 16 bytes on both widths).
#[repr(C)]
pub struct Block {
    links: [AtomicUsize; 2],
}

impl Block {
    /// # Safety
    /// `this` points to a word-aligned block of ours that the caller may
    /// access (see the module comment).
    #[inline(always)]
    unsafe fn word<'a>(this: *const Block, link: Link) -> &'a AtomicUsize {
        // SAFETY: per the contract; atomics may alias other accesses.
        unsafe { &(*this).links[link as usize] }
    }

    /// The next block on the list `link` of the block.
    ///
    /// # Safety
    /// As for [`Self::word`].
    #[inline(always)]
    pub unsafe fn next(this: *const Block, link: Link) -> *mut Block {
        // SAFETY: per the contract.
        let word = unsafe { Self::word(this, link) }.load(Relaxed);
        (word ^ KEYS[link as usize].load(Relaxed)) as *mut Block
    }

    /// Links the block in front of `next` on the list `link`.
    ///
    /// # Safety
    /// As for [`Self::word`]; the block was just freed.
    #[inline(always)]
    pub unsafe fn link(this: *mut Block, link: Link, next: *mut Block) {
        // SAFETY: per the contract.
        unsafe { Self::word(this, link) }.store(next as usize ^ KEYS[link as usize].load(Relaxed), Relaxed);
    }
}
