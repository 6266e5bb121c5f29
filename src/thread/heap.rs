//! Thread heaps. Each thread allocates from its own heap: per size class a
//! queue of pages with free blocks, the first of which serves the fast path.
//!
//! The types say who touches what. [`Heap`] is what every thread may see: the
//! [`Inbox`] other threads post freed blocks to (a line of its own), the
//! statistics counters (written by the owner, read by anyone), and behind an
//! `UnsafeCell` the owner's [`Local`] state, reached only through an
//! [`Owner`], which the thread holding the heap's `taken` flag makes.
//!
//! A heap outlives its thread: at thread exit it is *abandoned* (its empty
//! pages go back to the system, its live blocks stay) and the next new thread
//! adopts it whole. While abandoned, a thread that posts blocks to it claims
//! it for a moment and takes them back, so its memory is reclaimed even if
//! no thread is ever created again; that costs O(1) a block (emptied pages
//! go back at once, nothing is scanned).

use super::remote::{Inbox, Outbox};
use crate::diag::counters::{Countdown, Counter};
use crate::diag::error::{self, BadBlock, Misuse, Op};
use crate::diag::options;
use crate::segment::{self, Kind};
use crate::small::block::{Block, Link};
use crate::small::page::{Page, Popped};
use crate::small::segment::SmallSegment;
use crate::small::size_class::NUM_CLASSES;
use core::cell::{Cell, UnsafeCell};
use core::ptr::null_mut;

/// How many emptied pages a heap keeps at most before giving the oldest back
/// to the system (4 MiB of 64 KiB pages; `MALLOCATOR_RETAIN_PAGES` lowers it;
/// the measurement behind it: `docs/performance.md`, step 5).
const RETAINED_EMPTY_PAGES: usize = options::MAX_RETAIN_PAGES;

#[repr(C)]
pub struct Heap {
    /// Written by other threads.
    inbox: Inbox,
    /// Written by the owner, read by statistics from any thread.
    pub counters: Counters,
    /// Link in the pool of heaps (see `pool`), under the pool lock.
    pub pool_next: Cell<*mut Heap>,
    /// Link in the list of every heap ever made (for statistics), set once
    /// before the heap is published.
    pub all_next: Cell<*mut Heap>,
    local: UnsafeCell<Local>,
}

/// A heap's statistics, per class (one array per event, so that counting is
/// one instruction: the class scales by the counter's size).
pub struct Counters {
    pub allocations: [Counter; NUM_CLASSES],
    pub frees: [Counter; NUM_CLASSES],
    /// Bytes until the next heap-profile sample; the requested bytes so far
    /// are `sample_at` minus this (see [`Counters::requested`]).
    pub countdown: Countdown,
    /// The requested bytes at which `countdown` reaches zero.
    pub sample_at: Counter,
    /// Blocks other threads freed into this heap (counted at drain).
    pub remote_frees: Counter,
}

impl Counters {
    /// Sum of the sizes asked for from this heap (small and large). Read
    /// while the owner runs it may be off by one request.
    pub fn requested(&self) -> u64 {
        self.sample_at.get().wrapping_sub(self.countdown.get() as u64)
    }
}

/// How a posted block with a bad link is reported.
const OVERWRITTEN_POSTED: &[u8] = b"link of a block freed by another thread overwritten";
/// How long the owner's free of a block whose pending bit is set waits for
/// a claim that backs out to clear it: such a claim holds the bit for a few
/// instructions (an atomic `or`, a load, an atomic `and`), some 50 ns; 1,024
/// spin-loop hints are 10-140 us (a `pause` is 10 to 140 cycles, by
/// microarchitecture). Paid only by a double free.
const CLAIM_WINDOW_SPINS: usize = 1024;
/// How a block set aside with a bad link is reported.
const OVERWRITTEN_ASIDE: &[u8] = b"link of a block set aside (freed by two threads at once) overwritten";

