//! A free block's first two words: the free-list link, encoded with a
//! per-process secret (a stray write of a plausible pointer does not redirect
//! the list), and a marker derived from the block's address and the secret,
//! which makes a second free of the same block recognisable in O(1).

use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The secret mixed into free-block markers, chosen at initialisation.
pub static KEY: AtomicUsize = AtomicUsize::new(0);

/// Sets the marker secret. The low bit is forced on, so that a marker (an
/// aligned address xor the key) is never 0, the value a live block's marker
/// word is reset to.
pub fn set_key(key: usize) {
    KEY.store(key | 1, Relaxed);
}

/// The first two words of a free block: the free-list link, encoded with
/// the secret (a stray write of a plausible pointer does not redirect the
/// list), and the marker.
#[repr(C)]
pub struct Block {
    pub next: usize,
    pub marker: usize,
}

/// The link is encoded with the secret rotated by half a word, so that link
/// and marker words differ even when `next` is the block itself.
#[inline(always)]
pub fn link_key(key: usize) -> usize {
    key.rotate_left(usize::BITS / 2)
}

impl Block {
    #[inline(always)]
    fn expected_marker(this: *const Block) -> usize {
        this as usize ^ KEY.load(Relaxed)
    }

    /// The next block on the list.
    ///
    /// # Safety
    /// `this` is a block on a free list.
    #[inline(always)]
    pub unsafe fn next(this: *const Block) -> *mut Block {
        // SAFETY: per the contract the block's words are readable.
        (unsafe { (*this).next } ^ link_key(KEY.load(Relaxed))) as *mut Block
    }

    /// Whether the block carries the free marker: it is on some free list.
    ///
    /// # Safety
    /// `this` must be a block of a live page (readable, `MIN_BLOCK` bytes).
    #[inline(always)]
    pub unsafe fn is_free(this: *const Block) -> bool {
        // SAFETY: per the contract, the block's words are readable.
        unsafe { (*this).marker == Self::expected_marker(this) }
    }

    /// Links the block in front of `next` and marks it free.
    ///
    /// # Safety
    /// The caller owns the block's memory (it was just freed).
    #[inline(always)]
    pub unsafe fn set_free(this: *mut Block, next: *mut Block) {
        let key = KEY.load(Relaxed);
        // SAFETY: per the contract.
        unsafe { this.write(Block { next: next as usize ^ link_key(key), marker: this as usize ^ key }) };
    }
}
