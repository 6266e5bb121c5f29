//! Small pages: the slabs. A page hands out fresh blocks from a bump
//! pointer, so the memory of blocks nobody asked for is never written (and
//! never becomes resident). Freed blocks go on an intrusive free list.
//!
//! Whether a block is live is one bit in the page's *live bitmap* (in the
//! segment header, written only by the owner): set when the block is handed
//! out, cleared when it comes back. `free` tests and clears it without loading
//! from the block (a cold block costs a load miss; the store of the link
//! waits in the store buffer instead), a second free finds the bit clear, and
//! a block can be handed out only while its bit is clear, so no corrupted
//! list can make two owners of one block.
//!
//! A block freed by another thread stays live until its owner takes it back;
//! meanwhile its bit in the page's *pending bitmap* is set (by the freeing
//! thread, with an atomic `or`, so that of two threads freeing one block at
//! once exactly one succeeds). The owner's `free` and allocation read it
//! too: a block with its pending bit set is never handed out, and is kept
//! aside until the bit clears (see [`Page::settle`]).

use super::block::{Block, Link};
use super::size_class::{MIN_BLOCK, class_size};
use crate::diag::error::{self, BadBlock};
use crate::segment::SEGMENT_SIZE;
use core::cell::Cell;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};

/// 64 KiB: the largest class (16 KiB) still gets four blocks, the smallest
/// (8 bytes) 8192; and a class a thread touches only once reserves no more than
/// this. mimalloc uses the same size for its small pages.
pub const PAGE_SHIFT: u32 = 16;
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;
pub const PAGES_PER_SEGMENT: usize = SEGMENT_SIZE / PAGE_SIZE;

/// Words of a page's live bitmap, and as many of its pending bitmap: a bit
/// for every block of the smallest class (512 bytes a page for each: 0.8%).
pub const BITMAP_WORDS: usize = PAGE_SIZE / MIN_BLOCK / usize::BITS as usize;

/// A page's bitmaps, each live word next to its pending word: `free` reads
/// both from one cache line.
pub type Bitmaps = [[AtomicUsize; 2]; BITMAP_WORDS];

/// Descriptor of one small page: two cache lines, so that the fields other
/// threads read to validate a pointer (`shape`) never share a line with the
/// fields the owner writes on every allocation and free (`local`).
#[repr(C, align(64))]
pub struct Page {
    shape: Shape,
    local: Local,
}

/// Read by any thread (relaxed atomics: plain loads on x86); written when
/// the page is assigned to a class, and `bump` once per fresh block.
#[repr(C, align(64))]
struct Shape {
    /// First block: the page start, or past the header for page 0.
    start: AtomicUsize,
    /// Next never-used block.
    bump: AtomicUsize,
    /// The page's live bitmap (owner writes) and pending bitmap (other
    /// threads set bits, the owner clears them).
    bitmaps: AtomicPtr<Bitmaps>,
    /// Block size; 0 while the page belongs to no class.
    block_size: AtomicU32,
    /// ceil(2^32 / block_size): the block index of an offset, and whether
    /// the offset is a block boundary, from one multiply (see `index`).
    reciprocal: AtomicU32,
}

/// Only the thread that owns the page's heap touches these.
#[repr(C, align(64))]
struct Local {
    free: Cell<*mut Block>,
    /// The free list's key (see `crate::small::block`), drawn at `assign`.
    key: Cell<usize>,
    /// End of the bump area (a whole number of blocks past `start`).
    end: Cell<usize>,
    /// Blocks handed out and not yet freed, plus [`RETAINED_SLACK`] while
    /// the page is in the heap's ring of emptied pages; while the page is
    /// full (every block out), 1, so that the next free reaches the heap's
    /// slow path through the same countdown that reports an emptied page.
    countdown: Cell<u32>,
    full: Cell<bool>,
    in_ring: Cell<bool>,
    class: Cell<u8>,
    next: Cell<*mut Page>,
    prev: Cell<*mut Page>,
}