/// What only the owner touches. All zero is a valid empty heap.
pub struct Local {
    /// Per class, the pages that may have free blocks; the head serves.
    pub(super) queues: [*mut Page; NUM_CLASSES],
    /// The last page of each queue.
    pub(super) tails: [*mut Page; NUM_CLASSES],
    /// Segments with at least one free page.
    pub(super) segments: *mut SmallSegment,
    /// Recently emptied pages, oldest at `ring_next`.
    pub(super) ring: [*mut Page; RETAINED_EMPTY_PAGES],
    pub(super) ring_next: usize,
    /// One segment kept mapped after all its pages emptied; any other segment
    /// that empties is unmapped at once. A program that allocates and frees
    /// in rounds keeps reusing the spare; a program that frees everything
    /// keeps one segment of address space.
    pub(super) spare: *mut SmallSegment,
    /// No thread runs on the heap: emptied pages and segments go back at once.
    pub(super) abandoned: bool,
    /// Blocks this thread freed into other heaps, not yet posted.
    pub(super) outbox: Outbox,
    /// Blocks of this heap set aside while another thread's free of them is
    /// pending (see [`Owner::set_aside`]), linked through their free-list
    /// word under their page's key; almost always empty.
    aside: *mut Block,
    /// The generator of sampling intervals (0: not seeded yet).
    rng: u64,
    /// A sample is being taken on this thread: allocations made meanwhile
    /// (the stack unwinder's) are not sampled.
    sampling: bool,
}

/// The owner's handle: made only by the thread that holds the heap, one at a
/// time. It is the heap's pointer alone (its `Local` is found from it), so
/// that passing it to a cold path costs one register, not two.
pub struct Owner<'h> {
    pub(super) heap: &'h Heap,
}

impl Heap {
    /// Claims the heap if nobody owns it.
    pub fn try_take(&self) -> bool {
        self.inbox.try_take()
    }

    /// Whether a thread runs on the heap (or claims it for a moment).
    pub fn is_owned(&self) -> bool {
        self.inbox.is_taken()
    }

    /// The owner's handle.
    ///
    /// # Safety
    /// The calling thread holds the heap (its `try_take` succeeded and it has
    /// not let go) and has no other `Owner` of it alive.
    #[inline(always)]
    pub unsafe fn owner(&self) -> Owner<'_> {
        Owner { heap: self }
    }

    /// Counts `n` requested bytes down the sampling countdown; true when it
    /// passed zero. On every allocation: on x86 one `sub` to memory and a
    /// `js`, which LLVM does not make of a relaxed load, subtraction and store
    /// (it keeps the result in a register to test it: `mov; sub; mov; test`,
    /// measured 140 against 138 instructions per malloc/free pair on x86_64,
    /// docs/performance.md step 25).
    #[inline(always)]
    fn count_down(&self, n: usize) -> bool {
        #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
        {
            // SAFETY: `heap + at` is this heap's countdown (`offset_of!`), an
            // aligned word (`Countdown` is a transparent `AtomicIsize`). Only
            // the owner, the calling thread, writes it, so the non-locked
            // read-modify-write loses nothing; an aligned word access is
            // single-copy atomic on x86, so the relaxed loads of statistics
            // readers see the old value or the new, as with an atomic store.
            unsafe {
                core::arch::asm!(
                    "sub [{heap} + {at}], {n}",
                    "js {passed}",
                    heap = in(reg) self,
                    at = const core::mem::offset_of!(Heap, counters.countdown),
                    n = in(reg) n,
                    passed = label { return true; },
                    options(nostack),
                );
            }
            false
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "x86")))]
        self.counters.countdown.take(n)
    }

    /// Publishes a chain of blocks freed by another thread, and if the heap
    /// has no owner, takes them back on its behalf.
    ///
    /// # Safety
    /// As for [`Inbox::post`].
    pub unsafe fn post_chain(&self, first: *mut Block, last: *mut Block) {
        // SAFETY: per the contract.
        unsafe { self.inbox.post(first, last) };
        // Pairs with `abandon`: either its final drain sees our chain, or we
        // see that the heap has no owner and do the drain ourselves.
        if !self.inbox.is_taken() && self.try_take() {
            // SAFETY: we hold the heap now.
            unsafe { self.abandon() };
        }
    }

    /// Gives up ownership: flushes this thread's batches, takes back what
    /// was posted, returns every empty page, keeps the live blocks for the
    /// next owner.
    ///
    /// # Safety
    /// The calling thread holds the heap and has no `Owner` of it alive.
    pub unsafe fn abandon(&self) {
        loop {
            // SAFETY: per the contract (and after `try_take` below).
            unsafe { self.owner() }.give_back();
            self.inbox.release();
            // A chain posted after the drain above, whose poster saw the heap
            // still owned, must not wait for the next owner.
            if self.inbox.is_empty() || !self.try_take() {
                return;
            }
        }
    }

    /// Runs `f` (which takes a sample) with sampling off on this heap; it
    /// may nest (a `realloc` inside a sample's stack walk), and restores
    /// what it found.
    ///
    /// # Safety
    /// The calling thread holds the heap and has no `Owner` of it alive.
    pub unsafe fn sampling<R>(&self, f: impl FnOnce() -> R) -> R {
        // SAFETY: per the contract; each `Owner` lives for one statement.
        let was = core::mem::replace(&mut unsafe { self.owner() }.local().sampling, true);
        let r = f();
        // SAFETY: as above.
        unsafe { self.owner() }.local().sampling = was;
        r
    }
}

