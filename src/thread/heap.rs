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

use crate::diag::counters::{ClassCounters, Counter};
use crate::diag::options;
use crate::segment;
use crate::small::block::Block;
use crate::small::page::Page;
use crate::small::segment::SmallSegment;
use crate::small::size_class::NUM_CLASSES;
use core::cell::Cell;
use core::ptr::{NonNull, null_mut};
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

/// How many emptied pages a heap keeps at most before giving the oldest back
/// to the system (4 MiB of 64 KiB pages; `MALLOCATOR_RETAIN_PAGES` lowers it). Measured on a batch workload (4 threads,
/// rounds of 1000 blocks of 1..3000 bytes allocated then all freed: about 50
/// pages per round): 8 retained pages made 44,000 `madvise` calls and took
/// 0.53 s, 32 took 25,000 calls, 64 took 257 calls and 0.11 s. After a program
/// frees everything, a live thread keeps at most this much resident.
const RETAINED_EMPTY_PAGES: usize = options::MAX_RETAIN_PAGES;

/// Only the owning thread (see `taken`) touches the `Cell` fields; other
/// threads use the atomics. No `&mut Heap` is ever made, since another thread
/// may hold `&Heap` at any time.
pub struct Heap {
    /// Whether a thread owns the heap (or claims it while it is abandoned).
    taken: AtomicBool,
    /// Blocks freed by other threads, linked through their first word.
    remote: AtomicPtr<Block>,
    /// Per class, the pages that may have free blocks; the head serves.
    queues: [Cell<*mut Page>; NUM_CLASSES],
    /// The last page of each queue.
    tails: [Cell<*mut Page>; NUM_CLASSES],
    /// Segments with at least one free page.
    segments: Cell<*mut SmallSegment>,
    /// Recently emptied pages, oldest at `ring_next`.
    ring: [Cell<*mut Page>; RETAINED_EMPTY_PAGES],
    ring_next: Cell<usize>,
    /// One segment kept mapped after all its pages emptied; any other segment
    /// that empties is unmapped at once. A program that allocates and frees
    /// in rounds keeps reusing the spare; a program that frees everything
    /// keeps one segment of address space.
    spare: Cell<*mut SmallSegment>,
    /// Link in the pool of heaps (see [`crate::thread`]), under the pool lock.
    pub pool_next: Cell<*mut Heap>,
    /// Link in the list of every heap ever made (for statistics), set once
    /// before the heap is published.
    pub all_next: Cell<*mut Heap>,
    pub counters: [ClassCounters; NUM_CLASSES],
    /// Blocks other threads freed into this heap.
    pub remote_frees: Counter,
}

impl Heap {
    /// Claims the heap if nobody owns it.
    pub fn try_take(&self) -> bool {
        self.taken.compare_exchange(false, true, Ordering::SeqCst, Ordering::Relaxed).is_ok()
    }

    /// Allocates a block of `class` for a request of `size` bytes; null with
    /// `errno = ENOMEM` when no memory is left.
    #[inline(always)]
    pub fn alloc(&self, class: usize, size: usize) -> *mut u8 {
        // Lets the compiler drop the bounds checks below (`class_of` keeps
        // this); a violated invariant still panics, in the cold path.
        assert!(class < NUM_CLASSES);
        let page = self.queues[class].get();
        if !page.is_null() {
            // SAFETY: pages in the queues are live pages of this heap.
            let p = unsafe { (*page).pop() };
            if !p.is_null() {
                self.count(class, size);
                return p;
            }
        }
        self.alloc_slow(class, size)
    }

    #[inline(always)]
    fn count(&self, class: usize, size: usize) {
        let counters = &self.counters[class];
        counters.allocations.add(1);
        counters.requested.add(size);
    }

    /// The head page of the class had no block: take remote frees back, try
    /// the class's other pages, then a fresh page. Out of line, so the fast
    /// path above needs no stack frame.
    #[inline(never)]
    fn alloc_slow(&self, class: usize, size: usize) -> *mut u8 {
        let p = self.alloc_from_other_pages(class);
        if p.is_null() {
            crate::sys::errno::set_errno(libc::ENOMEM);
        } else {
            self.count(class, size);
        }
        p
    }