/// Added to the countdown of a page in the heap's ring of emptied pages, so
/// that emptying it again ends no countdown: the page is retained already,
/// and nothing of the slow path has to run. Without it, a program whose
/// pages of some classes empty on every free while others hold a block
/// made the free's branch unpredictable: `small_pairs` with one live block
/// left by `dlopen` ran 10-20 % slower (cachegrind: 0.19 mispredicts per
/// pair, from none; `docs/performance.md`, step 27). Far above any page's
/// block count (8192 at most), far below overflow.
const RETAINED_SLACK: u32 = 1 << 30;

/// What [`Page::try_pop`] found.
pub enum Popped {
    Block(*mut u8),
    /// The free list's first block has its pending bit set (another
    /// thread's free of it is posted, or being decided): the caller takes
    /// it off ([`Page::refuse`]) and sets it aside until the bit clears
    /// ([`Page::settle`]); another try may find a block.
    Refused,
    Empty,
}

const _: () = assert!(size_of::<Page>() == 128 && core::mem::offset_of!(Page, local) == 64);

impl Page {
    /// Takes a free block, or null when the page has none (for tests, which
    /// set no block aside: a refusal fails them).
    #[cfg(test)]
    pub fn pop(&self) -> *mut u8 {
        match self.try_pop() {
            Popped::Block(p) => p,
            Popped::Refused => panic!("block {:p} refused", self.local.free.get()),
            Popped::Empty => null_mut(),
        }
    }

    /// Takes a free block: the hot path of every small allocation.
    ///
    /// A block on the free list that is not a block of this page, or whose
    /// live bit is set, means a link was overwritten (a write after free):
    /// the process aborts with a report rather than hand out memory twice.
    /// A block whose pending bit is set may be in a chain another thread
    /// posted (see [`Self::free`]): the caller takes it off the list to set
    /// it aside, and asks again.
    #[inline(always)]
    pub fn try_pop(&self) -> Popped {
        let block = self.local.free.get();
        if !block.is_null() {
            let Some(i) = self.index(block as usize) else { error::corrupted(block.cast(), b"free block overwritten") };
            if !self.set_live_if_free(i) {
                return Popped::Refused;
            }
            // SAFETY: the block is a block of this page (checked above), not
            // live, and ours to read.
            unsafe {
                let next = Block::next(block, Link::Free(self.local.key.get()));
                prefetch(next);
                self.local.free.set(next);
            }
            self.local.countdown.set(self.local.countdown.get() + 1);
            return Popped::Block(block.cast());
        }
        let fresh = self.shape.bump.load(Relaxed);
        if fresh < self.local.end.get() {
            self.shape.bump.store(fresh + self.block_size(), Relaxed);
            let fresh_index = self.index(fresh);
            debug_assert!(fresh_index.is_some());
            self.set_live(fresh_index.unwrap_or(0));
            self.local.countdown.set(self.local.countdown.get() + 1);
            return Popped::Block(fresh as *mut u8);
        }
        Popped::Empty
    }

    /// Frees `p` into this page, for the owner. `Ok(true)` when the page
    /// emptied or was full: the heap's slow path handles those.
    ///
    /// The pending bit is read, and the live bit cleared, without an atomic
    /// read-modify-write (one would cost the fast path a locked instruction):
    /// another thread's free of the same block in the same instant can pass
    /// [`Self::claim_foreign`] too. The block is then on this page's free
    /// list and in that thread's chain at once, each list by a link of its
    /// own ([`Link`]); [`Self::try_pop`] never hands out a block whose pending
    /// bit is set, and [`Self::take_back`] reports the double free, so the
    /// block has one owner whatever the order.
    ///
    /// A block whose pending bit is set is `Err(Claimed)`, not yet a double
    /// free: the bit may belong to a claim that will back out (it read the
    /// block live before this thread's earlier free of it, and our store of
    /// the live bit since, still in this CPU's store buffer, may not reach
    /// it). The caller waits for the bit to clear (then this free takes
    /// effect), else reports this free and sets the block aside, still
    /// live, until the bit's fate is known: see [`Self::settle`].
    ///
    /// # Safety
    /// The caller owns the page's heap; `p` lies in this page's memory.
    #[inline(always)]
    pub unsafe fn free(&self, p: *mut u8) -> Result<bool, BadBlock> {
        let Some(index) = self.index(p as usize) else {
            return Err(BadBlock::Invalid);
        };
        // Bits tested by shifting (`bt`), not by a mask: one register fewer.
        let (live, pending, _) = self.bits(index);
        let shift = index % usize::BITS as usize;
        let w = live.load(Relaxed);
        if (w >> shift) & 1 == 0 {
            return Err(self.why_not_live(p));
        }
        if (pending.load(Relaxed) >> shift) & 1 != 0 {
            return Err(BadBlock::Claimed);
        }
        live.store(w & !(1 << shift), Relaxed);
        Ok(self.push(p.cast()))
    }

