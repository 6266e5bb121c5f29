//! One bit per segment-aligned address of the whole user address space: set
//! while a segment of ours starts there. `free` of any pointer first asks this
//! map, so a pointer we never returned is recognised without reading memory
//! that may not be mapped.
//!
//! The map lives in `.bss`: its pages stay untouched (and cost no memory)
//! except where segments exist. On x86_64 it covers the 47-bit user address
//! space at 4 MiB granularity, which is 4 MiB of virtual space; on i686 (2 MiB
//! segments) it is 256 bytes.

use super::SEGMENT_SHIFT;
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
    let index = segment >> SEGMENT_SHIFT;
    match MAP.get(index / WORD_BITS) {
        // A shift by the index modulo the word size: one `bt` on x86.
        Some(word) => (word.load(Ordering::Acquire) >> (index % WORD_BITS)) & 1 != 0,
        None => false,
    }
}

/// Segments longer than one `SEGMENT_SIZE` slot whose blocks may start past
/// the first slot (the large segments; see [`crate::large`]): pointers there
/// miss the bitmap, so `free` falls back to this short table. Each entry is
/// the segment's base with its length in slots in the low bits (segments are
/// slot-aligned), one word so that a reader never sees half an update.
/// 64 entries cover 2 GiB of large segments on x86_64 (1 GiB on i686); past
/// that, large requests fall back to mappings of their own.
const MAX_SPANS: usize = 64;
static SPANS: [AtomicUsize; MAX_SPANS] = [const { AtomicUsize::new(0) }; MAX_SPANS];

/// Records the multi-slot segment `[base, base + size)`. False when the table
/// is full.
pub fn insert_span(base: usize, size: usize) -> bool {
    let entry = base | size >> SEGMENT_SHIFT;
    SPANS.iter().any(|s| s.compare_exchange(0, entry, Ordering::Release, Ordering::Relaxed).is_ok())
}

/// Forgets the span starting at `base`, before its memory is unmapped.
pub fn remove_span(base: usize) {
    let slot_mask = (1 << SEGMENT_SHIFT) - 1;
    if let Some(s) = SPANS.iter().find(|s| s.load(Ordering::Relaxed) & !slot_mask == base) {
        s.store(0, Ordering::Release);
    }
}

/// The base of the recorded span that contains `p`.
pub fn span_of(p: usize) -> Option<usize> {
    let slot_mask = (1 << SEGMENT_SHIFT) - 1;
    SPANS.iter().find_map(|s| {
        let entry = s.load(Ordering::Acquire);
        let (base, len) = (entry & !slot_mask, (entry & slot_mask) << SEGMENT_SHIFT);
        (entry != 0 && p.wrapping_sub(base) < len).then_some(base)
    })
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

    #[test]
    fn spans_cover_their_slots() {
        // Not while a large-allocator test may fill the table.
        let _serial = crate::large::tests::SERIAL.lock().unwrap();
        let a = SEGMENT_SIZE * 5;
        assert!(insert_span(a, 3 * SEGMENT_SIZE));
        assert_eq!(span_of(a), Some(a));
        assert_eq!(span_of(a + 3 * SEGMENT_SIZE - 1), Some(a));
        assert_eq!(span_of(a + 3 * SEGMENT_SIZE), None);
        assert_eq!(span_of(a - 1), None);
        remove_span(a);
        assert_eq!(span_of(a + SEGMENT_SIZE), None);
    }
}
