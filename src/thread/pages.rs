//! The owner's bookkeeping of its pages and segments: the class queues (whose
//! heads the size table mirrors), the list of segments with free pages, and
//! giving pages and segments back to the system. Every function here runs on
//! the owner's handle.

use super::heap::{Heap, Owner};
use crate::diag::options;
use crate::small::page::Page;
use crate::small::segment::SmallSegment;
use crate::sys::clock;
use core::ptr::{NonNull, null_mut};

/// Free pages a heap keeps without purging them (16 MiB): pages pushed out
/// of the ring of emptied pages wait here to be reused warm (the next page
/// the heap takes is a dirty one), or purged together, one `madvise` per
/// run of adjacent pages, once the first of them has waited
/// `MALLOCATOR_DECAY_MS` or past this many. They cost no peak: a heap
/// takes no fresh page while it has a dirty one. Measured (x86_64, `madvise`
/// calls): `frag` 4,254 purging each page at once, 2,164 with 16 kept
/// without decay, 336 with 256; `workset_medium` 217 → 9, `sqlite` 156 →
/// 27 (`docs/performance.md`, steps 43 and 44). A segment whose pages are
/// all free goes back whole, dirty pages with it, so a program that frees
/// everything keeps none of them.
pub(super) const DIRTY_PAGES_MAX: u32 = 256;

/// Dirty pages an abandoned heap keeps (1 MiB): no thread runs on it to
/// reuse them or to see them age, and a program whose threads come and go
/// keeps one such heap per thread it had at once.
const ABANDONED_DIRTY_PAGES_MAX: u32 = 16;

