//! A free block's first word: the free-list link, encoded with a
//! per-process secret, so that a stray write of a plausible pointer does not
//! redirect a list. Nothing else of a free block is ever read: whether a block
//! is live or already freed is kept out of line, in its page's bitmaps (see
//! `crate::small::page`), so a leaked word of a freed block gives away
//! nothing but that word's encoding.
//!
//! Which thread touches what: the owner of a page writes the link when it
//! frees a block locally, and reads it when it hands the block out again; a
//! thread freeing another thread's block writes the link to chain it into a
//! batch for the owner, which reads it when it takes the batch. A program that
//! misuses the allocator can make such accesses race, so the word is accessed
//! as a relaxed atomic: a plain load or store on x86, and defined behaviour in
//! Rust's memory model whatever the program does.

use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The secret that encodes free-list links, chosen at initialisation.
static LINK_KEY: AtomicUsize = AtomicUsize::new(0);

pub fn set_key(key: usize) {
    LINK_KEY.store(key, Relaxed);
}

/// The secret (secure mode's shuffle seeds from it).
pub fn key() -> usize {
    LINK_KEY.load(Relaxed)
}

/// The first word of a free block.
#[repr(C)]
pub struct Block {
    next: AtomicUsize,
}

impl Block {
    /// # Safety
    /// `this` points to a word-aligned block of ours that the caller may
    /// access (see the module comment).
    #[inline(always)]
    unsafe fn word<'a>(this: *const Block) -> &'a AtomicUsize {
        // SAFETY: per the contract; atomics may alias other accesses.
        unsafe { &(*this).next }
    }

    /// The next block on the list the block is linked on.
    ///
    /// # Safety
    /// As for [`Self::word`].
    #[inline(always)]
    pub unsafe fn next(this: *const Block) -> *mut Block {
        // SAFETY: per the contract.
        (unsafe { Self::word(this) }.load(Relaxed) ^ LINK_KEY.load(Relaxed)) as *mut Block
    }

    /// Links the block in front of `next`.
    ///
    /// # Safety
    /// As for [`Self::word`]; the block was just freed.
    #[inline(always)]
    pub unsafe fn link(this: *mut Block, next: *mut Block) {
        // SAFETY: per the contract.
        unsafe { Self::word(this) }.store(next as usize ^ LINK_KEY.load(Relaxed), Relaxed);
    }
}
