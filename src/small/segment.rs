//! Small segments: a segment cut into [`PAGE_SIZE`] pages, each serving one
//! size class; its header holds every page's descriptor, so the metadata never
//! sits in the blocks themselves (the bitmaps are in the heap's
//! [`super::arena`]).
//!
//! ```text
//!  small segment (SEGMENT_SIZE, aligned)
//!  +--------+-------------+--------------+-----+--------------+
//!  | header | page 0 ...  | page 1 blocks| ... | page N blocks|
//!  +--------+-------------+--------------+-----+--------------+
//!  page 0's blocks start at the segment, like every page's: those that
//!  overlap the header are never handed out (see `Page::first`)
//! ```

use super::arena::Arena;
use super::bitmaps;
use super::page::{PAGE_SHIFT, PAGE_SIZE, PAGES_PER_SEGMENT, Page};
use super::size_class::{MAX_SMALL, class_size};
use crate::diag::options;
use crate::os::{self, OS_PAGE};
use crate::segment::{self, Kind, SEGMENT_SIZE, SegmentHeader};
use crate::sys::lock::SpinLock;
// Points up: a segment records the heap that owns its pages, which remote
// frees and validation read; the heap itself lives in the thread layer.
use crate::thread::heap::Heap;
use core::cell::Cell;
use core::ptr::{NonNull, null_mut};
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering::Relaxed};

/// The header of a small segment.
#[repr(C)]
pub struct SmallSegment {
    header: SegmentHeader,
    /// The heap whose pages these are; fixed for the segment's life (a heap
    /// outlives its thread: another thread adopts it).
    pub heap: *const Heap,
    /// Bit i set: page i is free (read by the statistics).
    free_pages: AtomicU64,
    /// Bit i set: page i is mapped (all of them but in a segment made short
    /// when the address space ran out: see [`Self::create`]).
    mapped_pages: u64,
    /// Bit i set: assigned page i became empty since it was assigned, and
    /// may still be (see [`Self::is_empty`]).
    emptied: Cell<u64>,
    /// Bit i set: free page i was given back without a purge, so its memory
    /// may still be resident (see [`Self::release_page`]).
    dirty: Cell<u64>,
    /// Neighbours in the heap's list of segments that have free pages.
    pub next: Cell<*mut SmallSegment>,
    pub prev: Cell<*mut SmallSegment>,
    /// Neighbours in the list of every small segment (under [`REGISTRY`]).
    all_next: AtomicPtr<SmallSegment>,
    all_prev: AtomicPtr<SmallSegment>,
    pages: [Page; PAGES_PER_SEGMENT],
}

/// What part of a small segment a resident byte belongs to (see
/// [`SmallSegment::for_each_resident`]).
pub enum Part<'a> {
    /// The header: the segment's fields and its page descriptors.
    Header,
    /// A page that belongs to no class (its memory purged, but for the
    /// pages a heap keeps dirty: see `thread::pages::DIRTY_PAGES_MAX`).
    FreePage,
    /// A page of a class, holding blocks or empty.
    Page(&'a Page),
}

/// Bytes before page 0's first block can start: the header (128 bytes of
/// fields, then a descriptor of 128 bytes a page: 8.1 KiB on x86_64, 4.1 KiB
/// on i686, 0.2 % of a segment).
const HEADER_SIZE: usize = size_of::<SmallSegment>();
/// The header's OS pages: what a tombstone keeps mapped.
const HEADER_PAGES: usize = HEADER_SIZE.next_multiple_of(OS_PAGE);
const _: () = assert!(
    HEADER_PAGES + OS_PAGE + MAX_SMALL <= PAGE_SIZE,
    "page 0 must hold a block of every class, past a guard page"
);
/// The mask of the first `n` pages.
const fn first_pages(n: usize) -> u64 {
    if n == 64 { u64::MAX } else { (1 << n) - 1 }
}

/// The shortest segment made when a whole one cannot be mapped: page 0 (the
/// header's) and one more.
const MIN_PAGES: usize = 2;

/// Every small segment, for the statistics, which read their pages'
/// counters: a segment leaves the list (under the lock) before it is
/// retired, so a reader holding the lock reads mapped headers only.
static REGISTRY: SpinLock<Registry> = SpinLock::new(Registry(null_mut()));