    /// Links a block that was live and is ours again; true when the
    /// countdown ended.
    #[inline(always)]
    fn push(&self, block: *mut Block) -> bool {
        // SAFETY: the caller cleared the block's live bit: it is ours.
        unsafe { Block::link(block, Link::Free(self.local.key.get()), self.local.free.get()) };
        self.local.free.set(block);
        let countdown = self.local.countdown.get() - 1;
        self.local.countdown.set(countdown);
        countdown == 0
    }

    /// Claims `p` for a free by a thread that does not own the page: it must
    /// be a live block boundary whose pending bit this call sets (another
    /// thread that frees the same block at once finds it set). Then the
    /// caller must post the block to the owner. Safe to call from any thread
    /// while the page is in use.
    #[inline(always)]
    pub fn claim_foreign(&self, p: *mut u8) -> Result<*mut Block, BadBlock> {
        let Some(index) = self.index(p as usize) else {
            return Err(BadBlock::Invalid);
        };
        let (live, pending, bit) = self.bits(index);
        if live.load(Relaxed) & bit == 0 {
            return Err(self.why_not_live(p));
        }
        // Acquire, and the live bit read again after it: if the owner took
        // back another thread's free of this block in the meantime, it
        // cleared the live bit before it released the pending bit (see
        // `take_back`), so this claim sees the block free, not live.
        if pending.fetch_or(bit, Acquire) & bit != 0 {
            return Err(BadBlock::DoubleFree);
        }
        if live.load(Relaxed) & bit == 0 {
            pending.fetch_and(!bit, Relaxed);
            return Err(BadBlock::DoubleFree);
        }
        Ok(p.cast())
    }

    /// Takes back a block another thread claimed (for the owner, when it
    /// drains its inbox): `Ok(true)` when the page emptied or was full. A
    /// block whose pending bit is clear was not posted by any free: the link
    /// that led here was overwritten (`Invalid`). A block claimed but no
    /// longer live was freed by the owner in the same moment
    /// (`DoubleFree`).
    ///
    /// # Safety
    /// As for [`Self::free`].
    pub unsafe fn take_back(&self, p: *mut u8) -> Result<bool, BadBlock> {
        let Some(index) = self.index(p as usize) else {
            return Err(BadBlock::Invalid);
        };
        let (live, pending, bit) = self.bits(index);
        if pending.load(Relaxed) & bit == 0 {
            return Err(BadBlock::Invalid);
        }
        let w = live.load(Relaxed);
        if w & bit == 0 {
            pending.fetch_and(!bit, Release);
            return Err(BadBlock::DoubleFree);
        }
        // The block is free (live bit clear, linked) before the pending bit
        // goes (Release): a thread claiming it from then on sees it free.
        live.store(w & !bit, Relaxed);
        let ended = self.push(p.cast());
        pending.fetch_and(!bit, Release);
        Ok(ended)
    }

    /// Whether a block of the page was claimed by another thread and not yet
    /// taken back. Its link lives in the block, and the owner will follow
    /// it: the page's memory must stay until then, even if the page looks
    /// empty (an owner's free racing with a claim of the same block frees it
    /// locally too; the drain reports that double free). Scans the page's
    /// pending bits: called only when the page is to be given back.
    pub fn has_pending(&self) -> bool {
        let words = self.capacity().div_ceil(usize::BITS as usize);
        // SAFETY: as in `bits`: the bitmaps of an assigned page, `words`
        // words of them.
        let bitmaps = unsafe { &*self.shape.bitmaps.load(Relaxed) };
        bitmaps[..words].iter().any(|[_, pending]| pending.load(Acquire) != 0)
    }

