//! A free block's first two words: the links of the two lists a freed block
//! can be on, each encoded with a secret of its own, so that a stray write of
//! a plausible pointer does not redirect a list, and a leaked link gives away
//! nothing of the other list's: the free list's key is drawn for each page when it
//! is assigned to a class (kept in its descriptor, which the free list's
//! code holds in a register anyway: cheaper than a global, 139 -> 138
//! instructions per malloc/free pair on x86_64, 174 -> 172 on i686), the
//! posted chains' key once per process (any thread writes those links, and
//! the chain crosses pages). Nothing else of a free block is ever
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

/// The list a link belongs to (and so the word of the block it is in), with
/// its key.
#[derive(Clone, Copy)]
pub enum Link {
    /// The owner's free list of the block's page, under the page's key.
    Free(usize),
    /// A chain posted to the owner by other threads (`crate::thread::remote`).
    Posted,
}

impl Link {
    fn word(self) -> usize {
        match self {
            Link::Free(_) => 0,
            Link::Posted => 1,
        }
    }

    fn key(self) -> usize {
        match self {
            Link::Free(key) => key,
            Link::Posted => SECRETS[POSTED].load(Relaxed),
        }
    }
}

/// Secrets chosen at initialisation: the seed of the pages' keys, and the
/// posted chains' key.
static SECRETS: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
const SEED: usize = 0;
const POSTED: usize = 1;

/// Pages' keys drawn so far (the generator's position).
static DRAWN: AtomicUsize = AtomicUsize::new(0);

pub fn set_secrets(secrets: [usize; 2]) {
    SECRETS[SEED].store(secrets[SEED], Relaxed);
    SECRETS[POSTED].store(secrets[POSTED], Relaxed);
}

/// The seed secret (secure mode's shuffle seeds from it too).
pub fn seed() -> usize {
    SECRETS[SEED].load(Relaxed)
}

/// A fresh key for a page's free list: the seed's stream, one step of
/// SplitMix64 per page. Not a cryptographic generator: SplitMix64's mixer
/// is invertible, so one recovered page key and a guess of its draw number
/// give the seed, and with it every page's key (the posted chains' key is
/// drawn apart and stays unknown). What a page key buys is that a pointer
/// encoded for one page's list does not decode on another's.
pub fn page_key() -> usize {
    let mut state = (seed() as u64) ^ (DRAWN.fetch_add(1, Relaxed) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    splitmix64(&mut state) as usize
}

/// Steele, Lea and Flood's SplitMix64 (2014): a 64-bit state stepped by the
/// golden ratio and mixed.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
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
        unsafe { &(*this).links[link.word()] }
    }

    /// The next block on the list `link` of the block.
    ///
    /// # Safety
    /// As for [`Self::word`].
    #[inline(always)]
    pub unsafe fn next(this: *const Block, link: Link) -> *mut Block {
        // SAFETY: per the contract.
        let word = unsafe { Self::word(this, link) }.load(Relaxed);
        (word ^ link.key()) as *mut Block
    }

    /// Links the block in front of `next` on the list `link`.
    ///
    /// # Safety
    /// As for [`Self::word`]; the block was just freed.
    #[inline(always)]
    pub unsafe fn link(this: *mut Block, link: Link, next: *mut Block) {
        // SAFETY: per the contract.
        unsafe { Self::word(this, link) }.store(next as usize ^ link.key(), Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_get_keys_of_their_own() {
        let keys: std::collections::HashSet<usize> = (0..4096).map(|_| page_key()).collect();
        assert_eq!(keys.len(), 4096, "a key drawn twice");
        assert!(!keys.contains(&Link::Posted.key()), "a page key equals the posted chains' key");
    }
}