struct Registry(*mut SmallSegment);

// SAFETY: the list is only reached through its lock.
unsafe impl Send for Registry {}

impl SmallSegment {
    /// Maps a segment whose pages will belong to `heap`. When the address
    /// space (or `RLIMIT_AS`) has no room for a whole segment, a shorter one
    /// at a segment-aligned address: half, a quarter, ... down to
    /// [`MIN_PAGES`] pages, so that the last few MiB still hold blocks (the
    /// seed's test 6 counts every byte of them).
    pub fn create(heap: *const Heap) -> Option<NonNull<SmallSegment>> {
        let seg = segment::tombstones::revive(Kind::Small, SEGMENT_SIZE, HEADER_PAGES)
            .or_else(|| {
                (0..)
                    .map(|k| SEGMENT_SIZE >> k)
                    .take_while(|&size| size >= MIN_PAGES * PAGE_SIZE)
                    .find_map(|size| segment::create(Kind::Small, size))
            })?
            .cast::<SmallSegment>();
        // SAFETY: the header was just mapped (zero) and only we know it; zero
        // is a valid `Page` (a free page with null links). The guard page
        // follows the header.
        unsafe {
            let s = &mut *seg.as_ptr();
            s.heap = heap;
            s.mapped_pages = first_pages(s.header.size / PAGE_SIZE);
            s.free_pages.store(s.mapped_pages, Relaxed);
            if options::secure() {
                os::protect(seg.as_ptr().cast::<u8>().add(HEADER_PAGES), OS_PAGE);
            }
        }
        let mut all = REGISTRY.lock();
        // SAFETY: the segment is ours; the list's segments are live.
        unsafe {
            (*seg.as_ptr()).all_next.store(all.0, Relaxed);
            if !all.0.is_null() {
                (*all.0).all_prev.store(seg.as_ptr(), Relaxed);
            }
        }
        all.0 = seg.as_ptr();
        Some(seg)
    }

    /// Gives an empty segment back to the system, but for its header, kept
    /// as a tombstone (see [`segment::tombstones`]): a free that found the
    /// segment in the map a moment before reads a mapped header and no live
    /// block (every page is free). The header's OS pages but the first
    /// (the descriptors of free pages, which read the same when zero) are
    /// purged first: once listed, a tombstone may be revived at any time.
    ///
    /// # Safety
    /// `seg` holds no live block, is in no list of its heap, and nothing
    /// refers to it.
    pub unsafe fn retire(seg: NonNull<SmallSegment>) {
        let s = seg.as_ptr();
        {
            let mut all = REGISTRY.lock();
            // SAFETY: the segment and its neighbours are live and listed.
            unsafe {
                let (prev, next) = ((*s).all_prev.load(Relaxed), (*s).all_next.load(Relaxed));
                if prev.is_null() {
                    all.0 = next;
                } else {
                    (*prev).all_next.store(next, Relaxed);
                }
                if !next.is_null() {
                    (*next).all_prev.store(prev, Relaxed);
                }
            }
        }
        // SAFETY: per the contract; the header's bytes are ours.
        unsafe {
            os::purge(s.cast::<u8>().add(OS_PAGE), HEADER_PAGES - OS_PAGE);
            segment::tombstones::retire(seg.cast(), HEADER_PAGES);
        }
    }

    /// Calls `f` on every assigned page of every small segment (for the
    /// statistics: the page's counters and class are atomics; the rest may
    /// change meanwhile).
    pub fn for_each_page(mut f: impl FnMut(&Page)) {
        Self::for_each(|seg| seg.assigned().for_each(|(_, p)| f(p)));
    }

