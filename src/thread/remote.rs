//! Frees across threads. A thread that frees a block of another thread's heap
//! claims the block in its page's bitmaps and posts it there (see
//! `Page::claim`): nothing is written into the block, and nothing is queued
//! per block. What crosses to the owner is the page: the first thread to
//! post into a page since the owner last looked pushes the page on the
//! heap's stack of announced pages ([`Remote`]), one compare-and-swap per
//! page per round. The owner takes the stack whole (one swap) on its slow
//! path and takes each page's posted blocks back a bitmap word at a time.
//!
//! The order makes every posted block reach the owner: the claimer announces
//! the page before it posts the block, and the owner reads a page's posted
//! words after it marks the page unannounced; a claim it sees pending but
//! not yet posted makes it announce the page again (`Taken::undecided`).
//! And a page is given back only when it is not announced and no pending bit
//! is set: a claimer touches the page only while its pending bit is set
//! (the owner clears it when it takes the block back).

use super::heap::{Heap, Owner};
use crate::diag::error::{self, BadBlock, Misuse, Op};
use crate::small::page::Page;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

/// The part of a heap that other threads write: the stack of pages with
/// posted blocks, and the ownership flag that every poster reads. Each on a
/// cache line of its own, so that posters writing `announced` do not take
/// the flag's line from readers.
#[repr(C)]
pub struct Remote {
    /// Pages with posted blocks, linked through `Page::next_announced` (a
    /// Treiber stack that is only ever taken whole, so no ABA).
    announced: Line<AtomicPtr<Page>>,
    /// Whether a thread owns the heap (or claims it while it is abandoned).
    taken: Line<AtomicBool>,
}

/// A value alone on its cache line (64 bytes on x86).
#[repr(C, align(64))]
struct Line<T>(T);

impl<T> core::ops::Deref for Line<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl Remote {
    pub const fn new() -> Remote {
        Remote { announced: Line(AtomicPtr::new(null_mut())), taken: Line(AtomicBool::new(false)) }
    }

    pub fn try_take(&self) -> bool {
        self.taken.compare_exchange(false, true, Ordering::SeqCst, Ordering::Relaxed).is_ok()
    }

    /// Gives ownership up.
    pub fn release(&self) {
        self.taken.store(false, Ordering::SeqCst);
    }

    pub fn is_taken(&self) -> bool {
        self.taken.load(Ordering::SeqCst)
    }

    /// Pushes `page`, which its caller just marked announced; returns the
    /// page it now lies on (null: the stack was empty).
    fn push(&self, page: &Page) -> *mut Page {
        let ptr = page as *const Page as *mut Page;
        let mut head = self.announced.load(Ordering::Relaxed);
        loop {
            page.set_next_announced(head);
            match self.announced.compare_exchange_weak(head, ptr, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => return head,
                Err(now) => head = now,
            }
        }
    }

    /// The stack's top page (null: empty).
    fn head(&self) -> *mut Page {
        self.announced.load(Ordering::SeqCst)
    }

    pub fn is_empty(&self) -> bool {
        self.head().is_null()
    }

    /// Takes every announced page (for the owner).
    fn take_all(&self) -> *mut Page {
        if self.announced.load(Ordering::Relaxed).is_null() {
            return null_mut();
        }
        self.announced.swap(null_mut(), Ordering::Acquire)
    }
}

/// Frees `p`, a block of `page`, a page of `heap`, for a thread that does
/// not own `heap` (or has no heap): claimed and posted here, taken back by
/// the owner later; a pointer that is not a live block is reported.
///
/// # Safety
/// `heap` is the heap of `page`'s segment (null only if the segment is a
/// tombstone: all its pages are free, and the claim fails).
pub unsafe fn free_remote(heap: *const Heap, page: &Page, p: *mut u8) {
    match page.claim(p) {
        Ok(claim) => {
            // SAFETY: the claim stands: the page was assigned, so its
            // segment is live and its heap (immortal) set.
            let heap = unsafe { &*heap };
            if page.announce() {
                heap.remote.push(page);
            }
            page.post(claim);
            heap.take_if_abandoned();
        }
        Err(bad) => {
            let size = Some(page.block_size()).filter(|&s| s != 0);
            let kind = if page.in_header(p) { BadBlock::Invalid } else { bad };
            error::report_bad(kind, Op::Free, p, size);
            // A claim that backed out may be the undecided one a thread
            // giving the heap up left to it (see `abandon`).
            if !heap.is_null() {
                // SAFETY: heaps are immortal.
                unsafe { &*heap }.take_if_abandoned();
            }
        }
    }
}

