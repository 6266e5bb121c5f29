//! A page's bitmaps: three bits per block, out of line so that no one but
//! the program ever reads a live block, and a free block's only allocator
//! data is its link word.
//!
//! - **live**: set while the block is handed out. Written by the owner only
//!   (a plain store). `free` tests and clears it, so a second free finds it
//!   clear: double frees are caught in O(1), in the call that makes them,
//!   without reading the block; and a block is handed out only while its bit
//!   is clear, so no corrupted list can make two owners of one block.
//! - **pending**: set by another thread's free with an atomic `or`, so that
//!   of several threads freeing one block at once exactly one wins (the
//!   claim); the owner clears it when it takes the block back. While it is
//!   set the owner neither hands the block out nor frees it (see
//!   `crate::small::page`).
//! - **posted**: set by that thread once its claim is decided (the block
//!   was live, and its page not given back meanwhile); the owner takes the
//!   posted bits back a word at a time (`Page::take_posted`). The claim
//!   bits are the message: another thread's free writes nothing into the
//!   block, and the owner never reads it to find it.
//!
//! Layout: the live and pending words of each 64 (32) blocks side by side
//! (`free` reads both from one line; their address is a shift away from the
//! index), then the posted words (which the owner scans as one array). The
//! bitmaps have a bit for every block index an offset in the page can give,
//! so that the index of any pointer into the page reads a word of them.
//! Their size follows the page's class, from 24 bytes (16 KiB blocks, x86_64;
//! one 64-byte line of the arena) to 3 KiB (8-byte blocks): about 3 bits per block, in memory the heap's
//! [`super::arena`] keeps for them.

use super::page::PAGE_SIZE;
use core::sync::atomic::AtomicUsize;

/// Bits in a bitmap word.
pub const BITS: usize = usize::BITS as usize;

/// The live and pending words of `BITS` consecutive blocks.
#[repr(C)]
pub struct Pair {
    pub live: AtomicUsize,
    pub pending: AtomicUsize,
}

/// Words of each bitmap of a page of `size`-byte blocks.
pub const fn words(size: usize) -> usize {
    PAGE_SIZE.div_ceil(size).div_ceil(BITS)
}

/// Bytes of the bitmaps of a page of `size`-byte blocks.
pub const fn bytes(size: usize) -> usize {
    3 * words(size) * size_of::<usize>()
}

/// The word of block `index` in its bitmap.
#[inline(always)]
pub const fn word(index: usize) -> usize {
    index / BITS
}

/// The bit of block `index` in its word.
#[inline(always)]
pub const fn mask(index: usize) -> usize {
    1 << (index % BITS)
}

/// Whether `index`'s bit is set in `w`: `bt` and a jump on x86 (LLVM
/// often builds a mask with a `mov` and a shift instead, one register and
/// two instructions more).
#[inline(always)]
pub fn test(w: usize, index: usize) -> bool {
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    {
        // SAFETY: a register operation (the bit offset is taken modulo the
        // operand size).
        unsafe {
            core::arch::asm!(
                "bt {w}, {i}",
                "jc {set}",
                w = in(reg) w,
                i = in(reg) index,
                set = label { return true; },
                options(nomem, nostack),
            );
        }
        false
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "x86")))]
    {
        (w >> (index % BITS)) & 1 != 0
    }
}

/// `w` with `index`'s bit set: `bts` with the index in a register on x86
/// (LLVM builds the mask with a `mov` and a shift instead: two more
/// instructions on each fast path).
#[inline(always)]
pub fn set(mut w: usize, index: usize) -> usize {
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    // SAFETY: a register operation (the bit offset is taken modulo the
    // operand size).
    unsafe {
        core::arch::asm!("bts {w}, {i}", w = inout(reg) w, i = in(reg) index, options(pure, nomem, nostack));
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "x86")))]
    {
        w |= mask(index);
    }
    w
}

/// `w` with `index`'s bit clear: `btr` on x86 (see [`set`]).
#[inline(always)]
pub fn clear(mut w: usize, index: usize) -> usize {
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    // SAFETY: as in `set`.
    unsafe {
        core::arch::asm!("btr {w}, {i}", w = inout(reg) w, i = in(reg) index, options(pure, nomem, nostack));
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "x86")))]
    {
        w &= !mask(index);
    }
    w
}

/// The block indices whose bits are set in word `j` of a bitmap, given
/// the word's value.
pub fn indices(j: usize, mut w: usize) -> impl Iterator<Item = usize> {
    core::iter::from_fn(move || {
        if w == 0 {
            return None;
        }
        let bit = w.trailing_zeros() as usize;
        w &= w - 1;
        Some(j * BITS + bit)
    })
}

/// A page's bitmaps: where they are, and how many words each has.
#[derive(Clone, Copy)]
pub struct Bitmaps {
    pairs: *const Pair,
    words: usize,
}

impl Bitmaps {
    /// The bitmaps at `pairs`, with `words` words each.
    ///
    /// # Safety
    /// `pairs` is the start of `bytes` of bitmap memory for pages of
    /// `words` words (see [`bytes`]), which stays readable for as long as
    /// the value is used (a heap's arena never unmaps its memory).
    pub unsafe fn new(pairs: *const Pair, words: usize) -> Self {
        Bitmaps { pairs, words }
    }

    pub fn words(self) -> usize {
        self.words
    }

    /// The live and pending words of word `j`.
    #[inline(always)]
    pub fn pair<'a>(self, j: usize) -> &'a Pair {
        debug_assert!(j < self.words);
        // SAFETY: `new`'s contract: `words` pairs at `pairs`, readable.
        unsafe { pair(self.pairs, j) }
    }

    /// Posted word `j`.
    #[inline(always)]
    pub fn posted<'a>(self, j: usize) -> &'a AtomicUsize {
        debug_assert!(j < self.words);
        // SAFETY: as in `pair`: the posted words follow the pairs.
        unsafe { &*self.pairs.add(self.words).cast::<AtomicUsize>().add(j) }
    }
}

/// The live and pending words of word `j` of the bitmaps at `pairs` (for
/// the fast paths, which need not know how many words there are).
///
/// # Safety
/// `pairs` is a page's bitmaps, with more than `j` words, readable for `'a`.
#[inline(always)]
pub unsafe fn pair<'a>(pairs: *const Pair, j: usize) -> &'a Pair {
    // SAFETY: per the contract.
    unsafe { &*pairs.add(j) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::small::size_class::{class_size, classes};

    #[test]
    fn every_index_of_a_page_has_bits() {
        for class in classes() {
            let size = class_size(class);
            assert!(words(size) * BITS >= PAGE_SIZE.div_ceil(size), "size {size}");
            assert!(words(size) * BITS < PAGE_SIZE.div_ceil(size) + BITS, "size {size}: a word too many");
        }
    }

    #[test]
    fn indices_lists_the_set_bits() {
        let found: std::vec::Vec<usize> = indices(2, 0b1001_0001).collect();
        assert_eq!(found, [2 * BITS, 2 * BITS + 4, 2 * BITS + 7]);
        assert_eq!(indices(0, 0).count(), 0);
    }
}
