//! Small segments: a segment cut into [`PAGE_SIZE`] pages, each serving one
//! size class; its header holds every page's descriptor, so the metadata never
//! sits in the blocks themselves.
//!
//! ```text
//!  small segment (SEGMENT_SIZE, aligned)
//!  +--------+--------------+--------------+-----+--------------+
//!  | header | page 0 blocks| page 1 blocks| ... | page N blocks|
//!  +--------+--------------+--------------+-----+--------------+
//!   descriptors for pages 0..N live in the header
//! ```

use super::page::{Bitmaps, PAGE_SHIFT, PAGE_SIZE, PAGES_PER_SEGMENT, Page};
use super::size_class::MAX_SMALL;
use crate::diag::options;
use crate::os::{self, OS_PAGE};
use crate::segment::{self, Kind, SEGMENT_SIZE, SegmentHeader};
// Points up: a segment records the heap that owns its pages, which remote
// frees and validation read; the heap itself lives in the thread layer.
use crate::thread::heap::Heap;
use core::cell::Cell;
use core::ptr::NonNull;

/// The header of a small segment.
#[repr(C)]
pub struct SmallSegment {
    header: SegmentHeader,
    /// The heap whose pages these are; fixed for the segment's life (a heap
    /// outlives its thread: another thread adopts it).
    pub heap: *const Heap,
    /// Bit i set: page i is free.
    free_pages: Cell<u64>,
    /// Bit i set: assigned page i became empty since it was assigned, and
    /// may still be (see [`Self::is_empty`]).
    emptied: Cell<u64>,
    /// Neighbours in the heap's list of segments that have free pages.
    pub next: Cell<*mut SmallSegment>,
    pub prev: Cell<*mut SmallSegment>,
    pages: [Page; PAGES_PER_SEGMENT],
    /// Each page's live and pending bitmaps (see [`crate::small::page`]): out
    /// of line, so that `free` reads no block; only the bitmaps of pages in
    /// use become resident (an OS page of them covers 8 pages).
    bitmaps: [Bitmaps; PAGES_PER_SEGMENT],
}

/// Bytes before the first block: the header, rounded to the OS page so that
/// purging a page never touches it. On x86_64 it is 76 KiB (64 descriptors
/// of 128 bytes and two bitmaps of 512 bytes a page), so page 0 holds no
/// blocks and page 1 starts past the header; on i686, 40 KiB in page 0.
const HEADER_SIZE: usize = (size_of::<SmallSegment>() + OS_PAGE - 1) & !(OS_PAGE - 1);
/// The page the header ends in: the first that holds blocks.
const FIRST_PAGE: usize = HEADER_SIZE / PAGE_SIZE;
const _: () = assert!(
    HEADER_SIZE + OS_PAGE + MAX_SMALL <= (FIRST_PAGE + 1) * PAGE_SIZE,
    "the first page must hold a block of every class, past a guard page"
);
const ALL_PAGES: u64 = if PAGES_PER_SEGMENT == 64 { u64::MAX } else { (1 << PAGES_PER_SEGMENT) - 1 };
/// The pages that hold blocks.
const USABLE_PAGES: u64 = ALL_PAGES & !((1 << FIRST_PAGE) - 1);

impl SmallSegment {
    /// Maps a segment whose pages will belong to `heap`.
    pub fn create(heap: *const Heap) -> Option<NonNull<SmallSegment>> {
        let seg = segment::tombstones::revive(Kind::Small, SEGMENT_SIZE, HEADER_SIZE)
            .or_else(|| segment::create(Kind::Small, SEGMENT_SIZE))?
            .cast::<SmallSegment>();
        // SAFETY: the header was just mapped (zero) and only we know it; zero
        // is a valid `Page` (a free page with null links). The guard page
        // lies between the header and page 0's first block.
        unsafe {
            let s = &mut *seg.as_ptr();
            s.heap = heap;
            s.free_pages.set(USABLE_PAGES);
            if options::secure() {
                os::protect(seg.as_ptr().cast::<u8>().add(HEADER_SIZE), OS_PAGE);
            }
        }
        Some(seg)
    }

