//! Where a heap keeps its pages' bitmaps: chunks of memory mapped for them
//! alone, cut into cache lines, each page taking as many as its class needs
//! (first fit). Owner only.
//!
//! Why not in the segment header: bitmaps sized by the page's class cannot
//! take a fixed place there, and sized for the smallest class (a bit per 8
//! bytes of page, three times) they would take 5 % of every segment's
//! address space, which the seed's test 6 counts. Why not in the page's
//! tail: another thread freeing a block reads its page's bitmaps after
//! finding the page in the segment map; a segment given back at that moment
//! is unmapped but for its header (a tombstone), and the bitmaps must still
//! be readable. Chunks are never unmapped: the memory a stale reader finds
//! there reads as no block live (a chunk's free lines are zero, and purged
//! when a whole OS page of them is free), and a line given to another page
//! meanwhile is told apart by the page's generation (`Page::claim`).
//!
//! A chunk is 64 KiB: the bitmaps of some 300 pages of the test-6 mix
//! (about 200 bytes a page), 20 of the smallest class.

use crate::diag::counters::BITMAP_BYTES;
use crate::os::{self, OS_PAGE};
use core::ptr::null_mut;

/// Bytes of a chunk.
const CHUNK: usize = 64 * 1024;
/// The unit of allocation: a cache line, so that two pages' bitmaps never
/// share one (other threads set pending bits in them).
const UNIT: usize = 64;
const UNITS: usize = CHUNK / UNIT;
const MASK_WORDS: usize = UNITS / 64;
/// Units in an OS page: one word of the free mask.
const _: () = assert!(OS_PAGE / UNIT == 64);

/// The start of a chunk: its place in the heap's list and which units are
/// free.
#[repr(C)]
struct Chunk {
    next: *mut Chunk,
    /// Bit u of word u / 64: unit u is free.
    free: [u64; MASK_WORDS],
    /// Bit k: OS page k was written since it was last purged (or mapped).
    dirty: u64,
}

/// Units the chunk's own header takes at its start.
const HEADER_UNITS: usize = size_of::<Chunk>().div_ceil(UNIT);
const _: () = assert!(HEADER_UNITS < 64 && CHUNK / OS_PAGE <= 64);

/// A heap's chunks. All zero is an arena with no chunk.
pub struct Arena {
    chunks: *mut Chunk,
}

impl Arena {
    pub const EMPTY: Arena = Arena { chunks: null_mut() };

    /// `bytes` of zero memory aligned to a cache line, for one page's
    /// bitmaps; null when no memory can be mapped.
    pub fn alloc(&mut self, bytes: usize) -> *mut u8 {
        let units = bytes.div_ceil(UNIT);
        debug_assert!(units <= UNITS - HEADER_UNITS);
        let mut chunk = self.chunks;
        while !chunk.is_null() {
            // SAFETY: the heap's chunks are mapped for good and only its
            // owner touches them.
            let c = unsafe { &mut *chunk };
            if let Some(first) = find_run(&c.free, units) {
                return c.take(first, units);
            }
            chunk = c.next;
        }
        let Some(c) = Chunk::map() else { return null_mut() };
        c.next = self.chunks;
        self.chunks = c;
        let first = find_run(&c.free, units).unwrap_or(HEADER_UNITS);
        c.take(first, units)
    }

    /// Gives back bitmaps from [`Self::alloc`], all zero again.
    ///
    /// # Safety
    /// `p` and `bytes` are those of an allocation of this arena, which the
    /// caller no longer uses, and whose memory is zero.
    pub unsafe fn free(&mut self, p: *mut u8, bytes: usize) {
        let chunk = (p as usize & !(CHUNK - 1)) as *mut Chunk;
        let first = (p as usize - chunk as usize) / UNIT;
        // SAFETY: chunks are CHUNK-aligned, so `chunk` is the header of the
        // allocation's chunk, one of this heap's.
        let c = unsafe { &mut *chunk };
        for u in first..first + bytes.div_ceil(UNIT) {
            debug_assert!(c.free[u / 64] & 1 << (u % 64) == 0, "unit {u} freed twice");
            c.free[u / 64] |= 1 << (u % 64);
        }
        BITMAP_BYTES.sub((bytes.div_ceil(UNIT) * UNIT) as u64);
    }