    fn alloc_from_other_pages(&self, class: usize) -> *mut u8 {
        self.drain_remote();
        loop {
            let page = self.queues[class].get();
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
            unsafe { (*page).full.set(true) };
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
    pub unsafe fn free_local(&self, page: *mut Page, block: *mut Block) {
        // SAFETY: per the contract. Page classes are below NUM_CLASSES.
        unsafe { self.counters.get_unchecked((*page).class.get() as usize).frees.add(1) };
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
        // `try_take` makes us the heap's only user until `abandon` lets go.
        if self.try_take() {
            self.abandon();
        }
    }

    /// Gives up ownership: returns remote frees and every empty page, keeps
    /// the live blocks for the next owner.
    pub fn abandon(&self) {
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
    pub fn collect(&self) {
        self.drain_remote();
        for slot in 0..RETAINED_EMPTY_PAGES {
            let page = self.ring[slot].replace(null_mut());
            if !page.is_null() {
                self.unretain(page);
            }
        }
        let spare = self.spare.get();
        // SAFETY: the spare is a live segment of this heap.
        if !spare.is_null() && unsafe { (*spare).is_empty() } {
            self.release_segment(spare);
        }
    }

    /// Frees the blocks other threads returned.
    fn drain_remote(&self) {
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
    fn page_changed(&self, page: *mut Page) {
        // SAFETY: the page is a live page of this heap.
        let p = unsafe { &*page };
        if p.full.get() {
            // At the back: the page collects more frees while the pages
            // ahead serve. At the front, it would hand out its one free block
            // and be full again at once: on `workset_medium` (blocks of
            // 256..4096 bytes replaced at random) 38% of allocations took
            // the slow path that way.
            p.full.set(false);
            self.link_back(page);
        }
        if p.used.get() != 0 {
            return;
        }
        // SAFETY: the page's segment is a live segment of this heap.
        let seg = unsafe { SmallSegment::page_of(page.cast()).0 };
        // SAFETY: as above.
        if seg != self.spare.get() && unsafe { (*seg).is_empty() } {
            let spare = self.spare.get();
            // SAFETY: the spare, if any, is a live segment of this heap.
            if spare.is_null() || !unsafe { (*spare).is_empty() } {
                self.spare.set(seg);
            } else {
                self.release_segment(seg);
                return;
            }
        }
        let capacity = options::retain_pages();
        if capacity == 0 {
            self.unretain(page);
        } else if !p.in_ring.get() {
            p.in_ring.set(true);
            let next = self.ring_next.get();
            let oldest = self.ring[next].replace(page);
            self.ring_next.set((next + 1) % capacity);
            if !oldest.is_null() {
                self.unretain(oldest);
            }
        }
    }

    /// Takes a page out of the ring; if it is still empty, back to the system.
    fn unretain(&self, page: *mut Page) {
        // SAFETY: pages in the ring are live pages of this heap.
        let p = unsafe { &*page };
        p.in_ring.set(false);
        if p.used.get() != 0 {
            return;
        }
        self.unlink(page);
        // SAFETY: the page is empty and unlinked; its segment is ours.
        unsafe {
            let (seg, _) = SmallSegment::page_of(page.cast());
            let s = &*seg;
            let was_full = !s.has_free_page();
            s.release_page(p);
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
    fn release_segment(&self, seg: *mut SmallSegment) {
        // SAFETY: `seg` is a live segment of this heap; its pages are empty,
        // so each is in its class queue (never full) and maybe in the ring.
        unsafe {
            for page in (*seg).assigned_pages() {
                let page = page as *const Page as *mut Page;
                self.unlink(page);
                if (*page).in_ring.get() {
                    self.ring.iter().filter(|slot| slot.get() == page).for_each(|slot| slot.set(null_mut()));
                }
            }
            if (*seg).has_free_page() {
                self.unlink_segment(seg);
            }
        }
        self.destroy_segment(seg);
    }

    fn destroy_segment(&self, seg: *mut SmallSegment) {
        if seg == self.spare.get() {
            self.spare.set(null_mut());
        }
        // SAFETY: the caller unlinked the segment and nothing refers to it.
        unsafe { segment::destroy(NonNull::new_unchecked(seg).cast()) };
    }

    fn new_page(&self, class: usize) -> Option<*mut Page> {
        if self.segments.get().is_null() {
            // The program grows its small blocks: warm free large pages it
            // is not reusing would only add to its footprint.
            crate::large::trim_to_live();
            let seg = SmallSegment::create(self)
                .or_else(|| crate::large::release_caches().then(|| SmallSegment::create(self)).flatten())?
                .as_ptr();
            self.link_segment(seg);
        }
        let seg = self.segments.get();
        // SAFETY: segments in the list are live segments of this heap with a
        // free page.
        let s = unsafe { &*seg };
        let page = s.take_page(class) as *const Page as *mut Page;
        if !s.has_free_page() {
            self.unlink_segment(seg);
        }
        Some(page)
    }

    /// Puts a page at the front of its class queue: it serves next.
    fn link(&self, page: *mut Page) {
        // SAFETY: `page` and the queue's pages are live pages of this heap.
        unsafe {
            let class = (*page).class.get() as usize;
            let head = self.queues[class].get();
            (*page).prev.set(null_mut());
            (*page).next.set(head);
            if head.is_null() {
                self.tails[class].set(page);
            } else {
                (*head).prev.set(page);
            }
            self.queues[class].set(page);
        }
    }

    /// Puts a page at the back of its class queue.
    fn link_back(&self, page: *mut Page) {
        // SAFETY: as in `link`.
        unsafe {
            let class = (*page).class.get() as usize;
            let tail = self.tails[class].get();
            if tail.is_null() {
                return self.link(page);
            }
            (*page).prev.set(tail);
            (*page).next.set(null_mut());
            (*tail).next.set(page);
            self.tails[class].set(page);
        }
    }

    fn unlink(&self, page: *mut Page) {
        // SAFETY: `page` is linked in its class queue of this heap.
        unsafe {
            let class = (*page).class.get() as usize;
            let (prev, next) = ((*page).prev.get(), (*page).next.get());
            if prev.is_null() {
                self.queues[class].set(next);
            } else {
                (*prev).next.set(next);
            }
            if next.is_null() {
                self.tails[class].set(prev);
            } else {
                (*next).prev.set(prev);
            }
            (*page).prev.set(null_mut());
            (*page).next.set(null_mut());
        }
    }

    fn link_segment(&self, seg: *mut SmallSegment) {
        // SAFETY: `seg` and the list's segments are live segments of this heap.
        unsafe {
            let head = self.segments.get();
            (*seg).prev.set(null_mut());
            (*seg).next.set(head);
            if !head.is_null() {
                (*head).prev.set(seg);
            }
        }
        self.segments.set(seg);
    }

    fn unlink_segment(&self, seg: *mut SmallSegment) {
        // SAFETY: `seg` is in this heap's segment list.
        unsafe {
            let (prev, next) = ((*seg).prev.get(), (*seg).next.get());
            if prev.is_null() {
                self.segments.set(next);
            } else {
                (*prev).next.set(next);
            }
            if !next.is_null() {
                (*next).prev.set(prev);
            }
        }
    }
}