    /// Gives an empty segment back to the system, but for its header, kept
    /// as a tombstone (see [`segment::tombstones`]) with the bitmaps purged:
    /// a free that found the segment in the map a moment before reads a
    /// mapped header and no live block.
    ///
    /// # Safety
    /// `seg` holds no live block, is in no list, and nothing refers to it.
    pub unsafe fn retire(seg: NonNull<SmallSegment>) {
        let base = seg.as_ptr() as usize;
        let from = (base + core::mem::offset_of!(SmallSegment, bitmaps)).next_multiple_of(OS_PAGE);
        // SAFETY: the bitmaps of an empty segment say no block is live, and
        // zero says the same; whole OS pages from `from` are bitmaps only.
        unsafe {
            os::purge(from as *mut u8, base + HEADER_SIZE - from);
            segment::tombstones::retire(seg.cast(), HEADER_SIZE);
        }
    }

    /// The small segment and page descriptor that `p` points into.
    ///
    /// # Safety
    /// `p` must lie in a live small segment (checked with [`segment::find`]),
    /// or be one of its page descriptors.
    #[inline(always)]
    pub unsafe fn page_of(p: *const u8) -> (*mut SmallSegment, *mut Page) {
        let s = (p as usize & !(SEGMENT_SIZE - 1)) as *mut SmallSegment;
        let index = (p as usize - s as usize) >> PAGE_SHIFT;
        // SAFETY: index < PAGES_PER_SEGMENT because p lies in the segment.
        (s, unsafe { (&raw mut (*s).pages).cast::<Page>().add(index) })
    }

    pub fn has_free_page(&self) -> bool {
        self.free_pages.get() != 0
    }

    pub fn is_unused(&self) -> bool {
        self.free_pages.get() == USABLE_PAGES
    }

