//! Small pages: the slabs. A page of [`PAGE_SIZE`] bytes serves one size
//! class; its blocks start at the page's address, so a block's index is
//! `offset / size` and its address `base + index * size`.
//!
//! Fresh blocks are handed out in order from `bumped` (the blocks ever
//! handed out are `0..bumped`), so the memory of blocks nobody asked for is
//! never written and never becomes resident. Freed blocks go on a free list
//! linked through their first word by **index**, encoded with the page's
//! key (see [`super::block`]); a link is accepted only if it is below
//! `bumped`, one compare that is both the empty test (the list ends in
//! [`EMPTY`]) and the check that an overwritten link cannot point outside
//! the blocks ever handed out.
//!
//! Whether a block is live is one bit out of line (see [`super::bitmaps`]):
//! `free` tests and clears it, the allocation sets it, and a block whose bit
//! is set is never handed out, so no corrupted list can give one block two
//! owners. Another thread's free claims the block's pending bit and then
//! sets its posted bit; the owner takes posted blocks back a word at a time
//! ([`Page::take_posted`]) without reading them.
//!
//! Page 0 of a segment holds the segment's header at its start: the blocks
//! that overlap it (`0..first`) have their live and pending bits set for
//! good, so no path hands them out or frees them, and the reports say why.

use super::bitmaps::{self, BITS, Bitmaps, Pair, clear, indices, mask, set, test, word};
use super::block;
use super::size_class::class_size;
use crate::diag::counters::LocalCounter;
use crate::diag::error::{self, BadBlock};
use crate::segment::SEGMENT_SIZE;
use core::cell::Cell;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU32, AtomicUsize, Ordering::*, fence};

/// 64 KiB: the largest class (16 KiB) still gets four blocks, the smallest
/// (8 bytes) 8192; and a class a thread touches only once reserves no more than
/// this. mimalloc uses the same size for its small pages.
pub const PAGE_SHIFT: u32 = 16;
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;
pub const PAGES_PER_SEGMENT: usize = SEGMENT_SIZE / PAGE_SIZE;

/// The end of a free list (and of a list of blocks set aside): above every
/// index, so the pop's one compare sends it to the slow path.
pub const EMPTY: u32 = u32::MAX;

/// Descriptor of one small page: two cache lines, so that the fields other
/// threads read to validate a pointer (`shape`) never share a line with the
/// fields the owner writes on every allocation and free (`local`).
#[repr(C, align(64))]
pub struct Page {
    shape: Shape,
    local: Local,
}

/// Read by any thread (relaxed atomics: plain loads on x86); written when
/// the page is assigned to a class or given back, but for the two fields of
/// the heap's stack of announced pages, which other threads write.
#[repr(C, align(64))]
struct Shape {
    /// The page's address, where its blocks start; 0 while the page is free.
    base: AtomicUsize,
    /// The page's bitmaps, and their words per bitmap.
    pairs: AtomicPtr<Pair>,
    words: AtomicU32,
    /// Block size; 0 while the page belongs to no class. A word, though
    /// below 2^15: `malloc` multiplies by it from memory.
    size: AtomicUsize,
    /// ceil(2^32 / size): the block index of an offset, and whether the
    /// offset is a block boundary, from one multiply (see `index`); 0, which
    /// no product is below, while the page is free. A word, though below
    /// 2^32: on x86_64 `free` multiplies by it from memory.
    reciprocal: AtomicUsize,
    /// Drawn from a process-wide count when the page is assigned and when it
    /// is given back ([`CHANGING`] in between), so that it never takes a
    /// value twice, even across a segment given back and made anew at the
    /// same address: a claim that spans a change backs out (see
    /// [`Page::claim`]), and a reader of the other fields tells a torn read
    /// (see [`Page::view`]).
    generation: AtomicU32,
    /// The first block outside the segment header (0 but on page 0).
    first: AtomicU32,
    class: AtomicU8,
    /// Set from the moment a thread that posted a block here pushes the page
    /// on its heap's stack until the owner takes the stack (or sees the
    /// page's claims still undecided, and keeps it announced).
    announced: AtomicBool,
    /// The next page on the heap's stack of announced pages.
    next_announced: AtomicPtr<Page>,
}