    /// Calls `f` with each part of every small segment and its resident
    /// bytes (from `mincore`), for the statistics' account of where the
    /// memory is. The header's part is its OS pages; page 0's, the rest of
    /// its 64 KiB.
    pub fn for_each_resident(mut f: impl FnMut(Part<'_>, usize)) {
        let mut pages = [0u8; SEGMENT_SIZE / OS_PAGE];
        Self::for_each(|seg| {
            let size = seg.header.size;
            if !os::residency((seg as *const Self).cast(), size, &mut pages) {
                return;
            }
            let resident = |from: usize, to: usize| {
                pages[from / OS_PAGE..to / OS_PAGE].iter().filter(|&&b| b & 1 != 0).count() * OS_PAGE
            };
            f(Part::Header, resident(0, HEADER_PAGES));
            let free = seg.free_pages.load(Relaxed);
            for (i, page) in seg.pages.iter().enumerate().take(size / PAGE_SIZE) {
                let bytes = resident((i * PAGE_SIZE).max(HEADER_PAGES), (i + 1) * PAGE_SIZE);
                f(if free & 1 << i != 0 { Part::FreePage } else { Part::Page(page) }, bytes);
            }
        });
    }

    /// Calls `f` on every small segment, under the registry's lock.
    fn for_each(mut f: impl FnMut(&SmallSegment)) {
        let all = REGISTRY.lock();
        let mut s = all.0;
        while !s.is_null() {
            // SAFETY: listed segments are mapped while the lock is held.
            let seg = unsafe { &*s };
            f(seg);
            s = seg.all_next.load(Relaxed);
        }
    }

    /// Holds the registry's lock across `fork` (see `crate::api::fork`).
    pub fn lock_for_fork() {
        REGISTRY.lock_forever();
    }

    /// # Safety
    /// After [`Self::lock_for_fork`], in the parent or the child.
    pub unsafe fn unlock_after_fork() {
        // SAFETY: per the contract.
        unsafe { REGISTRY.force_unlock() };
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
        self.free_pages.load(Relaxed) != 0
    }

    pub fn is_unused(&self) -> bool {
        self.free_pages.load(Relaxed) == self.mapped_pages
    }

    /// The pages assigned to a class (empty or not).
    pub fn assigned_pages(&self) -> impl Iterator<Item = &Page> + '_ {
        self.assigned().map(|(_, p)| p)
    }