    /// Whether `p` is a live block (for `realloc` and `malloc_usable_size`,
    /// from any thread). Its pending bit is not a verdict (see
    /// [`Self::free`]): a block another thread is freeing is still live, and
    /// `realloc`'s free of it is then judged as any free.
    pub fn check_live(&self, p: *mut u8) -> Result<(), BadBlock> {
        let Some(index) = self.index(p as usize) else {
            return Err(BadBlock::Invalid);
        };
        let (live, _, bit) = self.bits(index);
        if live.load(Relaxed) & bit == 0 { Err(self.why_not_live(p)) } else { Ok(()) }
    }

    /// The block index of the address `p`, if it is a block boundary of this
    /// page. Offsets are below 2^16 and block sizes below 2^15, so with
    /// c = ceil(2^32 / size), `offset * c` holds the quotient in its high
    /// 32 bits and its low 32 bits are below c exactly when the division is
    /// exact (Lemire, Kaser and Kurz, "Faster remainder by direct
    /// computation", 2019; checked for every class and offset by a test).
    #[inline(always)]
    fn index(&self, p: usize) -> Option<usize> {
        // Not bounded by the block area: a boundary in the page's tail (past
        // the last block) has its live bit clear, never set. A free page has
        // c = 0, which no product is below.
        let offset = p.wrapping_sub(self.start());
        let c = self.shape.reciprocal.load(Relaxed);
        // Wrapping: for offsets past the page the product is not used.
        let product = (offset as u64).wrapping_mul(c as u64);
        (offset < PAGE_SIZE && (product as u32) < c).then_some((product >> 32) as usize)
    }

    /// The words of block `index`'s live and pending bits, and its bit.
    #[inline(always)]
    fn bits(&self, index: usize) -> (&AtomicUsize, &AtomicUsize, usize) {
        let bits = usize::BITS as usize;
        // SAFETY: the bitmaps of an assigned page are in its segment's
        // header; index < blocks per page <= BITMAP_WORDS * bits.
        let [live, pending] = unsafe { (*self.shape.bitmaps.load(Relaxed)).get_unchecked(index / bits) };
        (live, pending, 1 << (index % bits))
    }

    /// Sets the live bit of block `index` if both its live and pending bits
    /// are clear; false otherwise.
    #[inline(always)]
    fn set_live_if_free(&self, index: usize) -> bool {
        let (word, pending, _) = self.bits(index);
        let shift = index % usize::BITS as usize;
        let w = word.load(Relaxed);
        if ((w | pending.load(Relaxed)) >> shift) & 1 != 0 {
            return false;
        }
        word.store(w | 1 << shift, Relaxed);
        true
    }

    /// [`Self::try_pop`] refused the free list's first block: a live one
    /// (the link that led to it was overwritten), or one whose pending bit
    /// is set (another thread's free of it is posted, or is a claim about to
    /// back out). The latter leaves the free list, counted as in use (the
    /// page must not look empty, nor full with a block missing, while it is
    /// aside), and is returned for the caller to set aside. Found again from
    /// the list, not passed from the fast path: keeping the block or its
    /// index across it cost `malloc` a stack frame (5 instructions a pair).
    #[cold]
    #[inline(never)]
    pub fn refuse(&self) -> *mut Block {
        let block = self.local.free.get();
        let index = self.index(block as usize).unwrap_or(0);
        let (live, _, bit) = self.bits(index);
        if live.load(Relaxed) & bit != 0 {
            error::corrupted(block.cast(), b"free block overwritten");
        }
        // SAFETY: a block of this page, not live: ours to read.
        self.local.free.set(unsafe { Block::next(block, Link::Free(self.local.key.get())) });
        self.local.countdown.set(self.local.countdown.get() + 1);
        block
    }