/// Only the thread that owns the page's heap writes these (the statistics
/// read the atomic ones).
#[repr(C, align(64))]
struct Local {
    /// The free list's first block, an index (or [`EMPTY`]).
    head: Cell<u32>,
    /// Blocks `0..bumped` have been handed out at least once.
    bumped: Cell<u32>,
    /// The free list's key, drawn at `assign`.
    key: Cell<u32>,
    /// Blocks handed out and not yet freed, plus [`RETAINED_SLACK`] while
    /// the page is in the heap's ring of emptied pages; while the page is
    /// full (every block out), 1, so that the next free reaches the heap's
    /// slow path through the same countdown that reports an emptied page.
    countdown: AtomicU32,
    /// Blocks handed out since the page was assigned (the statistics' count
    /// of allocations; frees are this minus the blocks in use).
    allocs: LocalCounter,
    /// Blocks that fit the page.
    capacity: Cell<u32>,
    /// Blocks set aside while another thread's free of them is pending
    /// (see [`Page::set_aside`]): a list linked as the free list.
    aside: Cell<u32>,
    full: AtomicBool,
    in_ring: AtomicBool,
    /// Neighbours in the heap's queue of the same class.
    next: Cell<*mut Page>,
    prev: Cell<*mut Page>,
    /// The next page of the heap's list of pages with blocks set aside.
    next_aside: Cell<*mut Page>,
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

const _: () = assert!(size_of::<Page>() == 128 && core::mem::offset_of!(Page, local) == 64);

/// A full page rejoins its queue once this share of its blocks came back
/// (see [`Page::relink_after`]).
const RELINK_SHARE: u32 = 16;

/// What a free by the owner found ([`Page::free`]). No payload: each
/// outcome but the first is a tail call to a cold path of its own, with
/// nothing to set up for it on the fast path.
#[derive(Debug, PartialEq, Eq)]
pub enum Freed {
    /// Freed.
    Done,
    /// Freed, and the page's countdown ended: it emptied, or was full.
    Ended,
    /// Not a block boundary.
    Invalid,
    /// A block boundary whose block is not live (see `why_not_live`).
    NotLive,
    /// A live block whose pending bit is set: another thread's claim, maybe
    /// backing out (see [`Page::free`]).
    Claimed,
}

/// A claim another thread made on a block ([`Page::claim`]), to be
/// posted ([`Page::post`]) once the page is announced: the block's posted
/// word and bit.
pub struct Claim {
    posted: *const AtomicUsize,
    mask: usize,
}

/// What a thread that does not own a page reads of it: its shape at one
/// generation (see [`Page::view`]).
#[derive(Clone, Copy)]
struct View {
    generation: u32,
    reciprocal: usize,
    bitmaps: Bitmaps,
    first: usize,
}

impl View {
    /// The block index of `p`, as [`Page::index`] computes it.
    fn index(&self, p: *mut u8) -> Option<usize> {
        let product = (p as usize & (PAGE_SIZE - 1)) as u64 * self.reciprocal as u64;
        ((product as u32) < self.reciprocal as u32).then_some((product >> 32) as usize)
    }
}

/// The generation of a page being assigned or given back.
const CHANGING: u32 = 0;

/// The last generation drawn (see `Shape::generation`).
static GENERATIONS: AtomicU32 = AtomicU32::new(CHANGING);

/// A generation never drawn before (but after 2^32 page assignments and
/// releases, which a stale claim would have to span to be fooled).
fn next_generation() -> u32 {
    loop {
        let g = GENERATIONS.fetch_add(1, Relaxed).wrapping_add(1);
        if g != CHANGING {
            return g;
        }
    }
}

/// What [`Page::take_posted`] took back.
pub struct Taken {
    /// Blocks freed.
    pub blocks: u32,
    /// Claims not yet posted remain: the page must be looked at again.
    pub undecided: bool,
}

/// The page a heap's tables point to when no page serves: its list is empty
/// and no block was ever handed out, so every allocation from it takes the
/// slow path.
pub static EMPTY_PAGE: EmptyPage = EmptyPage(Page::empty());

#[repr(transparent)]
pub struct EmptyPage(pub Page);

// SAFETY: nothing writes the empty page: it is in no queue and no slot of
// any heap's table by address, and the allocation fast path reads its free
// list (empty) and leaves it for the slow path, which allocates from the
// pages of its queues only.
unsafe impl Sync for EmptyPage {}

impl Page {
    const fn empty() -> Page {
        Page {
            shape: Shape {
                base: AtomicUsize::new(0),
                pairs: AtomicPtr::new(null_mut()),
                words: AtomicU32::new(0),
                size: AtomicUsize::new(0),
                reciprocal: AtomicUsize::new(0),
                generation: AtomicU32::new(CHANGING),
                first: AtomicU32::new(0),
                class: AtomicU8::new(0),
                announced: AtomicBool::new(false),
                next_announced: AtomicPtr::new(null_mut()),
            },
            local: Local {
                head: Cell::new(EMPTY),
                bumped: Cell::new(0),
                key: Cell::new(0),
                countdown: AtomicU32::new(0),
                allocs: LocalCounter::new(),
                capacity: Cell::new(0),
                aside: Cell::new(EMPTY),
                full: AtomicBool::new(false),
                in_ring: AtomicBool::new(false),
                next: Cell::new(null_mut()),
                prev: Cell::new(null_mut()),
                next_aside: Cell::new(null_mut()),
            },
        }
    }

    /// Whether the page's free list has a block to try: the test before
    /// [`Self::pop`] on the allocation fast path. False for an empty list,
    /// and for a head that an overwritten link made point past the blocks
    /// ever handed out (the slow path tells the two apart).
    #[inline(always)]
    pub fn has_free(&self) -> bool {
        self.local.head.get() < self.local.bumped.get()
    }

    /// Takes the free list's first block: the hot path of every small
    /// allocation, after [`Self::has_free`]. `None` when the block's live or
    /// pending bit is set: the caller takes it off ([`Self::refuse`]).
    #[inline(always)]
    pub fn pop(&self) -> Option<*mut u8> {
        let i = self.local.head.get() as usize;
        let pair = self.pair(i);
        let live = pair.live.load(Relaxed);
        if test(live | pair.pending.load(Relaxed), i) {
            return None;
        }
        // Release: a claim that finds the bit set through bitmaps given to
        // this page after another's also sees that page's generation change
        // (see `claim`). A plain store on x86.
        pair.live.store(set(live, i), Release);
        let block = self.block(i);
        // SAFETY: block `i` is below `bumped` and its live bit was clear: a
        // free block of this page, ours to read.
        let link = unsafe { block::link(block) };
        self.local.head.set(link ^ self.local.key.get());
        self.count_out();
        Some(block)
    }

    /// Hands out the next fresh block, if the page has one (the slow path,
    /// when the free list is empty).
    pub fn bump(&self) -> Option<*mut u8> {
        let i = self.local.bumped.get();
        if i >= self.local.capacity.get() {
            return None;
        }
        self.local.bumped.set(i + 1);
        let pair = self.pair(i as usize);
        debug_assert!(!test(pair.live.load(Relaxed) | pair.pending.load(Relaxed), i as usize));
        pair.live.store(set(pair.live.load(Relaxed), i as usize), Release);
        self.count_out();
        Some(self.block(i as usize))
    }

    /// Called when [`Self::has_free`] said no: a head that is not the end of
    /// the list points past the blocks ever handed out, so a link was
    /// overwritten after its block was freed. The process aborts rather
    /// than hand out a block that may be live (or lie past the page).
    #[cold]
    pub fn check_head(&self) {
        if self.head_overwritten() {
            error::corrupted(self.block(self.local.head.get() as usize), b"free block overwritten");
        }
    }

    /// See [`Self::check_head`].
    fn head_overwritten(&self) -> bool {
        !self.has_free() && self.local.head.get() != EMPTY
    }

    /// Frees `p` into this page, for the owner.
    ///
    /// The pending bit is read, and the live bit cleared, without an atomic
    /// read-modify-write (one would cost the fast path a locked instruction):
    /// another thread's free of the same block in the same instant can claim
    /// it too. The block is then on this page's free list and posted at
    /// once; [`Self::pop`] never hands out a block whose pending bit is set,
    /// and [`Self::take_posted`] reports the double free, so the block has
    /// one owner whatever the order.
    ///
    /// A block whose pending bit is set is [`Freed::Claimed`], not yet a double
    /// free: the bit may belong to a claim that will back out (it read the
    /// block live before this thread's earlier free of it, and our store of
    /// the live bit since, still in this CPU's store buffer, may not reach
    /// it). The caller waits for the bit to clear (then this free takes
    /// effect), else reports this free and sets the block aside, still
    /// live, until the bit's fate is known: see [`Self::settle_aside`].
    ///
    /// # Safety
    /// The caller owns the page's heap; `p` lies in this page.
    #[inline(always)]
    pub unsafe fn free(&self, p: *mut u8) -> Freed {
        let Some(i) = self.index(p) else {
            return Freed::Invalid;
        };
        let pair = self.pair(i);
        let live = pair.live.load(Relaxed);
        if !test(live, i) {
            return Freed::NotLive;
        }
        if test(pair.pending.load(Relaxed), i) {
            return Freed::Claimed;
        }
        pair.live.store(clear(live, i), Relaxed);
        // SAFETY: the live bit was set and is now clear: the block is ours.
        unsafe { block::set_link(p, self.local.head.get() ^ self.local.key.get()) };
        self.local.head.set(i as u32);
        if self.count_back() { Freed::Ended } else { Freed::Done }
    }

