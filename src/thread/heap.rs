//! Thread heaps. Each thread allocates from its own heap: per size class a
//! queue of pages with free blocks, the first of which serves, reached from
//! the size through the heap's [`Tables`].
//!
//! The types say who touches what. [`Heap`] is what every thread may see: the
//! [`Remote`] part other threads write (the stack of pages they posted
//! blocks to, and the ownership flag), and the statistics counters (written
//! by the owner, read by anyone). The tables and the owner's [`Local`]
//! state are reached only through an [`Owner`], which the thread holding the
//! heap's `taken` flag makes.
//!
//! A heap outlives its thread: at thread exit it is *abandoned* (its empty
//! pages go back to the system, its live blocks stay) and the next new thread
//! adopts it whole. While abandoned, a thread that posts blocks to it claims
//! it for a moment and takes them back, so its memory is reclaimed even if
//! no thread is ever created again.
//!
//! Threads that have no heap yet see [`EMPTY_HEAP`]: its tables send every
//! allocation and free to the slow path, so the fast paths test nothing.

use super::remote::{Remote, Undecided};
use super::tables::Tables;
use crate::diag::counters::{Countdown, Counter};
use crate::diag::error::{self, BadBlock, Misuse, Op};
use crate::diag::options;
use crate::small::arena::Arena;
use crate::small::page::{Freed, Page};
use crate::small::segment::SmallSegment;
use crate::small::size_class::{NUM_CLASSES, Table, class_of};
use core::cell::{Cell, UnsafeCell};
use core::ptr::null_mut;

/// How many emptied pages a heap keeps at most before giving the oldest back
/// to the system (4 MiB of 64 KiB pages; `MALLOCATOR_RETAIN_PAGES` lowers it;
/// the measurement behind it: `docs/performance.md`, step 5).
const RETAINED_EMPTY_PAGES: usize = options::MAX_RETAIN_PAGES;

#[repr(C)]
pub struct Heap {
    /// Read on every allocation and free; owner only.
    tables: Tables,
    /// Written by the owner, read by statistics from any thread.
    pub counters: Counters,
    /// Written by other threads.
    pub(super) remote: Remote,
    /// Link in the pool of heaps (see `pool`), under the pool lock.
    pub pool_next: Cell<*mut Heap>,
    /// Link in the list of every heap ever made (for statistics), set once
    /// before the heap is published.
    pub all_next: Cell<*mut Heap>,
    local: UnsafeCell<Local>,
}

/// A heap's statistics. The pages count their own allocations; these are
/// the heap's, and those of its pages given back, per class.
pub struct Counters {
    /// Bytes until the next heap-profile sample; the requested bytes so far
    /// are `sample_at` minus this (see [`Counters::requested`]).
    pub countdown: Countdown,
    /// The requested bytes at which `countdown` reaches zero.
    pub sample_at: Counter,
    /// Blocks other threads freed into this heap (counted when taken back).
    pub remote_frees: Counter,
    /// Allocations from this heap's pages since given back, per class.
    pub allocations: [Counter; NUM_CLASSES],
}

impl Counters {
    /// Sum of the sizes asked for from this heap (small and large). Read
    /// while the owner runs it may be off by one request.
    pub fn requested(&self) -> u64 {
        self.sample_at.get().wrapping_sub(self.countdown.get() as u64)
    }
}

/// How long the owner's free of a block whose pending bit is set waits for
/// a claim that backs out to clear it: such a claim holds the bit for a few
/// instructions (an atomic `or`, two loads, an atomic `and`), some 50 ns;
/// 1,024 spin-loop hints are 10-140 us (a `pause` is 10 to 140 cycles, by
/// microarchitecture). Paid only by a double free.
const CLAIM_WINDOW_SPINS: usize = 1024;