impl Heap {
    /// If the heap has no owner, takes it and takes back what was posted:
    /// the end of every free into another heap. Pairs with `abandon`
    /// (SeqCst on both sides): either its look at the stack after it lets
    /// go sees our post (or our claim backed out), or we see that the heap
    /// has no owner.
    fn take_if_abandoned(&self) {
        if !self.is_owned() && self.try_take() {
            // SAFETY: we hold the heap now.
            unsafe { self.abandon() };
        }
    }

    /// Gives up ownership: takes back what was posted, returns every empty
    /// page, keeps the live blocks for the next owner.
    ///
    /// # Safety
    /// The calling thread holds the heap and has no `Owner` of it alive.
    pub unsafe fn abandon(&self) {
        loop {
            // SAFETY: per the contract (and after `try_take` below).
            let undecided = unsafe { self.owner() }.give_back();
            self.remote.release();
            // A page announced after the look above, or a claim that was
            // undecided then and posted before the release (its thread saw
            // the heap still owned), must not wait for the next owner. Claims
            // still undecided now will find the heap unowned and take their
            // blocks back themselves: waiting for them would spin for as long
            // as their threads are preempted.
            let head = self.remote.head();
            if head.is_null() || undecided.only(head) || !self.try_take() {
                return;
            }
        }
    }
}

/// Pages announced again by a drain because a claim on them was undecided
/// (pending, not yet posted), so that `abandon` can tell them from new work.
pub(super) struct Undecided {
    pages: [*const Page; WATCHED],
    n: usize,
    /// The stack holds these pages alone, the last pushed on top (each push
    /// lay on the one before, the first on an empty stack).
    alone: bool,
}

/// Pages with undecided claims a drain keeps track of: one or two is what a
/// thread exiting while others free its blocks meets; more, and `abandon`
/// takes the heap back once more.
const WATCHED: usize = 4;

impl Undecided {
    fn new() -> Self {
        Undecided { pages: [null_mut(); WATCHED], n: 0, alone: true }
    }

    /// `page` was announced again: pushed by the drain if `below` is the
    /// page it now lies on, or left to a claimer that announced it first
    /// (`None`).
    fn note(&mut self, page: &Page, below: Option<*mut Page>) {
        let expected = if self.n == 0 { null_mut() } else { self.pages[self.n - 1].cast_mut() };
        if below != Some(expected) || self.n == WATCHED {
            self.alone = false;
            return;
        }
        self.pages[self.n] = page;
        self.n += 1;
    }

    /// Whether, with the stack's top page `head` read after the heap was
    /// given up, the stack holds nothing but these pages, none of them has a
    /// posted block, and each still has a claim deciding (read after the
    /// release too: a claimer posts, or backs out, then reads the ownership
    /// flag, SeqCst on both sides). Then the claims' threads take care of
    /// the rest.
    fn only(&self, head: *mut Page) -> bool {
        self.alone
            && self.n != 0
            && core::ptr::eq(head, self.pages[self.n - 1])
            && self.pages[..self.n].iter().all(|&p| {
                // SAFETY: the pages are on the stack (announced: not given
                // back) or were a moment ago; descriptors and bitmaps stay
                // mapped.
                let p = unsafe { &*p };
                !p.has_posted() && p.has_claims()
            })
    }
}

impl Owner<'_> {
    /// Takes back what other threads posted, if any page is announced; true
    /// if a block came back.
    pub(super) fn drain_if_any(&mut self) -> bool {
        !self.heap.remote.is_empty() && self.drain().0 != 0
    }

    /// Takes back the blocks other threads posted, page by page; returns
    /// how many, and the pages announced again for claims still undecided.
    /// A posted block that is no longer live was freed by the owner in the
    /// same instant (see `Page::free`): reported, a double free.
    pub(super) fn drain(&mut self) -> (u32, Undecided) {
        let mut page = self.heap.remote.take_all();
        let (mut blocks, mut undecided) = (0, Undecided::new());
        while !page.is_null() {
            // SAFETY: only pages of this heap are announced, and an
            // announced page is not given back.
            let p = unsafe { &*page };
            let next = p.next_announced();
            if p.has_aside() {
                p.unaside_posted();
            }
            let size = Some(p.block_size());
            // SAFETY: this thread holds the heap; the page is assigned.
            let taken = unsafe { p.take_posted(|stale| error::report(Misuse::DoubleFree, Op::Free, stale, size)) };
            self.heap.counters.remote_frees.add(taken.blocks as usize);
            blocks += taken.blocks;
            if p.returned(taken.blocks) {
                self.countdown_ended(p);
            }
            if taken.undecided {
                let below = p.announce().then(|| self.heap.remote.push(p));
                undecided.note(p, below);
            }
            page = next;
        }
        if !self.local().aside_pages.is_null() {
            self.settle_aside();
        }
        (blocks, undecided)
    }
}
