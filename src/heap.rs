//! Thread heaps. Each thread allocates from its own heap: per size class a
//! queue of pages with free blocks, the first of which serves the fast path.
//! Nothing here takes a lock; the only shared field is the atomic list on
//! which other threads return blocks they free (`remote`).
//!
//! A heap outlives its thread: at thread exit it is *abandoned* (its empty
//! pages go back to the system, its live blocks stay) and the next new thread
//! adopts it whole. While abandoned, a thread that frees one of its blocks
//! claims it for a moment and does the owner's work, so its memory is
//! reclaimed even if no thread is ever created again.

use crate::options;
use crate::page::{Block, Page, SmallSegment};
use crate::segment;
use crate::size_class::NUM_CLASSES;
use crate::stats::{ClassCounters, Counter};
use core::ptr::{NonNull, null_mut};
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

/// How many emptied pages a heap keeps at most before giving the oldest back
/// to the system (4 MiB of 64 KiB pages; `MALLOCATOR_RETAIN_PAGES` lowers it). Measured on a batch workload (4 threads,
/// rounds of 1000 blocks of 1..3000 bytes allocated then all freed: about 50
/// pages per round): 8 retained pages made 44,000 `madvise` calls and took
/// 0.53 s, 32 took 25,000 calls, 64 took 257 calls and 0.11 s. After a program
/// frees everything, a live thread keeps at most this much resident.
const RETAINED_EMPTY_PAGES: usize = options::MAX_RETAIN_PAGES;

pub struct Heap {
    /// Whether a thread owns the heap (or claims it while it is abandoned).
    taken: AtomicBool,
    /// Blocks freed by other threads, linked through their first word.
    remote: AtomicPtr<Block>,
    /// Per class, the pages that may have free blocks; the head serves.
    queues: [*mut Page; NUM_CLASSES],
    /// Segments with at least one free page.
    segments: *mut SmallSegment,
    /// Recently emptied pages, oldest at `ring_next`.
    ring: [*mut Page; RETAINED_EMPTY_PAGES],
    ring_next: usize,
    /// One segment kept mapped after all its pages emptied; any other segment
    /// that empties is unmapped at once. A program that allocates and frees
    /// in rounds keeps reusing the spare; a program that frees everything
    /// keeps one segment of address space.
    spare: *mut SmallSegment,
    /// Link in the pool of heaps (see [`crate::thread`]).
    pub pool_next: *mut Heap,
    /// Link in the list of every heap ever made (for statistics).
    pub all_next: *mut Heap,
    pub counters: [ClassCounters; NUM_CLASSES],
    /// Blocks other threads freed into this heap.
    pub remote_frees: Counter,
}

impl Heap {
    /// Claims the heap if nobody owns it.
    pub fn try_take(&self) -> bool {
        self.taken.compare_exchange(false, true, Ordering::SeqCst, Ordering::Relaxed).is_ok()
    }

    /// Allocates a block of `class` for a request of `size` bytes.
    #[inline(always)]
    pub fn alloc(&mut self, class: usize, size: usize) -> *mut u8 {
        // Lets the compiler drop the bounds checks below (`class_of` keeps
        // this); a violated invariant still panics, in the cold path.
        assert!(class < NUM_CLASSES);
        let page = self.queues[class];
        let mut p = core::ptr::null_mut();
        if !page.is_null() {
            // SAFETY: pages in the queues are live pages of this heap.
            p = unsafe { (*page).pop() };
        }
        if p.is_null() {
            p = self.alloc_slow(class);
            if p.is_null() {
                return p;
            }
        }
        let counters = &self.counters[class];
        counters.allocations.add(1);
        counters.requested.add(size as u64);
        p
    }

    #[inline(never)]
    fn alloc_slow(&mut self, class: usize) -> *mut u8 {
        self.drain_remote();
        loop {
            let page = self.queues[class];
            if page.is_null() {
                break;
            }
            // SAFETY: as in `alloc`.
            let p = unsafe { (*page).pop() };
            if !p.is_null() {
                return p;
            }
            // Off the queue until one of its blocks comes back.
            self.unlink(page);
            // SAFETY: as above.
            unsafe { (*page).full = true };
        }
        let Some(page) = self.new_page(class) else {
            return null_mut();
        };
        self.link(page);
        // SAFETY: a fresh page of a class has room for at least one block.
        unsafe { (*page).pop() }
    }