impl Owner<'_> {
    /// What only the owner touches.
    #[inline(always)]
    pub(super) fn local(&mut self) -> &mut Local {
        // SAFETY: this `Owner` exists only on the thread holding the heap,
        // and is its only one (`Heap::owner`'s contract); `&mut self` makes
        // the borrow exclusive.
        unsafe { &mut *self.heap.local.get() }
    }

    /// Allocates a block of `class` for a request of `size` bytes; null with
    /// `errno = ENOMEM` when no memory is left.
    #[inline(always)]
    pub fn alloc(self, class: usize, size: usize) -> *mut u8 {
        // Lets the compiler drop the bounds checks below (`class_of` keeps
        // this); a violated invariant still panics, in the cold path.
        assert!(class < NUM_CLASSES);
        // Counted first, so that neither value stays in a register across
        // the pop (that cost the fast path a stack frame); a failed
        // allocation takes it back.
        self.heap.counters.allocations[class].add(1);
        if self.heap.count_down(size) {
            return self.sampled(class, size);
        }
        self.pop_or_slow(class)
    }

    #[inline(always)]
    fn pop_or_slow(mut self, class: usize) -> *mut u8 {
        let page = self.local().queues[class];
        if !page.is_null() {
            // SAFETY: pages in the queues are live pages of this heap.
            match unsafe { (*page).try_pop() } {
                Popped::Block(p) => return p,
                // SAFETY: as above.
                Popped::Refused => return unsafe { Owner::pop_again(page) },
                Popped::Empty => {}
            }
        }
        self.alloc_slow(class)
    }

    /// The head page of a class refused its first free block (another
    /// thread's free of it is pending): sets it aside and tries again. The
    /// heap and the class are found again from the page, not kept in
    /// registers across the fast path: that cost `malloc` two callee-saved
    /// registers, 137 -> 143 instructions a pair (docs/performance.md,
    /// step 29).
    ///
    /// # Safety
    /// The calling thread owns `page`'s heap and has no `Owner` of it alive;
    /// the page's `try_pop` refused.
    #[cold]
    #[inline(never)]
    unsafe fn pop_again(page: *mut Page) -> *mut u8 {
        // SAFETY: a page descriptor lies in its segment's header, and its
        // segment belongs to the caller's heap (per the contract).
        unsafe {
            let (seg, _) = SmallSegment::page_of(page.cast());
            let mut owner = (*(*seg).heap).owner();
            owner.set_aside(&*page, (*page).refuse());
            owner.pop_or_slow((*page).class())
        }
    }

    /// The countdown passed zero: start the next interval and, if profiling,
    /// serve the request as a sample (out of line: the fast path above
    /// needs no stack frame).
    #[cold]
    #[inline(never)]
    fn sampled(mut self, class: usize, size: usize) -> *mut u8 {
        if self.rearm() {
            let heap = self.heap;
            heap.counters.allocations[class].sub(1);
            // SAFETY: this thread holds the heap; `self`, its only `Owner`,
            // is not used again.
            let p = unsafe { heap.sampling(|| crate::profiler::alloc_sampled(size)) };
            if !p.is_null() {
                return p;
            }
            heap.counters.allocations[class].add(1);
            // SAFETY: as above.
            self = unsafe { heap.owner() };
        }
        self.pop_or_slow(class)
    }

    /// Counts `size` bytes of a request the thread heap does not serve (a
    /// large block); true if it is to be sampled.
    pub fn take_sample(mut self, size: usize) -> bool {
        self.heap.count_down(size) && self.rearm()
    }

    /// Starts the next sampling interval after the countdown passed zero;
    /// true if the request that passed it is to be sampled (profiling is on
    /// and no sample is being taken).
    fn rearm(&mut self) -> bool {
        let c = &self.heap.counters;
        let armed = c.sample_at.get() != 0;
        // The bytes of the request past zero: on a heap's first request
        // (the countdown starts at zero), all of them.
        let past = c.countdown.get().wrapping_neg() as usize;
        let interval = crate::profiler::next_interval(&mut self.local().rng);
        // The bytes past zero count as requested: `sample_at - countdown`
        // stays the requested bytes.
        c.sample_at.add(interval.wrapping_sub(c.countdown.get()) as usize);
        c.countdown.set(interval);
        // A heap's sample points start with the heap: its first request is
        // sampled if the first point, drawn now, falls within its bytes
        // (chance `1 - e^(-size/rate)`, as for any request), not never.
        let due = armed || crate::profiler::next_interval(&mut self.local().rng) as usize <= past;
        due && !self.local().sampling && crate::profiler::enabled()
    }

    /// The head page of the class had no block: post this thread's batches,
    /// take back what others freed, try the class's other pages, then a fresh
    /// page. Out of line, so the fast path above needs no stack frame.
    #[inline(never)]
    fn alloc_slow(mut self, class: usize) -> *mut u8 {
        self.local().outbox.flush();
        self.drain();
        let p = self.alloc_from_other_pages(class);
        if p.is_null() {
            self.heap.counters.allocations[class].sub(1);
            crate::sys::errno::set_errno(libc::ENOMEM);
        }
        p
    }

    fn alloc_from_other_pages(&mut self, class: usize) -> *mut u8 {
        loop {
            let page = self.local().queues[class];
            if page.is_null() {
                break;
            }
            // SAFETY: as in `alloc`.
            match unsafe { (*page).try_pop() } {
                Popped::Block(p) => return p,
                // SAFETY: as above.
                Popped::Refused => {
                    let page = unsafe { &*page };
                    self.set_aside(page, page.refuse());
                    continue;
                }
                Popped::Empty => {}
            }
            // Off the queue until one of its blocks comes back.
            self.unlink(page);
            // SAFETY: as above.
            unsafe { (*page).set_full() };
        }
        let Some(page) = self.new_page(class) else {
            return null_mut();
        };
        self.link(page);
        // SAFETY: a fresh page of a class has room for at least one block,
        // and none of its blocks is pending.
        match unsafe { (*page).try_pop() } {
            Popped::Block(p) => p,
            _ => unreachable!("a fresh page has a free block"),
        }
    }

    /// Frees `p`, which lies in `page`, a page of this heap; a pointer that
    /// is not a live block is reported and ignored.
    ///
    /// # Safety
    /// `page` is the descriptor of the page of this heap that holds `p`.
    #[inline(always)]
    pub unsafe fn free(mut self, page: *mut Page, p: *mut u8) {
        // SAFETY: per the contract.
        let (page, result) = unsafe { (&*page, (*page).free(p)) };
        match result {
            Ok(ended) => {
                // SAFETY: page classes are below NUM_CLASSES.
                unsafe { self.heap.counters.frees.get_unchecked(page.class()).add(1) };
                if ended {
                    self.countdown_ended(page);
                }
            }
            Err(BadBlock::Claimed) => self.free_claimed(page, p.cast()),
            Err(bad) => error::report_bad(bad, Op::Free, p, Some(page.block_size())),
        }
    }

    /// The owner frees a live block another thread's free of which is
    /// pending (`BadBlock::Claimed`). A claim that will back out clears the
    /// bit within a few instructions: the free waits that out (up to
    /// [`CLAIM_WINDOW_SPINS`]) and then takes effect. A bit still set is a
    /// claim that stands (posted, or in its thread's batch): this free is
    /// the double free, reported here, in the call that made it. The block
    /// is set aside all the same, still live: should the claim back out
    /// after all (its thread stalled inside those few instructions), the
    /// drain frees it then, so no block is lost; if the claim is posted,
    /// the drain frees it once. Freed again meanwhile, it is reported.
    #[cold]
    #[inline(never)]
    fn free_claimed(mut self, page: &Page, block: *mut Block) {
        let size = Some(page.block_size());
        if self.is_aside(block) {
            return error::report(Misuse::DoubleFree, Op::Free, block.cast(), size);
        }
        for _ in 0..CLAIM_WINDOW_SPINS {
            core::hint::spin_loop();
            // SAFETY: `block` lies in `page`, a page of this heap.
            match unsafe { page.free(block.cast()) } {
                Err(BadBlock::Claimed) => {}
                Ok(ended) => {
                    // SAFETY: page classes are below NUM_CLASSES.
                    unsafe { self.heap.counters.frees.get_unchecked(page.class()).add(1) };
                    if ended {
                        self.countdown_ended(page);
                    }
                    return;
                }
                Err(bad) => return error::report_bad(bad, Op::Free, block.cast(), size),
            }
        }
        error::report(Misuse::DoubleFree, Op::Free, block.cast(), size);
        self.set_aside(page, block);
    }

    /// Keeps `block` of `page`, which has its pending bit set, off every
    /// list of the page until the bit clears ([`Self::settle_aside`]): a
    /// block another thread freed in the same instant as the owner (posted:
    /// the drain clears the bit), or one a claim holds for the few
    /// instructions until it backs out. The page counts the block as in use
    /// meanwhile, so the page stays.
    fn set_aside(&mut self, page: &Page, block: *mut Block) {
        // SAFETY: the block is ours: live, or refused off the free list; its
        // free-list word is unused (a posted chain links through the other).
        unsafe { Block::link(block, Link::Free(page.key()), self.local().aside) };
        self.local().aside = block;
    }

    /// Whether `block` is set aside.
    fn is_aside(&mut self, block: *mut Block) -> bool {
        let mut b = self.local().aside;
        while !b.is_null() {
            if b == block {
                return true;
            }
            b = self.next_aside(b);
        }
        false
    }

    /// The block after `b` in the list of blocks set aside; the process
    /// aborts if the link leads out of this heap's pages (it was
    /// overwritten: a write after free).
    fn next_aside(&self, b: *mut Block) -> *mut Block {
        let Some(page) = self.page_of_own(b) else {
            error::corrupted(b.cast(), OVERWRITTEN_ASIDE);
        };
        // SAFETY: `b` was set aside, a block of `page`, ours to read.
        unsafe { Block::next(b, Link::Free((*page).key())) }
    }

    /// Takes `block` out of the blocks set aside, if it is there.
    fn take_aside(&mut self, block: *mut Block) -> bool {
        let (mut prev, mut b) = (null_mut::<Block>(), self.local().aside);
        while !b.is_null() && b != block {
            (prev, b) = (b, self.next_aside(b));
        }
        if b.is_null() {
            return false;
        }
        let next = self.next_aside(b);
        if prev.is_null() {
            self.local().aside = next;
        } else {
            let page = self.page_of_own(prev).unwrap_or_else(|| error::corrupted(prev.cast(), OVERWRITTEN_ASIDE));
            // SAFETY: `prev` is set aside, a block of `page`.
            unsafe { Block::link(prev, Link::Free((*page).key()), next) };
        }
        true
    }

    /// Frees the blocks set aside whose pending bit has cleared (the claim
    /// was taken back, or backed out); the rest stay aside.
    #[cold]
    #[inline(never)]
    fn settle_aside(&mut self) {
        let mut b = core::mem::replace(&mut self.local().aside, null_mut());
        while !b.is_null() {
            let next = self.next_aside(b);
            let page = self.page_of_own(b).unwrap_or_else(|| error::corrupted(b.cast(), OVERWRITTEN_ASIDE));
            // SAFETY: the block was set aside, and lies in `page`.
            let page = unsafe { &*page };
            // SAFETY: as above.
            match unsafe { page.settle(b) } {
                Some((was_live, ended)) => {
                    // A block the owner's free set aside is freed now (a
                    // refused one was free already).
                    if was_live {
                        // SAFETY: page classes are below NUM_CLASSES.
                        unsafe { self.heap.counters.frees.get_unchecked(page.class()).add(1) };
                    }
                    if ended {
                        self.countdown_ended(page);
                    }
                }
                None => self.set_aside(page, b),
            }
            b = next;
        }
    }

    /// Frees `block` of another heap, `dest`, later: it joins this thread's
    /// batch for `dest`.
    ///
    /// # Safety
    /// `block` passed `Page::claim_foreign` on a page of `dest`; the caller
    /// gave it up.
    #[inline(never)]
    pub unsafe fn free_remote(mut self, dest: *const Heap, block: *mut Block, size: usize) {
        // SAFETY: per the contract.
        unsafe { self.local().outbox.add(dest, block, size) };
    }

    /// Posts this thread's batches (before statistics are read).
    pub fn flush(mut self) {
        self.local().outbox.flush();
    }

    /// Frees the blocks other threads posted, validating each: it must be a
    /// live block of this heap. A link that leads elsewhere was overwritten
    /// (a write after a cross-thread free): reported, and the process aborts
    /// rather than follow it. A block that is not live was freed by its
    /// owner in the same instant (see `Page::free`): reported and skipped;
    /// its posted link is its own, so the rest of its chain is freed.
    fn drain(&mut self) {
        let mut block = self.heap.inbox.take_all();
        while !block.is_null() {
            let Some(page) = self.page_of_own(block) else {
                error::corrupted(block.cast(), OVERWRITTEN_POSTED);
            };
            // A block set aside (the owner freed it too, or refused it) leaves
            // that list before `take_back` links it on the free list through
            // the same word.
            let was_aside = !self.local().aside.is_null() && self.take_aside(block);
            // SAFETY: the block lies in a live small segment of this heap,
            // so its words are readable; `page` holds it.
            let (next, result) = unsafe { (Block::next(block, Link::Posted), (*page).take_back(block.cast())) };
            // SAFETY: as above.
            let page = unsafe { &*page };
            match result {
                // (Set aside by the owner's free of it, reported then.)
                Ok(ended) => {
                    self.heap.counters.remote_frees.add(1);
                    // SAFETY: page classes are below NUM_CLASSES.
                    unsafe { self.heap.counters.frees.get_unchecked(page.class()).add(1) };
                    if ended {
                        self.countdown_ended(page);
                    }
                }
                Err(BadBlock::Invalid) => error::corrupted(block.cast(), OVERWRITTEN_POSTED),
                Err(_) => {
                    error::report(Misuse::DoubleFree, Op::Free, block.cast(), Some(page.block_size()));
                    // Refused while posted: its bit is clear now, and
                    // `settle_aside` below puts it back on the free list.
                    if was_aside {
                        self.set_aside(page, block);
                    }
                }
            }
            block = next;
        }
        if !self.local().aside.is_null() {
            self.settle_aside();
        }
    }

    /// The page of this heap that holds `block`, if any.
    fn page_of_own(&self, block: *mut Block) -> Option<*mut Page> {
        let seg = segment::find_in_first_slot(block.cast())?;
        // SAFETY: `find` returned a live segment of ours holding the block;
        // only after checking its kind is it read as a small segment.
        unsafe {
            if (*seg.as_ptr()).kind != Kind::Small {
                return None;
            }
            let (seg, page) = SmallSegment::page_of(block.cast());
            core::ptr::eq((*seg).heap, self.heap).then_some(page)
        }
    }

    /// A page's countdown ended: it became empty (not being in the ring of
    /// emptied pages), or got a block back while full. A page that empties
    /// again while in the ring needs nothing here; if it was the last of its
    /// segment to empty, the segment goes back when the page leaves the
    /// ring (or at `trim`), not at once.
    #[cold]
    #[inline(never)]
    fn countdown_ended(&mut self, page: &Page) {
        let ptr = page as *const Page as *mut Page;
        if page.is_full() {
            // At the back: the page collects more frees while the pages
            // ahead serve (at the front it would hand out its one free block
            // and be full again at once; `docs/performance.md`, step 14).
            page.clear_full();
            self.link_back(ptr);
            // A page of one block (the largest classes in page 0) is empty
            // again at once.
            if page.used() != 0 {
                return;
            }
        }
        // SAFETY: the page's segment is a live segment of this heap.
        let seg = unsafe { SmallSegment::page_of(ptr.cast()).0 };
        // SAFETY: as above.
        unsafe { (*seg).note_emptied(page) };
        if self.local().abandoned {
            return self.release_if_empty(ptr);
        }
        // SAFETY: as above.
        if seg != self.local().spare && unsafe { (*seg).is_empty() } {
            let spare = self.local().spare;
            // SAFETY: the spare, if any, is a live segment of this heap.
            if spare.is_null() || !unsafe { (*spare).is_empty() } {
                self.local().spare = seg;
            } else {
                return self.release_segment(seg);
            }
        }
        let capacity = options::retain_pages();
        if capacity == 0 {
            self.release_if_empty(ptr);
        } else if !page.in_ring() {
            page.set_in_ring(true);
            let next = self.local().ring_next;
            let oldest = core::mem::replace(&mut self.local().ring[next], ptr);
            self.local().ring_next = (next + 1) % capacity;
            if !oldest.is_null() {
                self.release_if_empty(oldest);
            }
        }
    }

    /// Posts this thread's batches, takes back posted blocks and gives every
    /// empty page back to the system (when the library is unloaded).
    pub fn trim(mut self) {
        self.release_cached();
    }

    /// [`Self::trim`], and from now on pages go back as they empty (the
    /// heap has no thread to reuse them).
    fn give_back(&mut self) {
        // After the ring is emptied: a page in the ring must be released
        // from there, once.
        self.release_cached();
        self.local().abandoned = true;
    }

    fn release_cached(&mut self) {
        self.local().outbox.flush();
        self.drain();
        for slot in 0..RETAINED_EMPTY_PAGES {
            let page = core::mem::replace(&mut self.local().ring[slot], null_mut());
            if !page.is_null() {
                self.release_if_empty(page);
            }
        }
        let spare = self.local().spare;
        // SAFETY: the spare is a live segment of this heap.
        if !spare.is_null() && unsafe { (*spare).is_empty() } {
            self.release_segment(spare);
        }
    }

    /// A new thread takes the heap over.
    pub fn adopt(mut self) {
        self.local().abandoned = false;
    }
}