    /// Purges every OS page of the arena whose lines are all free and that
    /// was written since it was last purged.
    pub fn purge(&mut self) {
        let mut chunk = self.chunks;
        while !chunk.is_null() {
            // SAFETY: as in `alloc`.
            let c = unsafe { &mut *chunk };
            for k in 1..CHUNK / OS_PAGE {
                if c.dirty & 1 << k != 0 && c.free[k] == u64::MAX {
                    // SAFETY: no bitmap lies in the OS page, and zero is what
                    // a late reader must find there (no block live).
                    unsafe { os::purge((chunk as *mut u8).add(k * OS_PAGE), OS_PAGE) };
                    c.dirty &= !(1 << k);
                }
            }
            chunk = c.next;
        }
    }
}

impl Chunk {
    fn map() -> Option<&'static mut Chunk> {
        let p = os::map_aligned(CHUNK, CHUNK).cast::<Chunk>();
        if p.is_null() {
            return None;
        }
        // SAFETY: fresh zero memory, CHUNK-aligned, ours alone.
        let c = unsafe { &mut *p };
        c.free = [u64::MAX; MASK_WORDS];
        c.free[0] &= !((1 << HEADER_UNITS) - 1);
        c.dirty = 1;
        Some(c)
    }

    /// Marks `units` units from `first` taken; their address.
    fn take(&mut self, first: usize, units: usize) -> *mut u8 {
        for u in first..first + units {
            self.free[u / 64] &= !(1 << (u % 64));
            self.dirty |= 1 << (u * UNIT / OS_PAGE);
        }
        BITMAP_BYTES.add((units * UNIT) as u64);
        (self as *mut Chunk as usize + first * UNIT) as *mut u8
    }
}

/// The first unit of a run of `n` free units in `free`, if any.
fn find_run(free: &[u64; MASK_WORDS], n: usize) -> Option<usize> {
    let (mut u, mut start, mut run) = (0, 0, 0);
    while u < UNITS {
        let w = free[u / 64] >> (u % 64);
        let left = 64 - u % 64;
        if w & 1 == 0 {
            // Busy: on to the next free unit.
            u += if w == 0 { left } else { w.trailing_zeros() as usize };
            run = 0;
            continue;
        }
        let ones = ((!w).trailing_zeros() as usize).min(left);
        if run == 0 {
            start = u;
        }
        run += ones;
        u += ones;
        if run >= n {
            return Some(start);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_found_first_fit_across_words() {
        let mut free = [0u64; MASK_WORDS];
        assert_eq!(find_run(&free, 1), None);
        free[1] = 0b1001 << 60;
        free[2] = 0b1;
        assert_eq!(find_run(&free, 1), Some(64 + 60));
        assert_eq!(find_run(&free, 2), Some(64 + 63), "across the word boundary");
        assert_eq!(find_run(&free, 3), None);
        free[MASK_WORDS - 1] = u64::MAX;
        assert_eq!(find_run(&free, 64), Some(UNITS - 64));
    }

    #[test]
    fn lines_come_back_and_are_reused() {
        let mut arena = Arena::EMPTY;
        let a = arena.alloc(3 * 1024);
        let b = arena.alloc(100);
        assert!(!a.is_null() && !b.is_null());
        assert_eq!(a as usize % UNIT, 0);
        assert_eq!(b as usize, a as usize + 3 * 1024, "first fit, next to the first");
        // SAFETY: the allocations are ours, zero, and unused.
        unsafe { arena.free(a, 3 * 1024) };
        let c = arena.alloc(64);
        assert_eq!(c, a, "the freed lines are the first fit");
        // SAFETY: as above.
        unsafe {
            arena.free(b, 100);
            arena.free(c, 64);
        }
        arena.purge();
        // SAFETY: the chunk is the test's; nothing refers to it.
        unsafe { os::unmap(arena.chunks.cast(), CHUNK) };
    }
}