    /// Frees a block of a page of this heap.
    ///
    /// # Safety
    /// The caller owns the heap; `block` passed [`Page::check`] on `page`.
    #[inline(always)]
    pub unsafe fn free_local(&mut self, page: *mut Page, block: *mut Block) {
        // SAFETY: per the contract. Page classes are below NUM_CLASSES.
        unsafe { self.counters.get_unchecked((*page).class as usize).frees.add(1) };
        // SAFETY: per the contract.
        if unsafe { (*page).push(block) } {
            self.page_changed(page);
        }
    }

    /// Frees a block of this heap from another thread.
    ///
    /// # Safety
    /// `block` passed [`Page::check`] on a page of this heap.
    #[inline(never)]
    pub unsafe fn free_remote(&self, block: *mut Block) {
        let mut head = self.remote.load(Ordering::Relaxed);
        loop {
            // SAFETY: the block is ours to write until it is published.
            unsafe { Block::set_free(block, head) };
            match self.remote.compare_exchange_weak(head, block, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => head = now,
            }
        }
        // Pairs with `abandon`: either its final drain sees our block, or we
        // see that the heap has no owner and do the drain ourselves.
        if !self.taken.load(Ordering::SeqCst) {
            self.reclaim_abandoned();
        }
    }

    /// Does an absent owner's work: takes back remote frees (and with them
    /// empty pages and segments).
    fn reclaim_abandoned(&self) {
        if self.try_take() {
            let heap = self as *const Heap as *mut Heap;
            // SAFETY: `try_take` made us the only user of the heap.
            unsafe { (*heap).abandon() };
        }
    }

    /// Gives up ownership: returns remote frees and every empty page, keeps
    /// the live blocks for the next owner.
    pub fn abandon(&mut self) {
        loop {
            self.collect();
            self.taken.store(false, Ordering::SeqCst);
            // A block freed remotely after the drain above, whose freer saw
            // the heap still owned, must not wait for the next owner.
            if self.remote.load(Ordering::SeqCst).is_null() || !self.try_take() {
                return;
            }
        }
    }

    /// Takes back remote frees and gives every empty page back to the system.
    pub fn collect(&mut self) {
        self.drain_remote();
        for slot in 0..RETAINED_EMPTY_PAGES {
            let page = core::mem::replace(&mut self.ring[slot], null_mut());
            if !page.is_null() {
                self.unretain(page);
            }
        }
        let spare = self.spare;
        // SAFETY: the spare is a live segment of this heap.
        if !spare.is_null() && unsafe { (*spare).is_empty() } {
            self.release_segment(spare);
        }
    }

    /// Frees the blocks other threads returned.
    fn drain_remote(&mut self) {
        if self.remote.load(Ordering::Relaxed).is_null() {
            return;
        }
        let mut block = self.remote.swap(null_mut(), Ordering::Acquire);
        while !block.is_null() {
            self.remote_frees.add(1);
            // SAFETY: blocks on the remote list are validated blocks of this
            // heap's pages, linked by `free_remote`.
            unsafe {
                let next = Block::next(block);
                let (_, page) = SmallSegment::page_of(block.cast());
                self.free_local(page, block);
                block = next;
            }
        }
    }

    /// A page became empty, or got a free block while full.
    #[cold]
    #[inline(never)]
    fn page_changed(&mut self, page: *mut Page) {
        // SAFETY: the page is a live page of this heap.
        let p = unsafe { &mut *page };
        if p.full {
            p.full = false;
            self.link(page);
        }
        if p.used != 0 {
            return;
        }
        // SAFETY: the page's segment is a live segment of this heap.
        let seg = unsafe { SmallSegment::page_of(page.cast()).0 };
        // SAFETY: as above.
        if seg != self.spare && unsafe { (*seg).is_empty() } {
            let spare = self.spare;
            // SAFETY: the spare, if any, is a live segment of this heap.
            if spare.is_null() || !unsafe { (*spare).is_empty() } {
                self.spare = seg;
            } else {
                self.release_segment(seg);
                return;
            }
        }
        let capacity = options::retain_pages();
        if capacity == 0 {
            self.unretain(page);
        } else if !p.in_ring {
            p.in_ring = true;
            let oldest = core::mem::replace(&mut self.ring[self.ring_next], page);
            self.ring_next = (self.ring_next + 1) % capacity;
            if !oldest.is_null() {
                self.unretain(oldest);
            }
        }
    }