/// What only the owner touches. All zero is a valid empty heap (but for the
/// tables, see [`Tables::init`]).
pub struct Local {
    /// Per class, the pages that may have free blocks; the head serves.
    pub(super) queues: [*mut Page; NUM_CLASSES],
    /// The last page of each queue.
    pub(super) tails: [*mut Page; NUM_CLASSES],
    /// Per class, the pages with no free block (see `Page::set_full`).
    pub(super) full: [*mut Page; NUM_CLASSES],
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
    /// Free pages of the heap's segments given back without a purge (see
    /// [`super::pages::DIRTY_PAGES_MAX`]).
    pub(super) dirty_pages: u32,
    /// When `dirty_pages` last rose from 0 (`clock::now_ms`): the first of
    /// them has waited since.
    pub(super) dirty_since: u64,
    /// No thread runs on the heap: emptied pages and segments go back at once.
    pub(super) abandoned: bool,
    /// Where the heap's pages keep their bitmaps.
    pub(super) arena: Arena,
    /// Pages with blocks set aside (see `aside.rs`), linked through the
    /// pages; null when none.
    pub(super) aside_pages: *mut Page,
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

/// The heap of threads that have none: the initial value of every thread's
/// slot (see `slot.rs`).
pub static EMPTY_HEAP: EmptyHeap = EmptyHeap(Heap {
    tables: Tables::empty(),
    counters: Counters {
        countdown: Countdown::new(crate::profiler::OFF),
        sample_at: Counter::new(),
        remote_frees: Counter::new(),
        allocations: [const { Counter::new() }; NUM_CLASSES],
    },
    remote: Remote::new(),
    pool_next: Cell::new(null_mut()),
    all_next: Cell::new(null_mut()),
    local: UnsafeCell::new(Local::EMPTY),
});

#[repr(transparent)]
pub struct EmptyHeap(pub Heap);

// SAFETY: no thread writes the empty heap but for its countdown (one
// unlocked `sub` to memory per first allocation of a thread, a race that
// only loses bytes of a count that starts at `profiler::OFF` and is never
// used): its tables send every allocation and free to the slow path, which
// finds the thread a heap of its own before it touches anything else.
unsafe impl Sync for EmptyHeap {}

impl Local {
    const EMPTY: Local = Local {
        queues: [null_mut(); NUM_CLASSES],
        tails: [null_mut(); NUM_CLASSES],
        full: [null_mut(); NUM_CLASSES],
        segments: null_mut(),
        ring: [null_mut(); RETAINED_EMPTY_PAGES],
        ring_next: 0,
        spare: null_mut(),
        dirty_pages: 0,
        dirty_since: 0,
        abandoned: false,
        arena: Arena::EMPTY,
        aside_pages: null_mut(),
        rng: 0,
        sampling: false,
    };
}

impl Heap {
    /// Makes zeroed memory (a new heap's) an empty heap.
    pub fn init(&self) {
        self.tables.init();
    }

    /// Whether this is [`EMPTY_HEAP`].
    #[inline(always)]
    pub fn is_empty_heap(&self) -> bool {
        core::ptr::eq(self, &EMPTY_HEAP.0)
    }

    /// Claims the heap if nobody owns it.
    pub fn try_take(&self) -> bool {
        self.remote.try_take()
    }