    /// The pages assigned to a class (empty or not).
    pub fn assigned_pages(&self) -> impl Iterator<Item = &Page> + '_ {
        self.assigned().map(|(_, p)| p)
    }

    /// The same with their indexes.
    fn assigned(&self) -> impl Iterator<Item = (usize, &Page)> + '_ {
        let assigned = !self.free_pages.get() & USABLE_PAGES;
        self.pages.iter().enumerate().filter(move |(i, _)| assigned & (1 << i) != 0)
    }

    /// Records that `page` of this segment became empty (its owner saw its
    /// countdown end).
    pub fn note_emptied(&self, page: &Page) {
        self.emptied.set(self.emptied.get() | 1 << self.index_of(page));
    }

    /// Whether no page of the segment holds a block. A page becomes empty
    /// through [`Self::note_emptied`], or silently while it is in its heap's
    /// ring of emptied pages (which it entered after that call), so a page
    /// without its bit holds a block: most calls (a page empties while its
    /// neighbours serve) end on one mask test. The rest look only at the
    /// pages once emptied, which allocations may have filled again; those
    /// found in use lose the bit unless they are in the ring.
    pub fn is_empty(&self) -> bool {
        let emptied = self.emptied.get();
        if !self.free_pages.get() & USABLE_PAGES & !emptied != 0 {
            return false;
        }
        let (mut in_use, mut stale) = (false, 0);
        for (i, p) in self.assigned() {
            if p.used() != 0 || p.has_pending() {
                in_use = true;
                if !p.in_ring() {
                    stale |= 1 << i;
                }
            }
        }
        self.emptied.set(emptied & !stale);
        !in_use
    }

    fn index_of(&self, page: &Page) -> usize {
        (page as *const Page as usize - self.pages.as_ptr() as usize) / size_of::<Page>()
    }

    /// Takes a free page (the lowest, to keep the used part of the segment
    /// compact) and assigns it to `class`.
    pub fn take_page(&self, class: usize) -> &Page {
        debug_assert!(self.has_free_page());
        let index = self.free_pages.get().trailing_zeros() as usize;
        self.free_pages.set(self.free_pages.get() & !(1 << index));
        let (start, end) = self.page_area(index);
        let page = &self.pages[index];
        page.assign(class, start, end, (&raw const self.bitmaps[index]).cast_mut());
        if options::secure() {
            page.shuffle();
        }
        page
    }

    /// Returns an empty page to the segment and gives its memory back to the
    /// system; the addresses stay, and read zero when reused.
    ///
    /// # Safety
    /// `page` is a page of this segment with no live block and in no list.
    pub unsafe fn release_page(&self, page: &Page) {
        let index = self.index_of(page);
        page.unassign();
        self.emptied.set(self.emptied.get() & !(1 << index));
        let (start, end) = self.page_area(index);
        // SAFETY: the page's blocks are all free, and `start` is OS-page
        // aligned (the header size is rounded), so no header byte is purged.
        unsafe { os::purge(start as *mut u8, end - start) };
        self.free_pages.set(self.free_pages.get() | 1 << index);
    }

    /// The block area of page `index`.
    fn page_area(&self, index: usize) -> (usize, usize) {
        let base = self as *const Self as usize + index * PAGE_SIZE;
        let guard = if options::secure() { OS_PAGE } else { 0 };
        let start = if index == FIRST_PAGE { self as *const Self as usize + HEADER_SIZE + guard } else { base };
        (start, base + PAGE_SIZE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::error::BadBlock;
    use crate::small::size_class::class_of;
    use core::ptr::null_mut;

    #[test]
    fn pages_hand_out_distinct_blocks_and_detect_bad_frees() {
        let seg = SmallSegment::create(null_mut()).unwrap();
        // SAFETY: the segment is ours for the test, until destroyed below.
        let s = unsafe { seg.as_ref() };
        let page = s.take_page(class_of(48));
        let a = page.pop();
        let b = page.pop();
        assert_eq!(b as usize - a as usize, 48);
        assert_eq!(page.check_live(a), Ok(()));
        // SAFETY: `a + 8` is inside a live block.
        assert_eq!(page.claim_foreign(unsafe { a.add(8) }), Err(BadBlock::Invalid));
        assert_eq!(page.claim_foreign((b as usize + 48) as *mut u8), Err(BadBlock::Invalid), "never handed out");
        // SAFETY: the test owns the page; the pointers lie in it.
        unsafe {
            assert_eq!(page.free((b as usize + 48) as *mut u8), Err(BadBlock::Invalid), "never handed out");
            assert_eq!(page.free(a.add(8)), Err(BadBlock::Invalid));
            assert_eq!(page.free(a), Ok(false));
            assert_eq!(page.free(a), Err(BadBlock::DoubleFree));
        }
        assert_eq!(page.claim_foreign(a), Err(BadBlock::DoubleFree), "freed by the owner already");
        assert_eq!(page.check_live(a), Err(BadBlock::DoubleFree));
        assert_eq!(page.pop(), a, "freed blocks are reused first");
        assert_eq!(page.check_live(a), Ok(()));

        // Another thread frees `b`: claimed once, then a double free for any
        // other thread until the owner takes it back; the owner's own free
        // waits for the claim's fate (`Claimed`), and the block stays live.
        assert_eq!(page.claim_foreign(b), Ok(b.cast()));
        assert_eq!(page.claim_foreign(b), Err(BadBlock::DoubleFree));
        assert_eq!(page.check_live(b), Ok(()));
        // SAFETY: as above.
        unsafe {
            assert_eq!(page.free(b), Err(BadBlock::Claimed));
            assert_eq!(page.take_back(b), Ok(false));
            assert_eq!(page.take_back(b), Err(BadBlock::Invalid), "not claimed again");
            assert_eq!(page.take_back(a), Err(BadBlock::Invalid), "never claimed");
            assert_eq!(page.free(a), Ok(true), "the page became empty");
            s.release_page(page);
        }
        assert!(s.is_unused());
        // SAFETY: nothing uses the segment any more.
        unsafe { SmallSegment::retire(seg) };
    }

    #[test]
    fn a_late_free_reads_the_mapped_header_of_a_retired_segment() {
        let seg = SmallSegment::create(null_mut()).unwrap();
        // SAFETY: the segment is ours for the test until retired; after
        // that only what a late free reads is read.
        unsafe {
            let page = seg.as_ref().take_page(class_of(48));
            let a = page.pop();
            assert_eq!(page.free(a), Ok(true));
            SmallSegment::retire(seg);
            // A free that passed the map test before the retirement goes on
            // to read the header, the page descriptor and the bitmaps: all
            // mapped (this faulted when the whole segment was unmapped), and
            // no block is live.
            let (s, page) = SmallSegment::page_of(a);
            assert_eq!(s, seg.as_ptr());
            assert!((*s).heap.is_null());
            assert!((*page).claim_foreign(a).is_err());
        }
        // The next segment may take the tombstone's addresses again.
        let next = SmallSegment::create(null_mut()).unwrap();
        // SAFETY: the new segment is empty and ours.
        unsafe { SmallSegment::retire(next) };
    }

    #[test]
    fn empty_only_when_every_page_emptied_and_still_is() {
        let seg = SmallSegment::create(null_mut()).unwrap();
        // SAFETY: the segment is ours for the test, until destroyed below.
        let s = unsafe { seg.as_ref() };
        let (a, b) = (s.take_page(class_of(64)), s.take_page(class_of(64)));
        let (x, y) = (a.pop(), b.pop());
        // SAFETY: the test owns the pages; the blocks are live.
        unsafe {
            assert_eq!(a.free(x), Ok(true));
            s.note_emptied(a);
            assert!(!s.is_empty(), "page b holds a block");
            assert_eq!(b.free(y), Ok(true));
            s.note_emptied(b);
            assert!(s.is_empty());
            // Allocated from again: the bit stays, the scan sees the block.
            let z = a.pop();
            assert!(!s.is_empty());
            assert_eq!(s.emptied.get() & (1 << s.index_of(a)), 0, "found in use, bit cleared");
            assert_eq!(a.free(z), Ok(true));
            s.note_emptied(a);
            assert!(s.is_empty());
            s.release_page(a);
            s.release_page(b);
            assert_eq!(s.emptied.get(), 0);
            SmallSegment::retire(seg);
        }
    }

    #[test]
    fn a_page_in_the_ring_empties_silently_and_stays_found_empty() {
        let seg = SmallSegment::create(null_mut()).unwrap();
        // SAFETY: the segment is ours for the test, until destroyed below.
        let s = unsafe { seg.as_ref() };
        let (a, b) = (s.take_page(class_of(64)), s.take_page(class_of(64)));
        let y = b.pop();
        // SAFETY: the test owns the pages; the blocks are live.
        unsafe {
            let x = a.pop();
            assert_eq!(a.free(x), Ok(true), "first emptying ends the countdown");
            s.note_emptied(a);
            a.set_in_ring(true);
            let (x, z) = (a.pop(), a.pop());
            assert_eq!(a.used(), 2);
            assert!(!s.is_empty());
            assert_eq!(a.free(x), Ok(false));
            assert_eq!(a.free(z), Ok(false), "in the ring: emptying again is silent");
            assert_eq!(a.used(), 0);
            assert_eq!(b.free(y), Ok(true));
            s.note_emptied(b);
            assert!(s.is_empty(), "a kept its bit while found in use in the ring");
            // Out of the ring, the count is plain again: the next emptying
            // is reported.
            let x = a.pop();
            a.set_in_ring(false);
            assert_eq!(a.used(), 1);
            assert_eq!(a.free(x), Ok(true));
            // A full page in the ring: the free that reaches it ends the
            // countdown, and its count keeps the ring's slack.
            a.set_in_ring(true);
            let blocks: [*mut u8; 1024] = core::array::from_fn(|_| a.pop());
            let n = blocks.iter().take_while(|p| !p.is_null()).count();
            assert_eq!(n, a.capacity());
            a.set_full();
            assert_eq!(a.free(blocks[0]), Ok(true));
            a.clear_full();
            assert_eq!(a.used(), n - 1);
            for &p in &blocks[1..n - 1] {
                assert_eq!(a.free(p), Ok(false));
            }
            assert_eq!(a.free(blocks[n - 1]), Ok(false));
            assert_eq!(a.used(), 0);
            a.set_in_ring(false);
            s.release_page(a);
            s.release_page(b);
            SmallSegment::retire(seg);
        }
    }
}