    /// The same with their indexes.
    fn assigned(&self) -> impl Iterator<Item = (usize, &Page)> + '_ {
        let assigned = !self.free_pages.load(Relaxed) & self.mapped_pages;
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
        if !self.free_pages.load(Relaxed) & self.mapped_pages & !emptied != 0 {
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

    /// Takes a free page and assigns it to `class`, with bitmaps from
    /// `arena`; None when no memory is left for them. A dirty page first (its
    /// memory is likely resident: no page faults), then the lowest (to keep
    /// the used part of the segment compact).
    pub fn take_page(&self, class: usize, arena: &mut Arena) -> Option<&Page> {
        debug_assert!(self.has_free_page());
        let pairs = arena.alloc(bitmaps::bytes(class_size(class)));
        if pairs.is_null() {
            return None;
        }
        let free = self.free_pages.load(Relaxed);
        let dirty = self.dirty.get();
        let index = if dirty != 0 { dirty } else { free }.trailing_zeros() as usize;
        self.dirty.set(dirty & !(1 << index));
        self.free_pages.fetch_and(!(1 << index), Relaxed);
        let page = &self.pages[index];
        let base = self as *const Self as usize + index * PAGE_SIZE;
        let first = if index == 0 { Self::first_block_offset().div_ceil(class_size(class)) } else { 0 };
        page.assign(class, base, first, pairs.cast());
        if options::secure() {
            page.shuffle();
        }
        Some(page)
    }

    /// Where page 0's first usable block may start: past the header (and
    /// the guard page in secure mode).
    fn first_block_offset() -> usize {
        if options::secure() { HEADER_PAGES + OS_PAGE } else { HEADER_SIZE }
    }

    /// Returns an empty page to the segment and its bitmaps to `arena`. Its
    /// memory stays as it is, the page marked dirty, until the next page
    /// taken here reuses it or [`Self::purge_dirty`] gives it back: the
    /// owner purges in runs of adjacent pages, not one `madvise` per page.
    ///
    /// # Safety
    /// `page` is a page of this segment with no live block, whose
    /// `begin_release` said yes, and in no list; `arena` is its heap's.
    pub unsafe fn release_page(&self, page: &Page, arena: &mut Arena) {
        // SAFETY: per the contract.
        unsafe { self.free_page(page, arena) };
        self.dirty.set(self.dirty.get() | 1 << self.index_of(page));
    }

    /// [`Self::release_page`] without marking the page dirty, for a segment
    /// about to be unmapped whole.
    ///
    /// # Safety
    /// As for [`Self::release_page`].
    pub unsafe fn free_page(&self, page: &Page, arena: &mut Arena) {
        let index = self.index_of(page);
        let (pairs, bytes) = page.unassign();
        // SAFETY: per the contract the bitmaps are the page's, zero now.
        unsafe { arena.free(pairs.cast(), bytes) };
        self.emptied.set(self.emptied.get() & !(1 << index));
        self.free_pages.fetch_or(1 << index, Relaxed);
    }

    /// The free pages given back without a purge.
    pub fn dirty_pages(&self) -> u32 {
        self.dirty.get().count_ones()
    }

    /// Gives the memory of every dirty page back to the system, one
    /// `madvise` per run of adjacent pages; how many pages.
    pub fn purge_dirty(&self) -> u32 {
        let mut dirty = self.dirty.replace(0);
        let purged = dirty.count_ones();
        while dirty != 0 {
            let first = dirty.trailing_zeros() as usize;
            let run = (!(dirty >> first)).trailing_zeros() as usize;
            let base = self as *const Self as usize;
            // Page 0's block area starts past the header's OS pages.
            let start = base + (first * PAGE_SIZE).max(Self::first_block_offset().next_multiple_of(OS_PAGE));
            let end = base + (first + run) * PAGE_SIZE;
            // SAFETY: the pages are free (no block, no bitmaps: a late reader
            // finds them unassigned in the header) and past the header.
            unsafe { os::purge(start as *mut u8, end - start) };
            dirty &= !(first_pages(run) << first);
        }
        purged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::error::BadBlock;
    use crate::small::page::Freed;
    use crate::small::size_class::class_of;

    fn pop(page: &Page) -> *mut u8 {
        if page.has_free() { page.pop().expect("refused") } else { page.bump().unwrap_or(null_mut()) }
    }

    #[test]
    fn pages_hand_out_distinct_blocks_and_detect_bad_frees() {
        let seg = SmallSegment::create(null_mut()).unwrap();
        let mut arena = Arena::EMPTY;
        // SAFETY: the segment is ours for the test, until retired below.
        let s = unsafe { seg.as_ref() };
        let _page0 = s.take_page(class_of(16 * 1024), &mut arena).unwrap();
        let page = s.take_page(class_of(48), &mut arena).unwrap();
        let a = pop(page);
        let b = pop(page);
        assert_eq!(a as usize, page.base(), "blocks start at the page");
        assert_eq!(b as usize - a as usize, 48);
        assert_eq!(page.check_live(a), Ok(()));
        // SAFETY: `a + 8` is inside a live block.
        assert_eq!(page.claim(unsafe { a.add(8) }).err(), Some(BadBlock::Invalid));
        assert_eq!(page.claim((b as usize + 48) as *mut u8).err(), Some(BadBlock::Invalid), "never handed out");
        // SAFETY: the test owns the page; the pointers lie in it.
        unsafe {
            assert_eq!(page.free((b as usize + 48) as *mut u8), Freed::NotLive, "never handed out");
            assert_eq!(page.why_not((b as usize + 48) as *mut u8), BadBlock::Invalid);
            assert_eq!(page.free(a.add(8)), Freed::Invalid);
            assert_eq!(page.free(a), Freed::Done);
            assert_eq!(page.free(a), Freed::NotLive);
            assert_eq!(page.why_not(a), BadBlock::DoubleFree);
        }
        assert_eq!(page.claim(a).err(), Some(BadBlock::DoubleFree), "freed by the owner already");
        assert_eq!(page.check_live(a), Err(BadBlock::DoubleFree));
        assert_eq!(pop(page), a, "freed blocks are reused first");

        // Another thread frees `b`: claimed once, then a double free for any
        // other thread until the owner takes it back; the owner's own free
        // waits for the claim's fate (`Claimed`), and the block stays live.
        let claim = page.claim(b).unwrap();
        assert_eq!(page.claim(b).err(), Some(BadBlock::DoubleFree));
        assert_eq!(page.check_live(b), Ok(()));
        // SAFETY: as above.
        unsafe {
            assert_eq!(page.free(b), Freed::Claimed);
            page.post(claim);
            let taken = page.take_posted(|p| panic!("{p:p} reported"));
            assert_eq!(taken.blocks, 1);
            assert!(!page.returned(1));
            assert_eq!(page.claim(b).err(), Some(BadBlock::DoubleFree), "free again");
            assert_eq!(page.free(a), Freed::Ended, "the page became empty");
            assert!(page.begin_release());
            s.release_page(page, &mut arena);
        }
        assert!(!s.is_unused());
        // SAFETY: page 0 holds no block.
        unsafe {
            assert!(_page0.begin_release());
            s.release_page(_page0, &mut arena);
        };
        assert!(s.is_unused());
        // SAFETY: nothing uses the segment any more.
        unsafe { SmallSegment::retire(seg) };
    }

    #[test]
    fn released_pages_stay_resident_until_purged_together_and_are_reused_first() {
        let seg = SmallSegment::create(null_mut()).unwrap();
        let mut arena = Arena::EMPTY;
        let resident = |from: usize, pages: usize| {
            let mut v = [0u8; PAGE_SIZE / OS_PAGE * 8];
            let len = pages * PAGE_SIZE;
            assert!(os::residency((seg.as_ptr() as usize + from * PAGE_SIZE) as *const u8, len, &mut v));
            v[..len / OS_PAGE].iter().filter(|&&b| b & 1 != 0).count()
        };
        // SAFETY: the segment is ours for the test; each page's one block
        // is written, freed and the page released before it is purged.
        unsafe {
            let s = seg.as_ref();
            let _page0 = s.take_page(class_of(64), &mut arena).unwrap();
            let pages: [&Page; 4] = core::array::from_fn(|_| s.take_page(class_of(16384), &mut arena).unwrap());
            for page in pages {
                let b = pop(page);
                b.write_bytes(1, 16384);
                assert_eq!(page.free(b), Freed::Ended);
                assert!(page.begin_release());
            }
            // Pages 1, 2 and 4 released (dirty, still resident); page 3 live.
            for i in [0, 1, 3] {
                s.release_page(pages[i], &mut arena);
            }
            assert_eq!(s.dirty_pages(), 3);
            assert!(resident(1, 4) >= 4 * 4);
            // A new page takes a dirty one (the lowest), warm.
            let again = s.take_page(class_of(16384), &mut arena).unwrap();
            assert_eq!(again.base(), seg.as_ptr() as usize + PAGE_SIZE);
            assert_eq!(s.dirty_pages(), 2);
            // Pages 2 and 4 go back: two runs, their memory no longer resident.
            assert_eq!(s.purge_dirty(), 2);
            assert_eq!(s.dirty_pages(), 0);
            assert_eq!(resident(2, 1), 0);
            assert_eq!(resident(4, 1), 0);
            assert!(resident(3, 1) >= 4);
        }
    }

    #[test]
    fn a_late_free_reads_the_mapped_header_of_a_retired_segment() {
        let seg = SmallSegment::create(null_mut()).unwrap();
        let mut arena = Arena::EMPTY;
        // SAFETY: the segment is ours for the test until retired; after
        // that only what a late free reads is read.
        unsafe {
            let page = seg.as_ref().take_page(class_of(48), &mut arena).unwrap();
            let a = pop(page);
            assert_eq!(page.free(a), Freed::Ended);
            assert!(page.begin_release());
            seg.as_ref().release_page(page, &mut arena);
            SmallSegment::retire(seg);
            // A free that passed the map test before the retirement goes on
            // to read the header and the page descriptor: mapped (this
            // faulted when the whole segment was unmapped), and no block is
            // live; the bitmaps, in the arena, stay mapped too.
            let (s, page) = SmallSegment::page_of(a);
            assert_eq!(s, seg.as_ptr());
            assert!((*page).claim(a).is_err());
            assert!((*page).check_live(a).is_err());
        }
        // The next segment may take the tombstone's addresses again.
        let next = SmallSegment::create(null_mut()).unwrap();
        // SAFETY: the new segment is empty and ours.
        unsafe { SmallSegment::retire(next) };
    }

    #[test]
    fn empty_only_when_every_page_emptied_and_still_is() {
        let seg = SmallSegment::create(null_mut()).unwrap();
        let mut arena = Arena::EMPTY;
        // SAFETY: the segment is ours for the test, until destroyed below.
        let s = unsafe { seg.as_ref() };
        let a = s.take_page(class_of(64), &mut arena).unwrap();
        let b = s.take_page(class_of(64), &mut arena).unwrap();
        let (x, y) = (pop(a), pop(b));
        // SAFETY: the test owns the pages; the blocks are live.
        unsafe {
            assert_eq!(a.free(x), Freed::Ended);
            s.note_emptied(a);
            assert!(!s.is_empty(), "page b holds a block");
            assert_eq!(b.free(y), Freed::Ended);
            s.note_emptied(b);
            assert!(s.is_empty());
            // Allocated from again: the bit stays, the scan sees the block.
            let z = pop(a);
            assert!(!s.is_empty());
            assert_eq!(s.emptied.get() & (1 << s.index_of(a)), 0, "found in use, bit cleared");
            assert_eq!(a.free(z), Freed::Ended);
            s.note_emptied(a);
            assert!(s.is_empty());
            assert!(a.begin_release());
            s.release_page(a, &mut arena);
            assert!(b.begin_release());
            s.release_page(b, &mut arena);
            assert_eq!(s.emptied.get(), 0);
            SmallSegment::retire(seg);
        }
    }

    #[test]
    fn a_page_in_the_ring_empties_silently_and_stays_found_empty() {
        let seg = SmallSegment::create(null_mut()).unwrap();
        let mut arena = Arena::EMPTY;
        // SAFETY: the segment is ours for the test, until destroyed below.
        let s = unsafe { seg.as_ref() };
        let _page0 = s.take_page(class_of(64), &mut arena).unwrap();
        let a = s.take_page(class_of(64), &mut arena).unwrap();
        let b = s.take_page(class_of(64), &mut arena).unwrap();
        let y = pop(b);
        // SAFETY: the test owns the pages; the blocks are live.
        unsafe {
            s.note_emptied(_page0);
            let x = pop(a);
            assert_eq!(a.free(x), Freed::Ended, "first emptying ends the countdown");
            s.note_emptied(a);
            a.set_in_ring(true);
            let (x, z) = (pop(a), pop(a));
            assert_eq!(a.used(), 2);
            assert!(!s.is_empty());
            assert_eq!(a.free(x), Freed::Done);
            assert_eq!(a.free(z), Freed::Done, "in the ring: emptying again is silent");
            assert_eq!(a.used(), 0);
            assert_eq!(b.free(y), Freed::Ended);
            s.note_emptied(b);
            assert!(s.is_empty(), "a kept its bit while found in use in the ring");
            // Out of the ring, the count is plain again: the next emptying
            // is reported.
            let x = pop(a);
            a.set_in_ring(false);
            assert_eq!(a.used(), 1);
            assert_eq!(a.free(x), Freed::Ended);
            // A full page in the ring: the free that reaches it ends the
            // countdown, and its count keeps the ring's slack.
            a.set_in_ring(true);
            let blocks: std::vec::Vec<*mut u8> = (0..2000).map(|_| pop(a)).collect();
            let n = blocks.iter().take_while(|p| !p.is_null()).count();
            assert_eq!(n, a.blocks());
            a.set_full();
            let k = a.relink_after() as usize;
            for &p in &blocks[..k - 1] {
                assert_eq!(a.free(p), Freed::Done, "full: waits for {k} blocks");
            }
            assert_eq!(a.used(), n - (k - 1));
            assert_eq!(a.free(blocks[k - 1]), Freed::Ended);
            a.clear_full();
            assert_eq!(a.used(), n - k);
            for &p in &blocks[k..n] {
                assert_eq!(a.free(p), Freed::Done);
            }
            assert_eq!(a.used(), 0);
            a.set_in_ring(false);
            assert!(_page0.begin_release());
            s.release_page(_page0, &mut arena);
            assert!(a.begin_release());
            s.release_page(a, &mut arena);
            assert!(b.begin_release());
            s.release_page(b, &mut arena);
            SmallSegment::retire(seg);
        }
    }
}