    /// Whether a thread runs on the heap (or claims it for a moment).
    pub fn is_owned(&self) -> bool {
        self.remote.is_taken()
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
    pub(super) fn count_down(&self, n: usize) -> bool {
        #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
        {
            // SAFETY: `heap + at` is this heap's countdown (`offset_of!`), an
            // aligned word (`Countdown` is a transparent `AtomicIsize`). Only
            // the owner, the calling thread, writes it (but on the empty
            // heap, see `EmptyHeap`), so the non-locked read-modify-write
            // loses nothing; an aligned word access is single-copy atomic on
            // x86, so the relaxed loads of statistics readers see the old
            // value or the new, as with an atomic store.
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

    /// Allocates `size <= TABLE_LIMIT` bytes from the page that serves
    /// them: the fast path of every small allocation. Everything else
    /// continues in a cold function that finds the heap again (keeping it in
    /// a register across the fast path would cost a stack frame).
    #[inline(always)]
    pub fn alloc(&self, table: Table, size: usize) -> *mut u8 {
        self.alloc_from(self.tables.direct(table, size), table, size)
    }

    /// Allocates `TABLE_LIMIT < size <= MAX_SMALL` bytes, as [`Self::alloc`]
    /// but for the class's page found by class.
    #[inline(always)]
    pub fn alloc_above_tables(&self, table: Table, size: usize) -> *mut u8 {
        self.alloc_from(self.tables.current(class_of(size)), table, size)
    }

    #[inline(always)]
    fn alloc_from(&self, page: &Page, table: Table, size: usize) -> *mut u8 {
        if self.count_down(size) {
            return alloc_sampled(size, table);
        }
        if !page.has_free() {
            return alloc_slow(size, table);
        }
        match page.pop() {
            Some(p) => p,
            None => alloc_refused(size, table),
        }
    }

    /// Frees `p` if it is a block of this heap's pages: the fast path of
    /// every small free. `false` for any other pointer, which the caller
    /// sends the full way.
    ///
    /// # Safety
    /// Any pointer may be passed; a live block of this heap must not be used
    /// afterwards. The calling thread holds the heap (or it is the empty
    /// heap, whose table holds no page).
    #[inline(always)]
    pub unsafe fn free(&self, p: *mut u8) -> bool {
        let Some(page) = self.tables.page_of(p) else {
            return false;
        };
        // SAFETY: the table says `p` lies in `page`, a page of this heap,
        // which the calling thread holds.
        unsafe { free_in(page, p) };
        true
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

/// Frees `p` into `page`, for the owner.
///
/// # Safety
/// The calling thread holds the heap of `page`, which holds `p`.
#[inline(always)]
unsafe fn free_in(page: &Page, p: *mut u8) {
    // SAFETY: per the contract.
    match unsafe { page.free(p) } {
        Freed::Done => {}
        Freed::Ended => page_event(p, page),
        Freed::Invalid => bad_free(p, page, BadBlock::Invalid),
        Freed::NotLive => not_live(p, page),
        Freed::Claimed => claimed(p, page),
    }
}

/// The calling thread's heap, for a cold path that continues a fast one on
/// it (so not the empty heap).
///
/// # Safety
/// The calling thread's slot holds a heap of its own.
unsafe fn mine() -> Owner<'static> {
    // SAFETY: per the contract, the thread holds its heap.
    unsafe { super::pool::current().owner() }
}

/// The fast path found no free block in the page that serves a request of
/// `size` bytes (or the thread has no heap yet). The cold paths take the
/// size, not the class: finding the class is theirs to do, so that the fast
/// path keeps nothing but the size for them.
#[cold]
#[inline(never)]
fn alloc_slow(size: usize, table: Table) -> *mut u8 {
    let class = table.class_of(size);
    if super::pool::current().is_empty_heap() {
        // The request was counted on the empty heap: count it again on the
        // thread's own, once attached.
        return alloc_attached(size, class);
    }
    // SAFETY: the fast path found this thread's own heap.
    unsafe { mine() }.alloc_class(class)
}

/// A thread's first small request: attaches a heap and serves it.
#[inline(never)]
fn alloc_attached(size: usize, class: usize) -> *mut u8 {
    let heap = super::pool::heap();
    if heap.is_null() {
        crate::sys::errno::set_errno(libc::ENOMEM);
        return null_mut();
    }
    // SAFETY: the calling thread holds its heap.
    unsafe { (*heap).owner() }.alloc_counted(class, size)
}

/// The countdown of sampled bytes passed zero.
#[cold]
#[inline(never)]
fn alloc_sampled(size: usize, table: Table) -> *mut u8 {
    let heap = super::pool::current();
    if heap.is_empty_heap() {
        return alloc_slow(size, table);
    }
    // SAFETY: the calling thread holds its heap.
    unsafe { heap.owner() }.sampled(table.class_of(size), size)
}

/// The free list's first block has its pending bit set (or a link was
/// overwritten: `refuse` aborts then).
#[cold]
#[inline(never)]
fn alloc_refused(size: usize, table: Table) -> *mut u8 {
    // SAFETY: the fast path popped from this thread's own heap.
    let mut owner = unsafe { mine() };
    let class = table.class_of(size);
    let page = owner.local().queues[class];
    // SAFETY: the page that refused serves the class: the queue's head.
    owner.refuse(unsafe { &*page });
    owner.alloc_class(class)
}

/// The free of `p` ended the countdown of `page`: it emptied, or was full.
/// (The cold paths of `free` take the pointer first: it arrives in the
/// first argument register, where it stays.)
#[cold]
#[inline(never)]
fn page_event(_p: *mut u8, page: &Page) {
    // SAFETY: the fast path freed into this thread's own heap.
    unsafe { mine() }.countdown_ended(page);
}

/// The owner's free of `p` in `page` found a boundary whose block is not
/// live: a double free, or a block never handed out.
#[cold]
#[inline(never)]
fn not_live(p: *mut u8, page: &Page) {
    bad_free(p, page, page.why_not(p));
}

/// The owner's free of `p` in `page` found a live block whose pending bit
/// is set (or a block in the segment header, whose bits are both set).
#[cold]
#[inline(never)]
fn claimed(p: *mut u8, page: &Page) {
    if page.in_header(p) {
        return bad_free(p, page, BadBlock::Invalid);
    }
    // SAFETY: the fast path freed into this thread's own heap.
    unsafe { mine() }.free_claimed(page, p);
}

/// Reports the owner's free of `p` in `page`, which is not a live block.
#[cold]
#[inline(never)]
fn bad_free(p: *mut u8, page: &Page, bad: BadBlock) {
    error::report_bad(bad, Op::Free, p, Some(page.block_size()));
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

    /// The heap's lookup tables.
    pub(super) fn tables(&self) -> &Tables {
        &self.heap.tables
    }

    /// Allocates a block of `class` (above
    /// [`crate::small::size_class::TABLE_LIMIT`], or for `calloc`, aligned
    /// and zeroed requests) for a request of `size` bytes; null with
    /// `errno = ENOMEM` when no memory is left.
    pub fn alloc_counted(self, class: usize, size: usize) -> *mut u8 {
        if self.heap.count_down(size) {
            return self.sampled(class, size);
        }
        self.alloc_class(class)
    }

    /// Allocates a block of `class`, its bytes counted already.
    fn alloc_class(mut self, class: usize) -> *mut u8 {
        debug_assert!(class < NUM_CLASSES);
        loop {
            let page = self.local().queues[class];
            if page.is_null() {
                // A fresh page (its blocks bumped, or on its free list in
                // secure mode) serves at the queue's head.
                let Some(page) = self.new_page(class) else {
                    if self.rescue_full(class) {
                        continue;
                    }
                    crate::sys::errno::set_errno(libc::ENOMEM);
                    return null_mut();
                };
                self.link(page);
                continue;
            }
            // SAFETY: pages in the queues are live pages of this heap.
            let page = unsafe { &*page };
            if page.has_free() {
                match page.pop() {
                    Some(p) => return p,
                    None => {
                        self.refuse(page);
                        continue;
                    }
                }
            }
            page.check_head();
            // Blocks other threads gave back to this page come before fresh
            // ones: bumping first made every page of a cross-thread workload
            // resident to its end before its blocks came back.
            if page.is_announced() && self.drain_if_any() {
                continue;
            }
            if let Some(p) = page.bump() {
                return p;
            }
            // Every block is out: take back what other threads freed, then
            // off the queue until one of its blocks comes back.
            if self.drain_if_any() {
                continue;
            }
            self.retire_full(page);
        }
    }

    /// The countdown passed zero: start the next interval and, if profiling,
    /// serve the request as a sample.
    fn sampled(mut self, class: usize, size: usize) -> *mut u8 {
        if self.rearm() {
            let heap = self.heap;
            // SAFETY: this thread holds the heap; `self`, its only `Owner`,
            // is not used again before it is made anew.
            let p = unsafe { heap.sampling(|| crate::profiler::alloc_sampled(size)) };
            if !p.is_null() {
                return p;
            }
            // SAFETY: as above.
            self = unsafe { heap.owner() };
        }
        self.alloc_class(class)
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

    /// Frees `p`, which lies in `page`, a page of this heap found the long
    /// way: its table slot holds another page, which the slot now leaves
    /// for this one (or the page is free, and `p` no block).
    ///
    /// # Safety
    /// `page` is the descriptor of the page of this heap that holds `p`.
    pub unsafe fn free_found(self, page: &Page, p: *mut u8) {
        if page.base() != 0 {
            self.tables().insert(page);
        }
        // SAFETY: per the contract.
        unsafe { free_in(page, p) };
    }

    /// The owner frees a live block another thread's free of which is
    /// pending ([`Freed::Claimed`]). A claim that will back out clears the
    /// bit within a few instructions: the free waits that out (up to
    /// [`CLAIM_WINDOW_SPINS`]) and then takes effect. A bit still set is a
    /// claim that stands (posted, or about to be): this free is the double
    /// free, reported here, in the call that made it. The block is set aside
    /// all the same, still live: should the claim back out after all (its
    /// thread stalled inside those few instructions), it is freed then, so
    /// no block is lost; if the claim is posted, taking it back frees it
    /// once. Freed again meanwhile, it is reported.
    fn free_claimed(mut self, page: &Page, p: *mut u8) {
        let size = Some(page.block_size());
        if page.is_aside(p) {
            return error::report(Misuse::DoubleFree, Op::Free, p, size);
        }
        for _ in 0..CLAIM_WINDOW_SPINS {
            core::hint::spin_loop();
            // SAFETY: `p` lies in `page`, a page of this heap.
            match unsafe { page.free(p) } {
                Freed::Claimed => {}
                Freed::Done => return,
                Freed::Ended => return self.countdown_ended(page),
                Freed::Invalid => return bad_free(p, page, BadBlock::Invalid),
                Freed::NotLive => return not_live(p, page),
            }
        }
        error::report(Misuse::DoubleFree, Op::Free, p, size);
        self.set_aside(page, p);
    }

    /// A page's countdown ended: it was full and got enough blocks back (it
    /// rejoins its queue), or it became empty (not being in the ring of
    /// emptied pages). A page that empties again while in the ring needs
    /// nothing here; if it was the last of its segment to empty, the segment
    /// goes back when the page leaves the ring (or at `trim`), not at once.
    pub(super) fn countdown_ended(&mut self, page: &Page) {
        if page.is_full() {
            // At the back: the page collects more frees while the pages
            // ahead serve (at the front it would hand out its few free
            // blocks and be full again at once; `docs/performance.md`,
            // step 14).
            self.unfull(page);
            if page.used() != 0 {
                return;
            }
        }
        self.emptied(page);
    }

    /// `page` holds no block any more.
    fn emptied(&mut self, page: &Page) {
        let ptr = page as *const Page as *mut Page;
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

    /// Takes back posted blocks and gives every empty page back to the
    /// system (`malloc_trim`, trimming abandoned heaps, library unload).
    pub fn trim(mut self) {
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
        self.purge_dirty();
        self.local().arena.purge();
    }

    /// Takes back what other threads posted, and from now on pages go back
    /// as they empty (the heap has no thread to reuse them); the pages with
    /// claims still undecided. The emptied pages it keeps (the ring) stay,
    /// warm, for the thread that adopts the heap next: a program whose
    /// threads come and go does not purge and fault them in again at every
    /// thread (issue 24: a `madvise` per page at each exit, 1,140 of
    /// `churn`'s 400 threads). `malloc_trim` gives them back
    /// ([`super::pool::trim_abandoned`]).
    pub(super) fn give_back(&mut self) -> Undecided {
        let (_, undecided) = self.drain();
        self.local().abandoned = true;
        self.purge_dirty_if_due();
        undecided
    }

    /// A new thread takes the heap over.
    pub fn adopt(mut self) {
        self.local().abandoned = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::small::page::EMPTY_PAGE;
    use crate::small::size_class::TABLE_LIMIT;

    #[test]
    fn the_empty_heap_serves_nothing_fast() {
        let heap = &EMPTY_HEAP.0;
        for table in [Table::Rust, Table::C] {
            for size in [0, 1, 8, 100, TABLE_LIMIT] {
                assert!(core::ptr::eq(heap.tables.direct(table, size), &EMPTY_PAGE.0));
                assert!(!heap.tables.direct(table, size).has_free());
            }
        }
        let x = 0u64;
        // SAFETY: the empty heap's table holds no page: nothing is freed.
        assert!(!unsafe { heap.free((&raw const x).cast_mut().cast()) });
        // SAFETY: as above.
        assert!(!unsafe { heap.free(null_mut()) });
    }

    /// Pages given back leave the table by address: a stale pointer into
    /// them (a page returned to its segment, or a whole segment returned,
    /// its header a tombstone) is never taken for a block of the heap.
    #[test]
    fn a_page_given_back_leaves_the_table() {
        std::thread::spawn(|| {
            let heap = super::super::pool::heap();
            assert!(!heap.is_null());
            // SAFETY: heaps are never freed.
            let heap = unsafe { &*heap };
            // 6 MiB of 1000-byte blocks: two segments at least.
            let blocks: std::vec::Vec<usize> = (0..6000).map(|_| crate::api::alloc::alloc(1000, 8) as usize).collect();
            assert!(blocks.iter().all(|&p| heap.tables.page_of(p as *mut u8).is_some()));
            // SAFETY: the blocks are live and forgotten after this.
            blocks.iter().for_each(|&p| unsafe { crate::api::alloc::free(p as *mut u8) });
            // SAFETY: the thread holds its heap.
            unsafe { heap.owner() }.trim();
            for &p in &blocks {
                assert!(heap.tables.page_of(p as *mut u8).is_none(), "{p:#x} still in the table");
            }
        })
        .join()
        .unwrap();
    }
}