    /// A block set aside (refused by [`Self::try_pop`], or freed by the
    /// owner while its pending bit was set: [`Self::free`]'s `Claimed`), once
    /// its pending bit is clear: the claim that set it was taken back or
    /// backed out, so the block is free now and goes on the free list:
    /// `Some` with whether it was live (freed by the owner, not refused) and
    /// whether the page's countdown ended. `None` while the bit is still
    /// set: it stays aside. An address that is not a block of the page means
    /// the caller's list was overwritten: the process aborts.
    ///
    /// # Safety
    /// The caller owns the page's heap and set `block`, a block of this
    /// page, aside.
    pub unsafe fn settle(&self, block: *mut Block) -> Option<(bool, bool)> {
        let Some(index) = self.index(block as usize) else {
            error::corrupted(block.cast(), b"link of a block set aside overwritten");
        };
        let (live, pending, bit) = self.bits(index);
        if pending.load(Relaxed) & bit != 0 {
            return None;
        }
        let w = live.load(Relaxed);
        live.store(w & !bit, Relaxed);
        Some((w & bit != 0, self.push(block)))
    }

    /// The key of the page's free list, for the owner's list of blocks set
    /// aside, which links through the same word.
    pub fn key(&self) -> usize {
        self.local.key.get()
    }

    /// Sets the live bit of a fresh block (never handed out: both its bits
    /// are clear).
    #[inline(always)]
    fn set_live(&self, index: usize) {
        let (word, _, _) = self.bits(index);
        let w = word.load(Relaxed);
        debug_assert_eq!((w >> (index % usize::BITS as usize)) & 1, 0);
        word.store(w | 1 << (index % usize::BITS as usize), Relaxed);
    }

    /// Why a block boundary whose live bit is clear is not live.
    #[cold]
    fn why_not_live(&self, p: *mut u8) -> BadBlock {
        if (p as usize) < self.shape.bump.load(Relaxed) { BadBlock::DoubleFree } else { BadBlock::Invalid }
    }

    fn start(&self) -> usize {
        self.shape.start.load(Relaxed)
    }

    /// The block size of this page's class (0 for a free page).
    pub fn block_size(&self) -> usize {
        self.shape.block_size.load(Relaxed) as usize
    }

    pub fn class(&self) -> usize {
        self.local.class.get() as usize
    }

    /// Blocks handed out and not freed.
    pub fn used(&self) -> usize {
        if self.local.full.get() { self.capacity() } else { (self.local.countdown.get() - self.slack()) as usize }
    }

    /// What the countdown counts beyond the blocks out (not while full).
    fn slack(&self) -> u32 {
        if self.local.in_ring.get() { RETAINED_SLACK } else { 0 }
    }

    /// Whether the page is off its class queue because it had no free block.
    pub fn is_full(&self) -> bool {
        self.local.full.get()
    }

    /// Takes the page off its queue as full: the next free that reaches it
    /// ends the countdown.
    pub fn set_full(&self) {
        debug_assert_eq!(self.used(), self.capacity());
        self.local.countdown.set(1);
        self.local.full.set(true);
    }

    /// The countdown ended on a full page: one block came back.
    pub fn clear_full(&self) {
        self.local.countdown.set(self.capacity() as u32 - 1 + self.slack());
        self.local.full.set(false);
    }

    /// Whether the page sits in its heap's ring of recently emptied pages.
    pub fn in_ring(&self) -> bool {
        self.local.in_ring.get()
    }

    /// Puts the page in the ring (when it emptied) or takes it out; in the
    /// ring, its emptying again ends no countdown (see [`RETAINED_SLACK`]).
    pub fn set_in_ring(&self, in_ring: bool) {
        if in_ring == self.in_ring() {
            return;
        }
        let used = self.used();
        self.local.in_ring.set(in_ring);
        if !self.local.full.get() {
            self.local.countdown.set(used as u32 + self.slack());
        }
    }

    /// Neighbours in the heap's queue of the same class.
    pub fn links(&self) -> (*mut Page, *mut Page) {
        (self.local.prev.get(), self.local.next.get())
    }

    pub fn set_links(&self, prev: *mut Page, next: *mut Page) {
        self.local.prev.set(prev);
        self.local.next.set(next);
    }

    pub fn set_prev(&self, prev: *mut Page) {
        self.local.prev.set(prev);
    }