    /// Takes a page out of the ring; if it is still empty, back to the system.
    fn unretain(&mut self, page: *mut Page) {
        // SAFETY: pages in the ring are live pages of this heap.
        let p = unsafe { &mut *page };
        p.in_ring = false;
        if p.used != 0 {
            return;
        }
        self.unlink(page);
        // SAFETY: the page is empty and unlinked; its segment is ours.
        unsafe {
            let (seg, _) = SmallSegment::page_of(page.cast());
            let s = &mut *seg;
            let was_full = !s.has_free_page();
            s.release_page(page);
            if s.is_unused() {
                if !was_full {
                    self.unlink_segment(seg);
                }
                self.destroy_segment(seg);
            } else if was_full {
                self.link_segment(seg);
            }
        }
    }

    /// Unmaps a segment none of whose pages holds a block.
    fn release_segment(&mut self, seg: *mut SmallSegment) {
        // SAFETY: `seg` is a live segment of this heap; its pages are empty,
        // so each is in its class queue (never full) and maybe in the ring.
        unsafe {
            for page in (*seg).assigned_pages() {
                self.unlink(page);
                if (*page).in_ring {
                    for slot in self.ring.iter_mut().filter(|slot| **slot == page) {
                        *slot = null_mut();
                    }
                }
            }
            if (*seg).has_free_page() {
                self.unlink_segment(seg);
            }
        }
        self.destroy_segment(seg);
    }

    fn destroy_segment(&mut self, seg: *mut SmallSegment) {
        if seg == self.spare {
            self.spare = null_mut();
        }
        // SAFETY: the caller unlinked the segment and nothing refers to it.
        unsafe { segment::destroy(NonNull::new_unchecked(seg).cast()) };
    }

    fn new_page(&mut self, class: usize) -> Option<*mut Page> {
        if self.segments.is_null() {
            let seg = SmallSegment::create(self)
                .or_else(|| crate::large::release_caches().then(|| SmallSegment::create(self)).flatten())?
                .as_ptr();
            self.link_segment(seg);
        }
        let seg = self.segments;
        // SAFETY: segments in the list are live segments of this heap with a
        // free page.
        let s = unsafe { &mut *seg };
        let page = s.take_page(class);
        if !s.has_free_page() {
            self.unlink_segment(seg);
        }
        Some(page)
    }

    fn link(&mut self, page: *mut Page) {
        // SAFETY: `page` and the queue's pages are live pages of this heap.
        unsafe {
            let class = (*page).class as usize;
            let head = self.queues[class];
            (*page).prev = null_mut();
            (*page).next = head;
            if !head.is_null() {
                (*head).prev = page;
            }
            self.queues[class] = page;
        }
    }

    fn unlink(&mut self, page: *mut Page) {
        // SAFETY: `page` is linked in its class queue of this heap.
        unsafe {
            let (prev, next) = ((*page).prev, (*page).next);
            if prev.is_null() {
                self.queues[(*page).class as usize] = next;
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
            (*page).prev = null_mut();
            (*page).next = null_mut();
        }
    }

    fn link_segment(&mut self, seg: *mut SmallSegment) {
        // SAFETY: `seg` and the list's segments are live segments of this heap.
        unsafe {
            (*seg).prev = null_mut();
            (*seg).next = self.segments;
            if !self.segments.is_null() {
                (*self.segments).prev = seg;
            }
        }
        self.segments = seg;
    }

    fn unlink_segment(&mut self, seg: *mut SmallSegment) {
        // SAFETY: `seg` is in this heap's segment list.
        unsafe {
            let (prev, next) = ((*seg).prev, (*seg).next);
            if prev.is_null() {
                self.segments = next;
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
        }
    }
}
