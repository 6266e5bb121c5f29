//! One bit per segment-aligned address of the whole user address space: set
//! while a segment of ours starts there. `free` of any pointer first asks this
//! map, so a pointer we never returned is recognised without reading memory
//! that may not be mapped.
//!
//! The map lives in `.bss`: its pages stay untouched (and cost no memory)
//! except where segments exist. On x86_64 it covers the 47-bit user address
//! space at 4 MiB granularity, which is 4 MiB of virtual space; on i686 (2 MiB
//! segments) it is 256 bytes.

use crate::segment::SEGMENT_SHIFT;
use core::sync::atomic::{AtomicUsize, Ordering};

/// User-space addresses on x86_64 (4-level paging) and i686 fit this many bits.
/// Linux hands out addresses above 2^47 only to callers that ask for them.
const ADDRESS_BITS: u32 = if usize::BITS == 64 { 47 } else { 32 };

const SEGMENTS: usize = 1 << (ADDRESS_BITS - SEGMENT_SHIFT);
const WORD_BITS: usize = usize::BITS as usize;

static MAP: [AtomicUsize; SEGMENTS / WORD_BITS] = [const { AtomicUsize::new(0) }; SEGMENTS / WORD_BITS];

fn slot(segment: usize) -> Option<(&'static AtomicUsize, usize)> {
    let index = segment >> SEGMENT_SHIFT;
    let word = MAP.get(index / WORD_BITS)?;
    Some((word, 1 << (index % WORD_BITS)))
}

/// Records that a segment starts at `segment` (segment-aligned).
pub fn insert(segment: usize) {
    if let Some((word, bit)) = slot(segment) {
        // Release: a thread that sees the bit also sees the segment's header.
        word.fetch_or(bit, Ordering::Release);
    }
}

/// Forgets the segment at `segment`, before its memory is unmapped.
pub fn remove(segment: usize) {
    if let Some((word, bit)) = slot(segment) {
        word.fetch_and(!bit, Ordering::Release);
    }
}

/// Whether a segment of ours starts at `segment` (segment-aligned).
#[inline(always)]
pub fn contains(segment: usize) -> bool {
    match slot(segment) {
        Some((word, bit)) => word.load(Ordering::Acquire) & bit != 0,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::SEGMENT_SIZE;

    #[test]
    fn insert_contains_remove() {
        // An address range no real segment of the test process uses.
        let a = SEGMENT_SIZE * 3;
        assert!(!contains(a));
        insert(a);
        assert!(contains(a));
        assert!(!contains(a + SEGMENT_SIZE));
        remove(a);
        assert!(!contains(a));
        assert!(!contains(usize::MAX & !(SEGMENT_SIZE - 1)));
    }
}