    pub fn set_next(&self, next: *mut Page) {
        self.local.next.set(next);
    }

    /// Assigns the page to `class` with blocks from `start` to `area_end`
    /// (the page's bitmaps are all clear: a page is released only when empty,
    /// and its pending bits are cleared as its owner takes blocks back).
    pub(super) fn assign(&self, class: usize, start: usize, area_end: usize, bitmaps: *mut Bitmaps) {
        let size = class_size(class);
        self.local.free.set(null_mut());
        self.local.key.set(super::block::page_key());
        self.local.countdown.set(0);
        self.local.full.set(false);
        self.local.in_ring.set(false);
        self.local.class.set(class as u8);
        self.local.next.set(null_mut());
        self.local.prev.set(null_mut());
        self.shape.start.store(start, Relaxed);
        self.shape.bump.store(start, Relaxed);
        self.local.end.set(start + (area_end - start) / size * size);
        self.shape.reciprocal.store((1u64 << 32).div_ceil(size as u64) as u32, Relaxed);
        self.shape.bitmaps.store(bitmaps, Relaxed);
        self.shape.block_size.store(size as u32, Relaxed);
    }

    /// Makes every pointer into the page fail validation (the page is free).
    pub(super) fn unassign(&self) {
        self.shape.reciprocal.store(0, Relaxed);
        self.shape.block_size.store(0, Relaxed);
        self.shape.bump.store(0, Relaxed);
    }

    /// Secure mode: the fresh blocks go on the free list in the order of
    /// `order` (block indices), none of them live yet.
    pub(super) fn push_fresh(&self, order: impl Iterator<Item = usize>) {
        let (start, size) = (self.start(), self.block_size());
        for i in order {
            let block = (start + i * size) as *mut Block;
            // SAFETY: the block lies in this fresh page, which no one uses yet.
            unsafe { Block::link(block, Link::Free(self.local.key.get()), self.local.free.get()) };
            self.local.free.set(block);
        }
        self.shape.bump.store(self.local.end.get(), Relaxed);
    }

    /// Blocks of the page's class that fit its area.
    pub fn capacity(&self) -> usize {
        (self.local.end.get() - self.start()) / self.block_size()
    }
}