impl Owner<'_> {
    /// Takes a page out of the ring; if it is still empty, back to the system.
    pub(super) fn release_if_empty(&mut self, page: *mut Page) {
        // SAFETY: pages in the ring are live pages of this heap.
        let p = unsafe { &*page };
        p.set_in_ring(false);
        if p.used() != 0 || p.has_aside() || !p.begin_release() {
            return;
        }
        self.unlink(p);
        self.tables().remove(p);
        self.fold_counts(p);
        // SAFETY: the page is empty and unlinked; its segment is ours.
        unsafe {
            let (seg, _) = SmallSegment::page_of(page.cast());
            let s = &*seg;
            let was_full = !s.has_free_page();
            s.release_page(p, &mut self.local().arena);
            if self.local().dirty_pages == 0 {
                self.local().dirty_since = clock::now_ms();
            }
            self.local().dirty_pages += 1;
            if s.is_unused() {
                if !was_full {
                    self.unlink_segment(seg);
                }
                self.destroy_segment(seg);
            } else if was_full {
                self.link_segment(seg);
            }
        }
        self.purge_dirty_if_due();
    }

    /// Purges the dirty pages if there are too many, or if the first of them
    /// has waited a decay period. Runs where pages are released and where a
    /// class takes a new page (the clock is read only while a page is dirty;
    /// not on every slow path of `malloc`, which bumps each fresh block), so
    /// a heap that shrank gives its free pages back at its next new page a
    /// decay period later, as the large allocator does at its next call.
    pub(super) fn purge_dirty_if_due(&mut self) {
        let local = self.local();
        if local.dirty_pages == 0 {
            return;
        }
        let max = if local.abandoned { ABANDONED_DIRTY_PAGES_MAX } else { DIRTY_PAGES_MAX };
        if local.dirty_pages > max || clock::now_ms().wrapping_sub(local.dirty_since) >= options::decay_ms() {
            self.purge_dirty();
        }
    }

    /// Gives back the memory of every free page released without a purge.
    pub(super) fn purge_dirty(&mut self) {
        let mut seg = self.local().segments;
        // Dirty pages are free pages: their segments are all in the list.
        while !seg.is_null() {
            // SAFETY: the list's segments are live segments of this heap.
            let s = unsafe { &*seg };
            self.local().dirty_pages -= s.purge_dirty();
            seg = s.next.get();
        }
        debug_assert_eq!(self.local().dirty_pages, 0);
    }

    /// A page leaves the heap: its count of allocations joins the heap's.
    fn fold_counts(&mut self, page: &Page) {
        self.heap.counters.allocations[page.class()].add(page.allocations() as usize);
    }

    /// Unmaps a segment none of whose pages holds a block (unless a claim
    /// on one of them appears meanwhile: the segment stays then).
    pub(super) fn release_segment(&mut self, seg: *mut SmallSegment) {
        // SAFETY: `seg` is a live segment of this heap.
        let s = unsafe { &*seg };
        let started = s.assigned_pages().take_while(|p| p.begin_release()).count();
        if started != s.assigned_pages().count() {
            s.assigned_pages().take(started).for_each(Page::abort_release);
            return;
        }
        // SAFETY: `seg` is a live segment of this heap; its pages are empty,
        // so each is in its class queue (never full) and maybe in the ring.
        unsafe {
            let listed = (*seg).has_free_page();
            for page in (*seg).assigned_pages() {
                self.unlink(page);
                self.tables().remove(page);
                self.fold_counts(page);
                let ptr = page as *const Page as *mut Page;
                if page.in_ring() {
                    self.local().ring.iter_mut().filter(|slot| **slot == ptr).for_each(|slot| *slot = null_mut());
                }
                (*seg).free_page(page, &mut self.local().arena);
            }
            if listed {
                self.unlink_segment(seg);
            }
        }
        self.destroy_segment(seg);
    }

    pub(super) fn destroy_segment(&mut self, seg: *mut SmallSegment) {
        if seg == self.local().spare {
            self.local().spare = null_mut();
        }
        // SAFETY: `seg` is a live segment of this heap.
        self.local().dirty_pages -= unsafe { (*seg).dirty_pages() };
        // SAFETY: the caller unlinked the empty segment and nothing refers
        // to it.
        unsafe { SmallSegment::retire(NonNull::new_unchecked(seg)) };
        self.local().arena.purge();
    }

    pub(super) fn new_page(&mut self, class: usize) -> Option<*mut Page> {
        self.purge_dirty_if_due();
        if self.local().segments.is_null() {
            // The program grows its small blocks: warm free large pages it
            // is not reusing would only add to its footprint.
            crate::large::trim_to_live();
            let heap = self.heap as *const Heap;
            let seg = SmallSegment::create(heap)
                .or_else(|| crate::large::release_caches().then(|| SmallSegment::create(heap)).flatten())?
                .as_ptr();
            self.link_segment(seg);
        }
        if self.local().dirty_pages != 0 {
            self.dirty_segment_first();
        }
        let seg = self.local().segments;
        // SAFETY: segments in the list are live segments of this heap with a
        // free page.
        let s = unsafe { &*seg };
        let warm = s.dirty_pages() != 0;
        let page = s.take_page(class, &mut self.local().arena)?;
        if warm {
            self.local().dirty_pages -= 1;
        }
        self.tables().insert(page);
        if !s.has_free_page() {
            self.unlink_segment(seg);
        }
        Some(page as *const Page as *mut Page)
    }

    /// Moves a segment with a dirty page to the front of the segment list, so
    /// that the next page comes warm from it rather than fresh (a fault per
    /// OS page, and more resident memory) from another.
    fn dirty_segment_first(&mut self) {
        let head = self.local().segments;
        let mut seg = head;
        // SAFETY: the list's segments are live segments of this heap (every
        // dirty page is in one of them: a dirty page is a free page).
        unsafe {
            while !seg.is_null() && (*seg).dirty_pages() == 0 {
                seg = (*seg).next.get();
            }
        }
        if !seg.is_null() && seg != head {
            self.unlink_segment(seg);
            self.link_segment(seg);
        }
    }

    /// Puts a page at the front of its class queue: it serves next.
    pub(super) fn link(&mut self, page: *mut Page) {
        // SAFETY: `page` and the queue's pages are live pages of this heap.
        unsafe {
            let class = (*page).class();
            let head = self.local().queues[class];
            (*page).set_links(null_mut(), head);
            if head.is_null() {
                self.local().tails[class] = page;
            } else {
                (*head).set_prev(page);
            }
            self.set_head(class, page);
        }
    }

    /// Puts a page at the back of its class queue.
    pub(super) fn link_back(&mut self, page: &Page) {
        let class = page.class();
        let ptr = page as *const Page as *mut Page;
        let tail = self.local().tails[class];
        if tail.is_null() {
            return self.link(ptr);
        }
        page.set_links(tail, null_mut());
        // SAFETY: the tail is a live page of this heap.
        unsafe { (*tail).set_next(ptr) };
        self.local().tails[class] = ptr;
    }

    /// Takes a page off its class queue, or off its class's list of full
    /// pages if it is full.
    pub(super) fn unlink(&mut self, page: &Page) {
        let class = page.class();
        let ptr = page as *const Page as *mut Page;
        let (prev, next) = page.links();
        // SAFETY: the neighbours are live pages of this heap's list.
        unsafe {
            if prev.is_null() {
                if page.is_full() {
                    if self.local().full[class] == ptr {
                        self.local().full[class] = next;
                    }
                } else if self.local().queues[class] == ptr {
                    self.set_head(class, next);
                }
            } else {
                (*prev).set_next(next);
            }
            if next.is_null() {
                if !page.is_full() && self.local().tails[class] == ptr {
                    self.local().tails[class] = prev;
                }
            } else {
                (*next).set_prev(prev);
            }
        }
        page.set_links(null_mut(), null_mut());
    }

    /// Moves the head of `class`'s queue, which has no block left, to the
    /// class's list of full pages.
    pub(super) fn retire_full(&mut self, page: &Page) {
        self.unlink(page);
        page.set_full();
        let class = page.class();
        let ptr = page as *const Page as *mut Page;
        let head = self.local().full[class];
        page.set_links(null_mut(), head);
        if !head.is_null() {
            // SAFETY: the list's pages are live pages of this heap.
            unsafe { (*head).set_prev(ptr) };
        }
        self.local().full[class] = ptr;
    }

    /// A full page goes back to its queue (at the back: it collects more
    /// frees while the pages ahead serve).
    pub(super) fn unfull(&mut self, page: &Page) {
        self.unlink(page);
        page.clear_full();
        self.link_back(page);
    }

    /// Out of memory for a fresh page: the full pages of `class` that got a
    /// block back (fewer than they wait for, see `Page::relink_after`) serve
    /// again; true if there was one.
    pub(super) fn rescue_full(&mut self, class: usize) -> bool {
        let mut page = self.local().full[class];
        let mut any = false;
        while !page.is_null() {
            // SAFETY: the list's pages are live pages of this heap.
            let p = unsafe { &*page };
            page = p.links().1;
            if p.blocks_back() != 0 {
                self.unfull(p);
                any = true;
            }
        }
        any
    }

    /// The page that serves `class` from now on (null: none), in the queue
    /// and in the size table.
    fn set_head(&mut self, class: usize, page: *mut Page) {
        self.local().queues[class] = page;
        self.tables().set_current(class, page);
    }

    pub(super) fn link_segment(&mut self, seg: *mut SmallSegment) {
        // SAFETY: `seg` and the list's segments are live segments of this heap.
        unsafe {
            let head = self.local().segments;
            (*seg).prev.set(null_mut());
            (*seg).next.set(head);
            if !head.is_null() {
                (*head).prev.set(seg);
            }
        }
        self.local().segments = seg;
    }

    pub(super) fn unlink_segment(&mut self, seg: *mut SmallSegment) {
        // SAFETY: `seg` is in this heap's segment list.
        unsafe {
            let (prev, next) = ((*seg).prev.get(), (*seg).next.get());
            if prev.is_null() {
                self.local().segments = next;
            } else {
                (*prev).next.set(next);
            }
            if !next.is_null() {
                (*next).prev.set(prev);
            }
        }
    }
}