    /// One more block handed out: the count of blocks in use and of
    /// allocations, each one instruction to memory (see `LocalCounter`).
    #[inline(always)]
    fn count_out(&self) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the page's counts (`offset_of!`), aligned; only the owner,
        // the calling thread, writes them, so the unlocked read-modify-write
        // loses nothing, and an aligned word access is single-copy atomic
        // for the statistics' readers.
        unsafe {
            core::arch::asm!(
                "inc dword ptr [{page} + {countdown}]",
                "inc qword ptr [{page} + {allocs}]",
                page = in(reg) self,
                countdown = const core::mem::offset_of!(Page, local.countdown),
                allocs = const core::mem::offset_of!(Page, local.allocs),
                options(nostack),
            );
        }
        #[cfg(target_arch = "x86")]
        // SAFETY: as above; `allocs` starts with its low word.
        unsafe {
            core::arch::asm!(
                "inc dword ptr [{page} + {countdown}]",
                "add dword ptr [{page} + {allocs}], 1",
                "jc {carry}",
                page = in(reg) self,
                countdown = const core::mem::offset_of!(Page, local.countdown),
                allocs = const core::mem::offset_of!(Page, local.allocs),
                carry = label { self.local.allocs.carried() },
                options(nostack),
            );
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "x86")))]
        {
            self.local.countdown.store(self.local.countdown.load(Relaxed) + 1, Relaxed);
            self.local.allocs.inc();
        }
    }

    /// One block fewer in use; true when the countdown ended (`dec`, `jz`).
    #[inline(always)]
    fn count_back(&self) -> bool {
        #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
        {
            // SAFETY: as in `count_out`.
            unsafe {
                core::arch::asm!(
                    "dec dword ptr [{page} + {countdown}]",
                    "jz {ended}",
                    page = in(reg) self,
                    countdown = const core::mem::offset_of!(Page, local.countdown),
                    ended = label { return true; },
                    options(nostack),
                );
            }
            false
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "x86")))]
        {
            let left = self.local.countdown.load(Relaxed) - 1;
            self.local.countdown.store(left, Relaxed);
            left == 0
        }
    }

    /// Claims `p` for a free by a thread that does not own the page: it must
    /// be a live block boundary whose pending bit this call sets (another
    /// thread that frees the same block at once finds it set). Safe to call
    /// from any thread, whatever the page's state: the descriptor lies in a
    /// header that stays mapped, the bitmaps in memory that does.
    ///
    /// The claim is decided after the bit is set: the block must still be
    /// live (the owner may have taken back another thread's free of it
    /// meanwhile: it clears the live bit before it releases the pending bit,
    /// see `take_posted`), and the page's generation unchanged (the page may
    /// have been given back and its bitmaps given to another page, whose
    /// bit this is). Else the claim backs out: it clears the bit, and the
    /// free is reported. A claim that stands must be announced to the owner
    /// and then posted ([`Self::post`]).
    pub fn claim(&self, p: *mut u8) -> Result<Claim, BadBlock> {
        self.claim_in(self.view().ok_or(BadBlock::Invalid)?, p)
    }

    /// [`Self::claim`] with the page's shape as read before (which a test
    /// can make stale).
    fn claim_in(&self, view: View, p: *mut u8) -> Result<Claim, BadBlock> {
        let i = view.index(p).ok_or(BadBlock::Invalid)?;
        let pair = view.bitmaps.pair(word(i));
        if !test(pair.live.load(Acquire), i) {
            return Err(self.why_not_live(i));
        }
        // SeqCst: ordered before the announcement's load (see `post`), and
        // after a release's change of the generation (see `unassign`).
        if test(pair.pending.fetch_or(mask(i), SeqCst), i) {
            return Err(if i < view.first { BadBlock::Invalid } else { BadBlock::DoubleFree });
        }
        if !test(pair.live.load(Acquire), i) || self.shape.generation.load(SeqCst) != view.generation {
            // SeqCst: before the caller's look at its heap's ownership (a
            // thread giving the heap up may have left this claim to it:
            // see `Heap::abandon`).
            pair.pending.fetch_and(!mask(i), SeqCst);
            return Err(BadBlock::DoubleFree);
        }
        Ok(Claim { posted: view.bitmaps.posted(word(i)), mask: mask(i) })
    }

    /// Posts a claimed block: from here the owner may take it back. The
    /// claiming thread announced the page first (see
    /// [`Self::announce`]), and touches the page no more.
    pub fn post(&self, claim: Claim) {
        // SAFETY: the claim's bitmaps are the page's (the claim stands, so
        // the page cannot be given back) and never unmapped.
        unsafe { &*claim.posted }.fetch_or(claim.mask, SeqCst);
    }

    /// The page's shape as another thread may use it: the fields read
    /// between two reads of the same generation, not [`CHANGING`] (the
    /// writer marks a change before it writes the fields, and draws the new
    /// generation after: a seqlock). None while the page changes.
    fn view(&self) -> Option<View> {
        let generation = self.shape.generation.load(Acquire);
        if generation == CHANGING {
            return None;
        }
        let view = View {
            generation,
            reciprocal: self.shape.reciprocal.load(Relaxed),
            bitmaps: self.bitmaps(),
            first: self.shape.first.load(Relaxed) as usize,
        };
        fence(Acquire);
        (self.shape.generation.load(Relaxed) == generation).then_some(view)
    }

    /// Marks the page announced; true if it was not (the caller then pushes
    /// it on its heap's stack). A plain load first: the page is usually
    /// announced already, and the owner's stores of `false` pair with it
    /// through the claim's SeqCst `or` (see `take_posted`).
    pub fn announce(&self) -> bool {
        !self.shape.announced.load(SeqCst) && !self.shape.announced.swap(true, SeqCst)
    }

    /// The link of the heap's stack of announced pages.
    pub fn next_announced(&self) -> *mut Page {
        self.shape.next_announced.load(Relaxed)
    }

    pub fn set_next_announced(&self, next: *mut Page) {
        self.shape.next_announced.store(next, Relaxed);
    }

    /// Whether a block of the page is posted and not yet taken back (for a
    /// thread that gave the heap up a moment ago: see `Heap::abandon`).
    pub fn has_posted(&self) -> bool {
        let b = self.bitmaps();
        (0..b.words()).any(|j| b.posted(j).load(SeqCst) != 0)
    }

    pub fn is_announced(&self) -> bool {
        self.shape.announced.load(SeqCst)
    }

    /// Takes back the blocks other threads posted (the owner, after taking
    /// the page off its heap's stack of announced pages), a bitmap word at a
    /// time, reading no block: a posted block that is live is freed (its
    /// live bit cleared and the block linked before its pending bit is
    /// released, so a claim of it from then on sees it free); one that is
    /// not was also freed by the owner in the same instant (see
    /// [`Self::free`]), and `stale` is called with it, a double free.
    /// Blocks set aside are handled by the caller first
    /// ([`Self::unaside_posted`]).
    ///
    /// The page stops being announced before its words are read: a thread
    /// posting after the read finds it unannounced and pushes it again
    /// (SeqCst on both sides). A pending bit without its posted bit after
    /// the read is a claim still deciding, or posted after the read:
    /// `undecided` tells the caller to announce the page again.
    ///
    /// # Safety
    /// The caller owns the page's heap; the page is assigned.
    pub unsafe fn take_posted(&self, mut stale: impl FnMut(*mut u8)) -> Taken {
        self.shape.announced.store(false, SeqCst);
        let b = self.bitmaps();
        let (mut blocks, mut undecided) = (0, false);
        // Only blocks ever handed out can be claimed (a claim needs the live
        // bit): the words past them are not read, so a take-back costs what
        // the page has handed out, not its size.
        for j in 0..(self.local.bumped.get() as usize).div_ceil(BITS).min(b.words()) {
            let posted = b.posted(j);
            let pair = b.pair(j);
            if posted.load(Relaxed) != 0 {
                let p = posted.swap(0, SeqCst);
                let live = pair.live.load(Relaxed);
                let take = p & live;
                pair.live.store(live & !take, Relaxed);
                for i in indices(j, take) {
                    self.link(i);
                }
                blocks += take.count_ones();
                pair.pending.fetch_and(!p, Release);
                indices(j, p & !live).for_each(|i| stale(self.block(i)));
            }
            undecided |= self.claims_in(pair, j) != 0;
        }
        Taken { blocks, undecided }
    }

    /// Pending bits of word `j` that are claims (not the header's blocks).
    fn claims_in(&self, pair: &Pair, j: usize) -> usize {
        pair.pending.load(SeqCst) & !header_bits(self.first() as usize, j)
    }

    /// Links block `i` on the free list without counting it (the caller
    /// counts what it took back at once).
    fn link(&self, i: usize) {
        let p = self.block(i);
        // SAFETY: the caller cleared the block's live bit: it is ours.
        unsafe { block::set_link(p, self.local.head.get() ^ self.local.key.get()) };
        self.local.head.set(i as u32);
    }

    /// `n` blocks came back at once (taken back from other threads, or set
    /// aside and settled): true when the countdown ended (the page emptied,
    /// or, full, got its [`Self::relink_after`] blocks back; then the
    /// countdown may have passed zero, see [`Self::blocks_back`]).
    pub fn returned(&self, n: u32) -> bool {
        if n == 0 {
            return false;
        }
        let left = self.local.countdown.load(Relaxed);
        self.local.countdown.store(left.wrapping_sub(n), Relaxed);
        left <= n
    }

    /// Whether any block of the page is claimed and not yet taken back, or
    /// the page is announced (linked on its heap's stack of announced pages
    /// through this descriptor). A claimed block stays live until then, and
    /// its page's bitmaps may still be written by the claimer: the page must
    /// not be given back, even if it looks empty. Called only when the page
    /// is to be given back.
    pub fn has_pending(&self) -> bool {
        self.is_announced() || self.has_claims()
    }

    /// Whether a pending bit is set (a claim not yet taken back, or
    /// deciding), but for the header's blocks.
    pub fn has_claims(&self) -> bool {
        let b = self.bitmaps();
        (0..b.words()).any(|j| self.claims_in(b.pair(j), j) != 0)
    }

    /// Whether `p` is a live block (for `realloc` and `malloc_usable_size`,
    /// from any thread). Its pending bit is not a verdict (see
    /// [`Self::free`]): a block another thread is freeing is still live, and
    /// `realloc`'s free of it is then judged as any free.
    pub fn check_live(&self, p: *mut u8) -> Result<(), BadBlock> {
        let view = self.view().ok_or(BadBlock::Invalid)?;
        match view.index(p) {
            Some(i) if i >= view.first => {
                if test(view.bitmaps.pair(word(i)).live.load(Acquire), i) {
                    Ok(())
                } else {
                    Err(self.why_not_live(i))
                }
            }
            _ => Err(BadBlock::Invalid),
        }
    }

    /// The block index of `p` (a pointer into this page), if it is a block
    /// boundary. Offsets are below 2^16 and block sizes below 2^15, so with
    /// c = ceil(2^32 / size), `offset * c` holds the quotient in its high
    /// 32 bits and its low 32 bits are below c exactly when the division is
    /// exact (Lemire, Kaser and Kurz, "Faster remainder by direct
    /// computation", 2019; checked for every class and offset by a test).
    /// Not bounded by the blocks: an index past them, in the page's tail,
    /// has its bits clear (the bitmaps cover every offset).
    #[inline(always)]
    fn index(&self, p: *mut u8) -> Option<usize> {
        let offset = p as usize & (PAGE_SIZE - 1);
        #[cfg(target_arch = "x86_64")]
        {
            // The multiply and the compare from memory: LLVM loads the
            // relaxed atomic into a register first, one instruction more
            // on `free`'s path.
            let mut product = offset;
            // SAFETY: reads the page's reciprocal (`offset_of!`), an aligned
            // word, as the relaxed load would; its low half (little-endian)
            // is the 32-bit value the product's low half is compared with.
            unsafe {
                core::arch::asm!(
                    "imul {x}, [{page} + {c}]",
                    x = inout(reg) product,
                    page = in(reg) self,
                    c = const core::mem::offset_of!(Page, shape.reciprocal),
                    options(pure, readonly, nostack),
                );
                core::arch::asm!(
                    "cmp {x:e}, [{page} + {c}]",
                    "jae {no}",
                    x = in(reg) product,
                    page = in(reg) self,
                    c = const core::mem::offset_of!(Page, shape.reciprocal),
                    no = label { return None; },
                    options(readonly, nostack),
                );
            }
            Some(product >> 32)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let c = self.shape.reciprocal.load(Relaxed) as u64;
            let product = offset as u64 * c;
            ((product as u32) < c as u32).then_some((product >> 32) as usize)
        }
    }

    /// The live and pending words of block `i` (an index an offset in the
    /// page gives).
    #[inline(always)]
    fn pair(&self, i: usize) -> &Pair {
        // SAFETY: as in `bitmaps`; the bitmaps have a bit for every index an
        // offset gives, and the caller's index came from one.
        unsafe { bitmaps::pair(self.shape.pairs.load(Relaxed), word(i)) }
    }

    #[inline(always)]
    fn bitmaps(&self) -> Bitmaps {
        // SAFETY: `assign` stored the page's bitmaps from its heap's arena,
        // which never unmaps them; a free page keeps its last ones (or
        // null, with a reciprocal of 0, so that no index is ever computed).
        unsafe { Bitmaps::new(self.shape.pairs.load(Relaxed), self.shape.words.load(Relaxed) as usize) }
    }

    /// The address of block `i`: on x86 a multiply and an add from
    /// memory (LLVM does not fold relaxed atomic loads into arithmetic: it
    /// loads both fields first, two instructions more on `malloc`'s path).
    #[inline(always)]
    fn block(&self, mut i: usize) -> *mut u8 {
        #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
        // SAFETY: reads the page's `size` and `base` words (`offset_of!`),
        // aligned words, as the relaxed loads would.
        unsafe {
            core::arch::asm!(
                "imul {i}, [{page} + {size}]",
                "add {i}, [{page} + {base}]",
                i = inout(reg) i,
                page = in(reg) self,
                size = const core::mem::offset_of!(Page, shape.size),
                base = const core::mem::offset_of!(Page, shape.base),
                options(pure, readonly, nostack),
            );
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "x86")))]
        {
            i = self.shape.base.load(Relaxed) + i * self.block_size();
        }
        i as *mut u8
    }

    /// [`Self::pop`] refused the free list's first block: a live one (the
    /// link that led to it was overwritten: the process aborts), or one
    /// whose pending bit is set (another thread's free of it is posted, or
    /// is a claim about to back out). The latter leaves the free list,
    /// counted as in use (the page must not look empty, nor full with a
    /// block missing, while it is aside), and is set aside.
    #[cold]
    #[inline(never)]
    pub fn refuse(&self) {
        let i = self.local.head.get() as usize;
        let live = self.bitmaps().pair(word(i)).live.load(Relaxed);
        if test(live, i) {
            error::corrupted(self.block(i), b"free block overwritten");
        }
        // SAFETY: a block of this page below `bumped`, not live: ours.
        self.local.head.set(unsafe { block::link(self.block(i)) } ^ self.local.key.get());
        self.local.countdown.store(self.local.countdown.load(Relaxed) + 1, Relaxed);
        self.aside(i);
    }

    /// Keeps the block at `p`, whose pending bit is set, off every list of
    /// the page until the bit clears ([`Self::settle_aside`]): a block
    /// another thread freed in the same instant as the owner (posted: the
    /// owner's taking it back clears the bit), or one a claim holds for the
    /// few instructions until it backs out. The page counts the block as in
    /// use meanwhile, so the page stays.
    pub fn set_aside(&self, p: *mut u8) {
        if let Some(i) = self.index(p) {
            self.aside(i);
        }
    }

    fn aside(&self, i: usize) {
        // SAFETY: the block is ours: live (the owner's free of it is
        // reported), or refused off the free list; nothing else links it.
        unsafe { block::set_link(self.block(i), self.local.aside.get() ^ self.local.key.get()) };
        self.local.aside.set(i as u32);
    }

    /// Whether the page has blocks set aside.
    pub fn has_aside(&self) -> bool {
        self.local.aside.get() != EMPTY
    }

    /// Whether the block at `p` is set aside.
    pub fn is_aside(&self, p: *mut u8) -> bool {
        let Some(i) = self.index(p) else { return false };
        let mut b = self.local.aside.get();
        while b != EMPTY && b as usize != i {
            b = self.next_aside(b);
        }
        b != EMPTY
    }

    /// Takes the blocks set aside that are posted and live off the list:
    /// [`Self::take_posted`] is about to free them (their owner's free was
    /// the reported double free; the other thread's is the one that counts).
    pub fn unaside_posted(&self) {
        let mut b = self.local.aside.replace(EMPTY);
        while b != EMPTY {
            let next = self.next_aside(b);
            let i = b as usize;
            let posted = test(self.bitmaps().posted(word(i)).load(Acquire), i);
            if !(posted && test(self.bitmaps().pair(word(i)).live.load(Relaxed), i)) {
                self.aside(i);
            }
            b = next;
        }
    }

    fn next_aside(&self, b: u32) -> u32 {
        if b >= self.local.bumped.get() {
            error::corrupted(self.block(b as usize), b"link of a block set aside overwritten");
        }
        // SAFETY: set aside blocks are ours, and `b` is one of the page's.
        unsafe { block::link(self.block(b as usize)) ^ self.local.key.get() }
    }

    /// Blocks set aside whose pending bit has cleared go back on the free
    /// list: a block the owner's free set aside (live) is freed now, a
    /// refused one (free) is only linked. Returns how many went back.
    pub fn settle_aside(&self) -> u32 {
        let mut b = self.local.aside.replace(EMPTY);
        let mut back = 0;
        while b != EMPTY {
            let next = self.next_aside(b);
            let i = b as usize;
            let pair = self.bitmaps().pair(word(i));
            if test(pair.pending.load(Acquire), i) {
                self.aside(i);
            } else {
                pair.live.store(pair.live.load(Relaxed) & !mask(i), Relaxed);
                self.link(i);
                back += 1;
            }
            b = next;
        }
        back
    }

    /// Why the block at `p` (a boundary), whose live bit is clear, is not
    /// live.
    pub fn why_not(&self, p: *mut u8) -> BadBlock {
        self.index(p).map_or(BadBlock::Invalid, |i| self.why_not_live(i))
    }

    /// Why block `i`, whose live bit is clear, is not live.
    #[cold]
    fn why_not_live(&self, i: usize) -> BadBlock {
        if (i as u32) < self.local_bumped() { BadBlock::DoubleFree } else { BadBlock::Invalid }
    }

    /// `bumped`, read by any thread for a report (a race only misnames a
    /// bad free).
    fn local_bumped(&self) -> u32 {
        // SAFETY: an aligned u32 read is single-copy atomic on every target
        // we build for; a stale value only chooses between two reports.
        unsafe { core::ptr::read_volatile(self.local.bumped.as_ptr()) }
    }

    /// The first block outside the segment header (0 but on page 0).
    pub fn first(&self) -> u32 {
        self.shape.first.load(Relaxed)
    }

    /// Whether `p` is a block boundary in the segment header.
    pub fn in_header(&self, p: *mut u8) -> bool {
        self.index(p).is_some_and(|i| i < self.first() as usize)
    }

    /// The block size of this page's class (0 for a free page).
    #[inline(always)]
    pub fn block_size(&self) -> usize {
        self.shape.size.load(Relaxed)
    }

    pub fn class(&self) -> usize {
        self.shape.class.load(Relaxed) as usize
    }

    /// Allocations made from the page since it was assigned.
    pub fn allocations(&self) -> u64 {
        self.local.allocs.get()
    }

    /// Blocks handed out and not freed.
    pub fn used(&self) -> usize {
        if self.is_full() {
            self.blocks().saturating_sub(self.blocks_back() as usize)
        } else {
            // Saturating: a statistics reader may race the owner.
            (self.local.countdown.load(Relaxed).saturating_sub(self.slack()) as usize).min(self.blocks())
        }
    }

    /// Blocks the page serves.
    pub fn blocks(&self) -> usize {
        (self.local.capacity.get() - self.first()) as usize
    }

    /// What the countdown counts beyond the blocks out (not while full).
    fn slack(&self) -> u32 {
        if self.in_ring() { RETAINED_SLACK } else { 0 }
    }

    /// Whether the page is off its class queue because it had no free block.
    pub fn is_full(&self) -> bool {
        self.local.full.load(Relaxed)
    }

    /// Takes the page off its queue as full: the countdown now counts down
    /// the frees it waits for before it rejoins the queue.
    pub fn set_full(&self) {
        self.local.countdown.store(self.relink_after(), Relaxed);
        self.local.full.store(true, Relaxed);
        debug_assert_eq!(self.used(), self.blocks());
    }

    /// Frees a full page waits for before it serves again: one in
    /// [`RELINK_SHARE`] of its blocks. With one, a page that got a block back
    /// served that one block and was full again, a trip through the slow
    /// path per allocation on a working set replaced at random
    /// (`workset_medium`: one allocation in six).
    pub fn relink_after(&self) -> u32 {
        (self.blocks() as u32 / RELINK_SHARE).max(1)
    }

    /// While full: the blocks that came back since.
    pub fn blocks_back(&self) -> u32 {
        self.relink_after().wrapping_sub(self.local.countdown.load(Relaxed))
    }

    /// The countdown ended on a full page: its blocks back go on serving.
    pub fn clear_full(&self) {
        let back = self.blocks_back();
        self.local.full.store(false, Relaxed);
        self.local.countdown.store(self.blocks() as u32 - back + self.slack(), Relaxed);
    }

    /// Whether the page sits in its heap's ring of recently emptied pages.
    pub fn in_ring(&self) -> bool {
        self.local.in_ring.load(Relaxed)
    }

    /// Puts the page in the ring (when it emptied) or takes it out; in the
    /// ring, its emptying again ends no countdown (see [`RETAINED_SLACK`]).
    pub fn set_in_ring(&self, in_ring: bool) {
        if in_ring == self.in_ring() {
            return;
        }
        let used = self.used();
        self.local.in_ring.store(in_ring, Relaxed);
        if !self.is_full() {
            self.local.countdown.store(used as u32 + self.slack(), Relaxed);
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

    /// The link of the heap's list of pages with blocks set aside.
    pub fn next_aside_page(&self) -> *mut Page {
        self.local.next_aside.get()
    }

    pub fn set_next_aside_page(&self, next: *mut Page) {
        self.local.next_aside.set(next);
    }

    /// The page's address (0 while it is free).
    pub fn base(&self) -> usize {
        self.shape.base.load(Relaxed)
    }

    /// Assigns the page at `base` to `class`, with `bitmaps` (zero, from the
    /// heap's arena, [`bitmaps::bytes`] of the class) and its first `first`
    /// blocks in the segment header.
    pub(super) fn assign(&self, class: usize, base: usize, first: usize, pairs: *mut Pair) {
        let size = class_size(class);
        let words = bitmaps::words(size);
        // SAFETY: the caller's bitmaps are of this class's size.
        let b = unsafe { Bitmaps::new(pairs, words) };
        // The header's blocks: live and pending for good.
        for j in (0..words).take_while(|&j| header_bits(first, j) != 0) {
            b.pair(j).live.store(header_bits(first, j), Relaxed);
            b.pair(j).pending.store(header_bits(first, j), Relaxed);
        }
        let capacity = PAGE_SIZE / size;
        self.local.head.set(EMPTY);
        self.local.bumped.set(first as u32);
        self.local.key.set(block::page_key());
        self.local.countdown.store(0, Relaxed);
        self.local.allocs.reset();
        self.local.capacity.set(capacity as u32);
        self.local.aside.set(EMPTY);
        self.local.full.store(false, Relaxed);
        self.local.in_ring.store(false, Relaxed);
        self.local.next.set(null_mut());
        self.local.prev.set(null_mut());
        self.local.next_aside.set(null_mut());
        self.shape.generation.store(CHANGING, Relaxed);
        fence(Release);
        self.shape.base.store(base, Relaxed);
        self.shape.pairs.store(pairs, Relaxed);
        self.shape.words.store(words as u32, Relaxed);
        self.shape.size.store(size, Relaxed);
        self.shape.class.store(class as u8, Relaxed);
        self.shape.first.store(first as u32, Relaxed);
        self.shape.reciprocal.store((1u64 << 32).div_ceil(size as u64) as usize, Relaxed);
        // Release: a reader that sees the new generation sees the fields.
        self.shape.generation.store(next_generation(), Release);
    }

    /// Starts giving the (empty) page back: changes its generation to
    /// [`CHANGING`], then checks that no claim is pending and the page is
    /// not announced; if one is, the page stays (in a new generation) and
    /// the answer is false. In this order, SeqCst on both sides: a claim
    /// that read the generation before, and sets its pending bit after the
    /// check, sees the change and backs out; else the check sees its bit.
    /// (Checked the other way round, such a claim could stand on the block's
    /// next life, once the page is assigned anew: the loom model
    /// `a_claim_across_the_page_given_back_backs_out` finds that.) An empty
    /// page has no live block, so no claim that stands is lost by the
    /// change.
    pub fn begin_release(&self) -> bool {
        self.shape.generation.store(CHANGING, SeqCst);
        if self.has_pending() {
            self.abort_release();
            return false;
        }
        true
    }

    /// The page stays after [`Self::begin_release`] after all.
    pub fn abort_release(&self) {
        self.shape.generation.store(next_generation(), Release);
    }

    /// Makes every pointer into the page fail validation (the page is
    /// free), and returns its bitmaps, all zero again, for the heap's arena
    /// (after [`Self::begin_release`]).
    pub(super) fn unassign(&self) -> (*mut Pair, usize) {
        debug_assert_eq!(self.shape.generation.load(Relaxed), CHANGING, "begin_release first");
        self.shape.reciprocal.store(0, Relaxed);
        self.shape.size.store(0, Relaxed);
        let b = self.bitmaps();
        let first = self.first() as usize;
        for j in 0..b.words() {
            if header_bits(first, j) != 0 {
                b.pair(j).live.store(0, Relaxed);
                b.pair(j).pending.store(0, Relaxed);
            }
            debug_assert_eq!(b.pair(j).live.load(Relaxed), 0);
            debug_assert_eq!(b.posted(j).load(Relaxed), 0);
        }
        self.shape.base.store(0, Relaxed);
        self.shape.generation.store(next_generation(), Release);
        (self.shape.pairs.load(Relaxed), bitmaps::bytes(class_size(self.class())))
    }

    /// Secure mode: the fresh blocks go on the free list in the order of
    /// `order` (block indices from `first`), none of them live yet.
    pub(super) fn push_fresh(&self, order: impl Iterator<Item = usize>) {
        for i in order {
            self.link(i);
        }
        self.local.bumped.set(self.local.capacity.get());
    }
}

/// The bits of word `j` that belong to blocks `0..first` (the segment
/// header's, on page 0).
fn header_bits(first: usize, j: usize) -> usize {
    match first.saturating_sub(j * BITS) {
        n if n >= BITS => usize::MAX,
        n => (1 << n) - 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::small::arena::Arena;
    use crate::small::segment::SmallSegment;
    use crate::small::size_class::{class_of, classes};
    use core::ptr::NonNull;

    /// A segment and an arena of the test's own, given back at the end.
    struct Fixture {
        seg: NonNull<SmallSegment>,
        arena: Arena,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture { seg: SmallSegment::create(null_mut()).unwrap(), arena: Arena::EMPTY }
        }

        fn page(&mut self, size: usize) -> &'static Page {
            // SAFETY: the segment is the test's until `drop`.
            let s = unsafe { &*self.seg.as_ptr() };
            s.take_page(class_of(size), &mut self.arena).unwrap()
        }

        /// Gives `page` back (it must be empty).
        fn release(&mut self, page: &Page) {
            assert!(page.begin_release(), "no claim pending");
            // SAFETY: the test's page, empty, in no list.
            unsafe { self.seg.as_ref().release_page(page, &mut self.arena) };
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            if std::thread::panicking() {
                return;
            }
            // SAFETY: the test's segment; the test released its pages.
            unsafe {
                assert!(self.seg.as_ref().is_unused());
                SmallSegment::retire(self.seg);
            }
        }
    }

    fn pop(page: &Page) -> *mut u8 {
        if page.has_free() {
            return page.pop().expect("a free block refused");
        }
        assert!(!page.head_overwritten(), "a link was overwritten");
        page.bump().unwrap_or(null_mut())
    }

    /// Takes back what other threads posted, expecting no double free.
    fn take_posted(page: &Page) -> u32 {
        // SAFETY: the test owns the page.
        let taken = unsafe { page.take_posted(|p| panic!("double free of {p:p} reported")) };
        assert!(!taken.undecided);
        taken.blocks
    }

    /// Stores a link, encoded with the page's key, in the free block at `p`.
    fn forge_link(page: &Page, p: *mut u8, index: u32) {
        // SAFETY: `p` is a free block of the test's page.
        unsafe { block::set_link(p, index ^ page.local.key.get()) };
    }

    #[test]
    fn one_multiply_gives_index_and_exactness() {
        let mut f = Fixture::new();
        for class in classes() {
            let size = class_size(class);
            let page = f.page(size);
            let view = page.view().unwrap();
            for offset in 0..PAGE_SIZE {
                let p = (page.base() + offset) as *mut u8;
                let expected = (offset % size == 0).then_some(offset / size);
                assert_eq!(page.index(p), expected, "size {size} offset {offset}");
                assert_eq!(view.index(p), expected, "size {size} offset {offset}");
            }
            f.release(page);
        }
    }

    /// The hole of the index-free design: a link overwritten after free that
    /// decodes to a block boundary past the bump pointer made the pop hand
    /// that block out, and the bump path hand it out again (or, past the
    /// page's last block, a block overlapping the next page). Links are now
    /// accepted only below `bumped`.
    #[test]
    fn a_link_past_the_blocks_ever_handed_out_is_never_followed() {
        let mut f = Fixture::new();
        let page = f.page(48);
        for k in 0..5 {
            let (a, b) = (pop(page), pop(page));
            let bumped = page.local.bumped.get();
            // The next fresh block, one further, the first past the page's
            // last block (offset 65,520: a block overlapping the next page),
            // and the highest.
            let forged = [bumped, bumped + 1, page.local.capacity.get(), (PAGE_SIZE / 48) as u32, EMPTY - 1][k];
            // SAFETY: the test owns the page; both blocks are live.
            unsafe {
                assert_eq!(page.free(a), Freed::Done);
                forge_link(page, a, forged);
            }
            assert_eq!(page.pop(), Some(a), "the freed block itself is fine");
            assert!(!page.has_free(), "index {forged} is past the blocks handed out");
            assert!(page.head_overwritten(), "and reported as an overwritten link");
            // Repair the list as the test's own doing, then give all back.
            page.local.head.set(EMPTY);
            // SAFETY: as above.
            unsafe {
                assert_eq!(page.free(a), Freed::Done);
                assert!(matches!(page.free(b), Freed::Done | Freed::Ended));
            }
            while page.has_free() {
                pop(page);
            }
            let bumped = page.local.bumped.get();
            let fresh = pop(page);
            assert_eq!(page.local.bumped.get(), bumped + 1, "a fresh block, handed out once");
            // SAFETY: as above; everything out is freed again.
            unsafe {
                for i in page.first() as usize..page.local.bumped.get() as usize {
                    let p = page.block(i);
                    if test(page.pair(i).live.load(Relaxed), i) {
                        page.free(p);
                    }
                }
            }
            let _ = fresh;
        }
        assert_eq!(page.used(), 0);
        f.release(page);
    }

    #[test]
    fn the_header_blocks_of_page_0_are_never_handed_out_nor_freed() {
        let mut f = Fixture::new();
        let page = f.page(64);
        assert_eq!(page.base() % SEGMENT_SIZE, 0, "the first page taken is page 0");
        let first = page.first() as usize;
        assert!(first * 64 >= size_of::<SmallSegment>() && first > 0);
        let a = pop(page);
        assert_eq!(a as usize, page.base() + first * 64, "the first block past the header");
        for i in [0, first - 1] {
            let p = page.block(i);
            // SAFETY: the test owns the page.
            assert_eq!(unsafe { page.free(p) }, Freed::Claimed, "live and pending: the cold path");
            assert!(page.in_header(p));
            assert_eq!(page.claim(p).err(), Some(BadBlock::Invalid));
            assert_eq!(page.check_live(p), Err(BadBlock::Invalid));
        }
        assert!(!page.has_pending(), "the header's bits are not claims");
        // SAFETY: as above.
        assert_eq!(unsafe { page.free(a) }, Freed::Ended);
        f.release(page);
    }

    /// The owner's free and another thread's claim of block `a` in the same
    /// instant, as they interleave: the owner reads the pending bit clear,
    /// the other thread claims and posts the block, then the owner clears
    /// the live bit and links the block on its free list.
    fn race(page: &Page, a: *mut u8) {
        let claim = page.claim(a).unwrap();
        page.post(claim);
        let i = page.index(a).unwrap();
        let pair = page.pair(i);
        pair.live.store(clear(pair.live.load(Relaxed), i), Relaxed);
        // SAFETY: the owner's half of its free: the block is its.
        unsafe { block::set_link(a, page.local.head.get() ^ page.local.key.get()) };
        page.local.head.set(i as u32);
        page.count_back();
    }

    #[test]
    fn a_block_freed_by_its_owner_and_another_thread_at_once_has_one_owner() {
        let mut f = Fixture::new();
        for take_first in [true, false] {
            let page = f.page(48);
            let (a, b) = (pop(page), pop(page));
            race(page, a);
            // SAFETY: the test owns the page.
            unsafe {
                if !take_first {
                    assert_eq!(page.pop(), None, "a block whose free is posted is refused");
                    page.refuse();
                    assert_eq!(page.used(), 2, "a block set aside counts as in use");
                    assert_eq!(page.settle_aside(), 0, "aside while its free is posted");
                }
                let mut stale = std::vec::Vec::new();
                let taken = page.take_posted(|p| stale.push(p));
                assert_eq!((taken.blocks, stale.as_slice()), (0, &[a][..]), "one double free reported");
                if !take_first {
                    assert_eq!(page.settle_aside(), 1, "back on the free list");
                    assert!(!page.returned(1));
                }
                let c = pop(page);
                assert_eq!(c, a, "on the free list, once");
                let d = pop(page);
                assert_ne!(d, a, "nor handed out twice");
                assert_eq!(page.free(b), Freed::Done);
                assert_eq!(page.free(c), Freed::Done);
                assert_eq!(page.free(d), Freed::Ended, "the page is empty");
            }
            assert!(!page.has_pending());
            f.release(page);
        }
    }

    /// A claim that read block `a` live before the owner's free of it sets
    /// the pending bit, then sees the block free and backs out. Meanwhile
    /// the owner may hand `a` out and free it again (its free finds the bit
    /// set: `Claimed`), or meet it on its free list (refused). Either way
    /// the block is set aside, and freed once the bit is clear: no valid
    /// free is lost, no block goes missing.
    #[test]
    fn a_claim_backing_out_loses_no_block() {
        let mut f = Fixture::new();
        let page = f.page(48);
        let a = pop(page);
        let i = page.index(a).unwrap();
        let pending = &page.pair(i).pending;
        // SAFETY: the test owns the page; `a` lies in it.
        unsafe {
            // The owner's free while the claim holds the bit.
            pending.fetch_or(mask(i), Relaxed);
            assert_eq!(page.free(a), Freed::Claimed);
            page.set_aside(a);
            assert_eq!(page.used(), 1, "still live");
            assert_eq!(page.settle_aside(), 0);
            pending.fetch_and(!mask(i), Relaxed);
            assert_eq!(page.settle_aside(), 1, "freed");
            assert!(page.returned(1), "the page is empty");
            assert_eq!(page.used(), 0);

            // The owner's allocation while the claim holds the bit.
            assert_eq!(pop(page), a, "on the free list");
            assert_eq!(page.free(a), Freed::Ended);
            pending.fetch_or(mask(i), Relaxed);
            assert_eq!(page.pop(), None, "a pending block handed out");
            page.refuse();
            assert_eq!(page.used(), 1, "counted while aside");
            pending.fetch_and(!mask(i), Relaxed);
            assert_eq!(page.settle_aside(), 1);
            assert!(page.returned(1), "back, and the page is empty");
            assert_eq!(pop(page), a, "handed out again");
            assert_eq!(page.free(a), Freed::Ended);
        }
        f.release(page);
    }

    /// A claim that read the page's shape before the page was given back and
    /// assigned anew (to another class, its bitmaps maybe another page's)
    /// must not stand, whatever it finds in the bitmaps now.
    #[test]
    fn a_claim_across_a_page_given_back_and_assigned_anew_backs_out() {
        let mut f = Fixture::new();
        let page = f.page(64);
        let a = pop(page);
        let stale = page.view().unwrap();
        // SAFETY: the test owns the page.
        assert_eq!(unsafe { page.free(a) }, Freed::Ended);
        f.release(page);
        assert!(page.view().is_none() || page.base() == 0);
        let again = f.page(64);
        assert!(core::ptr::eq(again, page), "the same page, assigned anew");
        let b = pop(again);
        assert_eq!(b, a, "the same block, live again");
        assert_eq!(page.claim_in(stale, a).err(), Some(BadBlock::DoubleFree), "the stale claim backs out");
        let i = again.index(b).unwrap();
        assert!(!test(again.pair(i).pending.load(Relaxed), i), "and leaves no pending bit");
        // A claim with the page's current shape stands.
        let claim = again.claim(b).unwrap();
        again.post(claim);
        assert_eq!(take_posted(again), 1);
        assert!(again.returned(1));
        f.release(again);
    }

    #[test]
    fn posted_blocks_come_back_a_word_at_a_time() {
        let mut f = Fixture::new();
        let page = f.page(16);
        let blocks: std::vec::Vec<*mut u8> = (0..200).map(|_| pop(page)).collect();
        for &p in blocks.iter().step_by(3) {
            let claim = page.claim(p).unwrap();
            assert!(page.claim(p).is_err(), "claimed once");
            page.post(claim);
        }
        let n = blocks.iter().step_by(3).count() as u32;
        assert!(page.has_pending());
        assert_eq!(take_posted(page), n);
        assert!(!page.returned(n));
        assert_eq!(page.used(), 200 - n as usize);
        assert!(!page.has_pending());
        for (k, &p) in blocks.iter().enumerate() {
            let expected = if k % 3 == 0 { Err(BadBlock::DoubleFree) } else { Ok(()) };
            assert_eq!(page.check_live(p), expected);
        }
        // SAFETY: the test owns the page.
        unsafe {
            for &p in blocks.iter().skip(1).step_by(3).chain(blocks.iter().skip(2).step_by(3)) {
                page.free(p);
            }
        }
        assert_eq!(page.used(), 0);
        f.release(page);
    }
}