/// Asks for the next block's line ahead of the allocation that will pop it
/// (an invalid address is harmless: a prefetch never faults).
#[inline(always)]
fn prefetch(p: *const Block) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch has no architectural effect.
    unsafe {
        core::arch::x86_64::_mm_prefetch(p.cast(), core::arch::x86_64::_MM_HINT_T0)
    };
    #[cfg(target_arch = "x86")]
    // SAFETY: as above (every i686 target has SSE).
    unsafe {
        core::arch::x86::_mm_prefetch(p.cast(), core::arch::x86::_MM_HINT_T0)
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "x86")))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::small::segment::SmallSegment;
    use crate::small::size_class::{class_of, classes};

    /// The owner's free and another thread's claim of block `a` in the same
    /// instant, as they interleave: the owner reads the pending bit clear,
    /// the other thread claims the block and chains it (to `chained`), then
    /// the owner clears the live bit and links the block on its free list.
    fn race(page: &Page, a: *mut u8, chained: *mut u8) {
        let posted = page.claim_foreign(a).unwrap();
        // SAFETY: the claim made the block the caller's to chain.
        unsafe { Block::link(posted, Link::Posted, chained.cast()) };
        let (live, _, bit) = page.bits(page.index(a as usize).unwrap());
        live.fetch_and(!bit, Relaxed);
        page.push(a.cast());
        // SAFETY: the block is of the page; both links are ours to read.
        let chain = unsafe { Block::next(a.cast(), Link::Posted) };
        assert_eq!(chain, chained.cast(), "the posted chain is whole");
    }

    #[test]
    fn a_block_freed_by_its_owner_and_another_thread_at_once_has_one_owner() {
        let seg = SmallSegment::create(null_mut()).unwrap();
        // SAFETY: the segment is ours for the test, until retired below.
        let s = unsafe { seg.as_ref() };
        for drain_first in [true, false] {
            let page = s.take_page(class_of(48));
            let (a, b) = (page.pop(), page.pop());
            race(page, a, b);
            // SAFETY: the test owns the page; the blocks lie in it.
            unsafe {
                if drain_first {
                    assert_eq!(page.take_back(a), Err(BadBlock::DoubleFree));
                } else {
                    let Popped::Refused = page.try_pop() else {
                        panic!("a block in a posted chain is handed out");
                    };
                    let refused = page.refuse();
                    assert_eq!(refused, a.cast());
                    assert_eq!(page.used(), 2, "a block set aside counts as in use");
                    assert_eq!(page.settle(refused), None, "aside while its free is posted");
                    assert_eq!(page.take_back(a), Err(BadBlock::DoubleFree));
                    assert_eq!(page.settle(refused), Some((false, false)), "back on the free list");
                }
                let c = page.pop();
                assert_eq!(c, a, "on the free list, once");
                let d = page.pop();
                assert_ne!(d, a, "nor handed out twice");
                assert_eq!(page.free(b), Ok(false));
                assert_eq!(page.free(c), Ok(false));
                assert_eq!(page.free(d), Ok(true), "the page is empty");
            }
            assert!(!page.has_pending());
            // SAFETY: the page is empty.
            unsafe { s.release_page(page) };
        }
        assert!(s.is_unused());
        // SAFETY: nothing uses the segment any more.
        unsafe { SmallSegment::retire(seg) };
    }

    /// A claim that read block `a` live before the owner's free of it sets
    /// the pending bit, then sees the block free and backs out. Meanwhile
    /// the owner may hand `a` out and free it again (its free finds the bit
    /// set: `Claimed`), or meet it on its free list (refused). Either way
    /// the block is set aside, and freed once the bit is clear: no valid
    /// free is lost, no block goes missing.
    #[test]
    fn a_claim_backing_out_loses_no_block() {
        let seg = SmallSegment::create(null_mut()).unwrap();
        // SAFETY: the segment is ours for the test, until retired below.
        let s = unsafe { seg.as_ref() };
        let page = s.take_page(class_of(48));
        let a = page.pop();
        let (_, pending, bit) = page.bits(page.index(a as usize).unwrap());
        // SAFETY: the test owns the page; `a` lies in it.
        unsafe {
            // The owner's free while the claim holds the bit.
            pending.fetch_or(bit, Relaxed);
            assert_eq!(page.free(a), Err(BadBlock::Claimed));
            assert_eq!(page.used(), 1, "still live");
            assert_eq!(page.settle(a.cast()), None);
            pending.fetch_and(!bit, Relaxed);
            assert_eq!(page.settle(a.cast()), Some((true, true)), "freed: the page is empty");
            assert_eq!(page.used(), 0);

            // The owner's allocation while the claim holds the bit.
            assert_eq!(page.pop(), a, "on the free list");
            assert_eq!(page.free(a), Ok(true));
            pending.fetch_or(bit, Relaxed);
            let Popped::Refused = page.try_pop() else { panic!("a pending block handed out") };
            let refused = page.refuse();
            assert_eq!(refused, a.cast());
            assert_eq!(page.used(), 1, "counted while aside");
            pending.fetch_and(!bit, Relaxed);
            assert_eq!(page.settle(refused), Some((false, true)), "back, and the page is empty");
            assert_eq!(page.pop(), a, "handed out again");
            assert_eq!(page.free(a), Ok(true));
        }
        // SAFETY: the page is empty.
        unsafe { s.release_page(page) };
        // SAFETY: nothing uses the segment any more.
        unsafe { SmallSegment::retire(seg) };
    }

    #[test]
    fn one_multiply_gives_index_and_exactness() {
        for class in classes() {
            let size = class_size(class) as u64;
            let c = (1u64 << 32).div_ceil(size);
            for offset in 0..PAGE_SIZE as u64 {
                let product = offset * c;
                assert_eq!(product >> 32, offset / size, "size {size} offset {offset}");
                assert_eq!((product as u32 as u64) < c, offset % size == 0, "size {size} offset {offset}");
            }
        }
    }
}
