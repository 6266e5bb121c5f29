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

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

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
            Link::Posted => POSTED_KEY.load(Relaxed),
        }
    }
}

/// The posted chains' key, drawn at initialisation.
static POSTED_KEY: AtomicUsize = AtomicUsize::new(0);

/// The 128-bit key of [`draw`], drawn at initialisation apart from
/// [`POSTED_KEY`].
static DRAW_KEY: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// Values drawn so far: each draw hashes a number never hashed before.
static DRAWN: AtomicU64 = AtomicU64::new(0);

pub fn set_secrets(draw_key: [u64; 2], posted_key: usize) {
    DRAW_KEY[0].store(draw_key[0], Relaxed);
    DRAW_KEY[1].store(draw_key[1], Relaxed);
    POSTED_KEY.store(posted_key, Relaxed);
}

/// A secret random value: SipHash-2-4 of a fresh counter under the draw
/// key. SipHash is a pseudorandom function (Aumasson and Bernstein, 2012),
/// so values drawn give away nothing of the key or of each other: a page
/// key recovered from a leaked link tells nothing of another page's, nor
/// does the block order secure mode shows. Costs about 130 instructions
/// (x86_64, straight-line), once per page assigned (and twice more per page
/// shuffled).
pub fn draw() -> u64 {
    let key = [DRAW_KEY[0].load(Relaxed), DRAW_KEY[1].load(Relaxed)];
    siphash24(key, DRAWN.fetch_add(1, Relaxed))
}

/// A fresh key for a page's free list.
pub fn page_key() -> usize {
    draw() as usize
}

/// SipHash-2-4 of one 64-bit word (its eight bytes, little-endian), as the
/// reference defines it: two compression rounds per message word (the word,
/// then the length word), four finalisation rounds.
fn siphash24(key: [u64; 2], m: u64) -> u64 {
    let mut v = [
        key[0] ^ 0x736f_6d65_7073_6575,
        key[1] ^ 0x646f_7261_6e64_6f6d,
        key[0] ^ 0x6c79_6765_6e65_7261,
        key[1] ^ 0x7465_6462_7974_6573,
    ];
    // The length word: 8 bytes, in the top byte.
    for word in [m, 8 << 56] {
        v[3] ^= word;
        sip_round(&mut v);
        sip_round(&mut v);
        v[0] ^= word;
    }
    v[2] ^= 0xff;
    for _ in 0..4 {
        sip_round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
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

    /// The reference's test vector for an 8-byte message: key bytes 0..16,
    /// message bytes 0..8 (Aumasson and Bernstein, SipHash, appendix A's
    /// vectors, length 8).
    #[test]
    fn siphash_matches_the_reference() {
        let key = [0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908];
        assert_eq!(siphash24(key, 0x0706_0504_0302_0100), 0x93f5_f579_9a93_2462);
    }

    #[test]
    fn pages_get_keys_of_their_own() {
        let keys: std::collections::HashSet<usize> = (0..4096).map(|_| page_key()).collect();
        assert_eq!(keys.len(), 4096, "a key drawn twice");
        assert!(!keys.contains(&Link::Posted.key()), "a page key equals the posted chains' key");
    }
}
