//! One bit per segment-aligned address of the whole user address space: set
//! while a segment of ours starts there. `free` of any pointer that is not a
//! block of the calling thread's own pages first asks this map, so a pointer
//! we never returned is recognised without reading memory that may not be
//! mapped.
//!
//! Two levels: a root in `.bss` (4 KiB on x86_64, one word on i686) of
//! leaves mapped the first time a segment lands in their range and kept for
//! good. x86_64's 47-bit address space at 4 MiB granularity is 2^25 bits:
//! flat, 4 MiB of `.bss` that `RLIMIT_AS` counts in full (0.4 % of the
//! seed's test 6 under 1 GiB); a leaf of 8 KiB covers 256 GiB. On i686 the
//! one leaf is 256 bytes.

use super::SEGMENT_SHIFT;
use crate::os::{self, OS_PAGE};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// User-space addresses on x86_64 (4-level paging) and i686 fit this many bits.
/// Linux hands out addresses above 2^47 only to callers that ask for them.
const ADDRESS_BITS: u32 = if usize::BITS == 64 { 47 } else { 32 };

const SEGMENTS: usize = 1 << (ADDRESS_BITS - SEGMENT_SHIFT);
const WORD_BITS: usize = usize::BITS as usize;
/// Segments a leaf covers: 2^16 on x86_64 (8 KiB of bits), all on i686.
const LEAF_SEGMENTS: usize = if usize::BITS == 64 { 1 << 16 } else { SEGMENTS };
const LEAVES: usize = SEGMENTS / LEAF_SEGMENTS;
const LEAF_WORDS: usize = LEAF_SEGMENTS / WORD_BITS;

type Leaf = [AtomicUsize; LEAF_WORDS];

static ROOT: [AtomicPtr<Leaf>; LEAVES] = [const { AtomicPtr::new(null_mut()) }; LEAVES];

/// The leaf and bit of the segment at `segment`, if its leaf exists (or,
/// with `create`, could be made).
fn slot(segment: usize, create: bool) -> Option<(&'static AtomicUsize, usize)> {
    let index = segment >> SEGMENT_SHIFT;
    let root = ROOT.get(index / LEAF_SEGMENTS)?;
    let mut leaf = root.load(Ordering::Acquire);
    if leaf.is_null() && create {
        leaf = make_leaf(root);
    }
    // SAFETY: leaves are mapped for good once published; zero is a valid
    // leaf (no segment).
    let leaf = unsafe { leaf.as_ref()? };
    let i = index % LEAF_SEGMENTS;
    Some((&leaf[i / WORD_BITS], 1 << (i % WORD_BITS)))
}

/// Maps a leaf for `root` (or finds the one another thread just made); null
/// when no memory is left, and then no segment could have been made there.
#[cold]
fn make_leaf(root: &AtomicPtr<Leaf>) -> *mut Leaf {
    let bytes = size_of::<Leaf>().next_multiple_of(OS_PAGE);
    let leaf = os::map_aligned(bytes, OS_PAGE).cast::<Leaf>();
    if leaf.is_null() {
        return leaf;
    }
    match root.compare_exchange(null_mut(), leaf, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => leaf,
        Err(theirs) => {
            // SAFETY: our leaf was never published.
            unsafe { os::unmap(leaf.cast(), bytes) };
            theirs
        }
    }
}

/// Makes sure the map has room for a segment at `segment` (its leaf):
/// false when no memory is left for it.
pub fn prepare(segment: usize) -> bool {
    slot(segment, true).is_some()
}

/// Records that a segment starts at `segment` (segment-aligned, prepared).
pub fn insert(segment: usize) {
    if let Some((word, bit)) = slot(segment, true) {
        // Release: a thread that sees the bit also sees the segment's header.
        word.fetch_or(bit, Ordering::Release);
    }
}

/// Forgets the segment at `segment`, before its memory is unmapped.
pub fn remove(segment: usize) {
    if let Some((word, bit)) = slot(segment, false) {
        word.fetch_and(!bit, Ordering::Release);
    }
}

/// Whether a segment of ours starts at `segment` (segment-aligned).
#[inline(always)]
pub fn contains(segment: usize) -> bool {
    slot(segment, false).is_some_and(|(word, bit)| word.load(Ordering::Acquire) & bit != 0)
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
        // A range whose leaf no segment has made yet (x86_64: one leaf per
        // 256 GiB; i686 has a single leaf).
        #[cfg(target_pointer_width = "64")]
        assert!(!contains(1 << 45));
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
