//! Model check (with loom) of the protocol by which threads return blocks to
//! a heap they do not own (`Page::claim`, `Page::post`, `Page::announce` in
//! `src/small/page.rs`; `free_remote`, `Owner::drain`, `Heap::abandon` in
//! `src/thread/remote.rs`): a freer claims the block's pending bit (an
//! atomic `or` that must find it clear, after the live bit was read set),
//! decides (the block still live, the page's generation unchanged: else it
//! backs out), announces the page (the first since the owner looked pushes
//! it on the heap's stack) and posts the block (its posted bit); if the heap
//! has no owner, it claims the heap and takes the block back itself. The
//! owner takes the stack whole, marks each page unannounced, takes the
//! posted bits back and frees those blocks (clearing the live bit and linking
//! the block before it releases the pending bit), reports posted blocks that
//! were not live (its own free of them came in the same instant), and
//! announces the page again if a claim is still undecided. A thread giving
//! the heap up looks at the stack once more after it lets go, and takes the
//! heap back only for new work: not for claims still undecided, whose
//! threads will post and find the heap unowned (waiting for them would spin
//! while they are preempted; the model found that). Heaps are adopted by new
//! threads (`take_heap` in `src/thread/pool.rs`).
//!
//! This is a model, not the allocator: the real heap lives in mmap'd memory
//! that loom cannot track. One page of three blocks; each block has its
//! three bits and its free-list link word (a loom `UnsafeCell`: only the
//! owner may write it, and another thread's free writes nothing into the
//! block, so loom fails the test if a remote free touches it). The owner's
//! state (free list, blocks set aside, the work `collect` does) is one loom
//! `UnsafeCell`, touched only by whoever holds `taken`, so loom fails the
//! test if two threads ever own the heap at once or if a hand-over of
//! ownership does not order the accesses. Atomic operations use the
//! orderings of the real code.
//!
//! Loom treats `SeqCst` loads and stores as acquire/release only (its README,
//! "Unsupported features"), which loses the single total order the real code
//! relies on where a thread writes one variable and then reads another
//! (freer: posts, then loads `taken`; releaser: stores `taken`, then loads
//! the stack; owner: stores `announced = false`, then reads the posted bits;
//! freer: sets the pending bit, then reads `announced`). The model puts a
//! `fence(SeqCst)`, which loom does model, between the two accesses of each
//! such pair ([`sc_pair`]): it gives exactly the guarantee that C++/Rust
//! `SeqCst` gives the pair (one of the two threads sees the other's write),
//! and what x86 gives, where the `SeqCst` store is an `xchg` and the `or` a
//! locked instruction, full barriers.
//!
//! The real code's `SeqCst` stores of `announced` and `taken` are swaps
//! here (an `xchg` on x86 either way): loom 0.7 lets a thread's load read a
//! value older than its own `store` when another thread's read-modify-write
//! read the value before it, which no memory model allows (a four-line loom
//! test shows it: thread 1 swaps `x` to true, then stores false and loads
//! true, while thread 2's swap returned true).
//!
//! Checked in every explored execution: no block is left posted in a heap
//! nobody owns, every block ends on the free list exactly once (no loss, no
//! double free), of two threads freeing one block at once exactly one
//! succeeds, ownership is exclusive, and the owner's free racing with
//! another thread's free of the same block gives exactly one report with
//! the owner never holding one block twice; a block the owner meets with its
//! pending bit set is set aside until the bit clears, so a late claim that
//! backs out loses no block; a claim that spans the page's release and
//! reassignment never stands. Six tests break the protocol on purpose and
//! expect loom to find the failure.

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use loom::thread;

/// The null block (and the empty stack).
const NIL: usize = usize::MAX;
/// Blocks in a model: 0 and 1 are live (other threads free them), 2 is free.
const BLOCKS: usize = 3;
/// The page, on the heap's stack of announced pages.
const PAGE: usize = 0;
/// The generation of a page being given back (`page::CHANGING`).
const CHANGING: usize = 0;

/// What only the owner of the heap touches.
struct Local {
    /// Head of the free list, linked through the blocks' words.
    free: usize,
    /// Head of the blocks set aside while their pending bit is set
    /// (`Page::set_aside`), linked through the same words.
    aside: usize,
    /// Stands for the ring, spare and segment list that `collect` changes.
    collects: usize,
}

/// The ways a model may break the protocol (all `true` in the real code).
#[derive(Clone, Copy)]
struct Protocol {
    /// `abandon` looks at the stack again after giving the heap up.
    recheck: bool,
    /// Taking back frees a block before it releases its pending bit.
    free_before_release: bool,
    /// The owner announces a page again while a claim is undecided.
    reannounces_undecided: bool,
    /// An allocation refuses a block whose pending bit is set.
    pop_tests_pending: bool,
    /// A block refused, or freed by the owner, while its pending bit is set
    /// waits aside until the bit clears.
    sets_aside: bool,
    /// A claim re-reads the page's generation after its `or`.
    checks_generation: bool,
}

const REAL: Protocol = Protocol {
    recheck: true,
    free_before_release: true,
    reannounces_undecided: true,
    pop_tests_pending: true,
    sets_aside: true,
    checks_generation: true,
};

struct Heap {
    taken: AtomicBool,
    /// The heap's stack of announced pages (the model has one page).
    stack: AtomicUsize,
    /// The page's flag: on the stack, or being pushed.
    announced: AtomicBool,
    /// The page's generation (`Shape::generation`).
    generation: AtomicUsize,
    /// Each block's link word: written by the owner only.
    links: [UnsafeCell<usize>; BLOCKS],
    /// Double frees reported, by the owner and by other threads.
    reports: AtomicUsize,
    /// The live bits: written by the owner, read by freers.
    live: [AtomicBool; BLOCKS],
    /// The pending bits: set by a freer's claim, cleared by the owner (or
    /// by the claim backing out).
    pending: [AtomicBool; BLOCKS],
    /// The posted bits: set by a freer once its claim stands, taken by the
    /// owner.
    posted: [AtomicBool; BLOCKS],
    /// Set while a claim that set the pending bit has not decided (to stand,
    /// or to back out). Not in the real code: it stands for its timing
    /// assumption, that the owner's free of a pending block waits
    /// (`CLAIM_WINDOW_SPINS`) longer than a claim takes to decide.
    deciding: [AtomicBool; BLOCKS],
    local: UnsafeCell<Local>,
    protocol: Protocol,
}

/// Stands in, for loom, for the total order of the real code's `SeqCst`
/// accesses between a write to one variable and the following read of
/// another; see the module documentation.
fn sc_pair() {
    fence(Ordering::SeqCst);
}

impl Heap {
    /// A heap whose free list holds block 2 and whose blocks 0 and 1 are live.
    fn new(taken: bool, protocol: Protocol) -> Heap {
        let links = core::array::from_fn(|_| UnsafeCell::new(NIL));
        let local = Local { free: 2, aside: NIL, collects: 0 };
        Heap {
            taken: AtomicBool::new(taken),
            stack: AtomicUsize::new(NIL),
            announced: AtomicBool::new(false),
            generation: AtomicUsize::new(1),
            links,
            reports: AtomicUsize::new(0),
            live: [AtomicBool::new(true), AtomicBool::new(true), AtomicBool::new(false)],
            pending: core::array::from_fn(|_| AtomicBool::new(false)),
            posted: core::array::from_fn(|_| AtomicBool::new(false)),
            deciding: core::array::from_fn(|_| AtomicBool::new(false)),
            local: UnsafeCell::new(local),
            protocol,
        }
    }

    fn report(&self) -> bool {
        self.reports.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// `Heap::try_take`.
    fn try_take(&self) -> bool {
        self.taken.compare_exchange(false, true, Ordering::SeqCst, Ordering::Relaxed).is_ok()
    }

    /// `Page::pop`, past blocks it refuses (`Owner::refuse`).
    ///
    /// # Safety
    /// The caller owns the heap.
    unsafe fn pop(&self) -> Option<usize> {
        // SAFETY: the caller owns the heap, so it alone touches `local`, and
        // the blocks on its free list.
        self.local.with_mut(|local| unsafe {
            loop {
                let b = (*local).free;
                if b == NIL {
                    return None;
                }
                assert!(!self.live[b].load(Ordering::Relaxed), "block {b} on the free list is live");
                (*local).free = self.links[b].with(|link| *link);
                if self.protocol.pop_tests_pending && self.pending[b].load(Ordering::Relaxed) {
                    if self.protocol.sets_aside {
                        self.links[b].with_mut(|link| *link = (*local).aside);
                        (*local).aside = b;
                    }
                    continue;
                }
                self.live[b].store(true, Ordering::Release);
                return Some(b);
            }
        })
    }

    /// `Owner::alloc_class`: the free list, else the posted blocks.
    ///
    /// # Safety
    /// The caller owns the heap.
    unsafe fn alloc(&self) -> Option<usize> {
        // SAFETY: per the contract.
        unsafe {
            if let Some(b) = self.pop() {
                return Some(b);
            }
            self.drain();
            self.pop()
        }
    }

    /// Clears the live bit of `b` and links it on the free list.
    ///
    /// # Safety
    /// The caller owns the heap; `b` is one of its live blocks on no list.
    unsafe fn push_free(&self, b: usize) {
        // SAFETY: per the contract: `local` and `b` are the caller's.
        self.local.with_mut(|local| unsafe {
            assert!(self.live[b].load(Ordering::Relaxed), "double free of block {b}");
            self.live[b].store(false, Ordering::Relaxed);
            self.links[b].with_mut(|link| *link = (*local).free);
            (*local).free = b;
        });
    }

    /// `Page::free` as it runs on the owner's fast path (no read-modify-
    /// write), with `Owner::free_claimed` behind it, for a block the caller
    /// handed out: whether it took effect.
    ///
    /// # Safety
    /// The caller owns the heap; `b` is one of its blocks.
    unsafe fn free_racing(&self, b: usize) -> bool {
        if !self.live[b].load(Ordering::Relaxed) {
            return self.report();
        }
        // SAFETY: per the contract.
        unsafe {
            if !self.pending[b].load(Ordering::Acquire) {
                self.push_free(b);
                return true;
            }
            if !self.protocol.sets_aside || self.is_aside(b) {
                return self.report();
            }
            // `Owner::free_claimed`: wait out a claim still deciding.
            while self.deciding[b].load(Ordering::SeqCst) {
                thread::yield_now();
            }
            if !self.pending[b].load(Ordering::Relaxed) {
                self.push_free(b);
                return true;
            }
            // The claim stands: this free is the double free. Set aside,
            // live, until the claim is taken back.
            self.set_aside(b);
        }
        self.report()
    }

    /// `Page::set_aside`.
    ///
    /// # Safety
    /// The caller owns the heap; `b` is on no list of it.
    unsafe fn set_aside(&self, b: usize) {
        // SAFETY: per the contract: `local` and `b`'s word are ours.
        self.local.with_mut(|local| unsafe {
            self.links[b].with_mut(|link| *link = (*local).aside);
            (*local).aside = b;
        });
    }

    /// `Page::is_aside`.
    ///
    /// # Safety
    /// The caller owns the heap.
    unsafe fn is_aside(&self, b: usize) -> bool {
        // SAFETY: per the contract.
        self.local.with(|local| unsafe {
            let mut x = (*local).aside;
            while x != NIL && x != b {
                x = self.links[x].with(|link| *link);
            }
            x == b
        })
    }

    /// Takes the blocks set aside back off that list where `keep` says so.
    ///
    /// # Safety
    /// The caller owns the heap.
    unsafe fn sift_aside(&self, keep: impl Fn(usize) -> bool, mut dropped: impl FnMut(usize)) {
        // SAFETY: per the contract.
        let mut b = self.local.with_mut(|local| unsafe { core::mem::replace(&mut (*local).aside, NIL) });
        while b != NIL {
            // SAFETY: per the contract: `b` was set aside, its word ours.
            let next = self.links[b].with(|link| unsafe { *link });
            if keep(b) {
                // SAFETY: as above.
                unsafe { self.set_aside(b) };
            } else {
                dropped(b);
            }
            b = next;
        }
    }

    /// `Page::settle_aside`: frees the blocks set aside whose pending bit
    /// has cleared (a freed one is live still, a refused one is not).
    ///
    /// # Safety
    /// The caller owns the heap.
    unsafe fn settle_aside(&self) {
        // SAFETY: per the contract; a dropped block is on no list.
        unsafe {
            self.sift_aside(
                |b| self.pending[b].load(Ordering::Acquire),
                |b| {
                    // `push_free` clears the live bit: a refused block's is
                    // clear already.
                    self.live[b].store(true, Ordering::Relaxed);
                    self.push_free(b);
                },
            )
        };
    }

    /// `Page::claim`, `Page::announce`, `Page::post`, then the taken test of
    /// `free_remote`: whether this thread's free of `b` takes effect.
    fn free_remote(&self, b: usize) -> bool {
        self.free_remote_seen(b, self.generation.load(Ordering::Acquire))
    }

    /// [`Self::free_remote`] with the generation its view read.
    fn free_remote_seen(&self, b: usize, generation: usize) -> bool {
        // `Page::view`: a page being given back or assigned is no block's.
        if generation == CHANGING || !self.live[b].load(Ordering::Acquire) {
            return self.report();
        }
        self.deciding[b].store(true, Ordering::SeqCst);
        if self.pending[b].swap(true, Ordering::SeqCst) {
            self.deciding[b].store(false, Ordering::SeqCst);
            return self.report();
        }
        // The `or` and the generation's read, against a release's change of
        // the generation and its read of the pending bits.
        sc_pair();
        let stale = self.protocol.checks_generation && self.generation.load(Ordering::SeqCst) != generation;
        if !self.live[b].load(Ordering::Acquire) || stale {
            self.pending[b].swap(false, Ordering::SeqCst);
            self.deciding[b].store(false, Ordering::SeqCst);
            // `free_remote`'s report: a claim backing out may have been the
            // undecided one a thread giving the heap up left to it.
            self.take_if_abandoned();
            return self.report();
        }
        self.deciding[b].store(false, Ordering::SeqCst);
        sc_pair();
        if !self.announced.load(Ordering::SeqCst) && !self.announced.swap(true, Ordering::SeqCst) {
            self.push_page();
        }
        self.posted[b].swap(true, Ordering::SeqCst);
        self.take_if_abandoned();
        true
    }

    /// The end of `free_remote`: if the heap has no owner, takes it and
    /// takes back what was posted.
    fn take_if_abandoned(&self) {
        sc_pair();
        if !self.taken.load(Ordering::SeqCst) && self.try_take() {
            // SAFETY: `try_take` made us the owner.
            unsafe { self.abandon() };
        }
    }

    /// `Remote::push` of the page; what it lies on (the model has one page:
    /// nothing).
    fn push_page(&self) -> usize {
        let mut head = self.stack.load(Ordering::Relaxed);
        loop {
            assert_eq!(head, NIL, "the page pushed twice");
            match self.stack.compare_exchange_weak(head, PAGE, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => return head,
                Err(now) => head = now,
            }
        }
    }

    /// `Heap::abandon` (thread exit, or the end of a claim).
    ///
    /// # Safety
    /// The caller owns the heap; it does not after this.
    unsafe fn abandon(&self) {
        loop {
            // SAFETY: we own the heap (again, after the `try_take` below).
            let undecided_alone = unsafe { self.collect() };
            self.taken.swap(false, Ordering::SeqCst);
            if !self.protocol.recheck {
                return;
            }
            sc_pair();
            let head = self.stack.load(Ordering::SeqCst);
            if head == NIL {
                return;
            }
            // `Undecided::only`: the stack holds only the page announced
            // again for claims still undecided: none has posted, and one at
            // least has not backed out.
            let only = undecided_alone
                && head == PAGE
                && !self.posted.iter().any(|p| p.load(Ordering::SeqCst))
                && self.pending.iter().any(|p| p.load(Ordering::SeqCst));
            if only || !self.try_take() {
                return;
            }
        }
    }

    /// `Owner::give_back`: takes back the posted blocks and always updates
    /// owner state (the ring of empty pages); whether the drain left the
    /// page alone on the stack for undecided claims.
    ///
    /// # Safety
    /// The caller owns the heap.
    unsafe fn collect(&self) -> bool {
        // SAFETY: per the contract.
        let alone = unsafe { self.drain() };
        // SAFETY: per the contract, `local` is ours.
        self.local.with_mut(|local| unsafe { (*local).collects += 1 });
        alone
    }

    /// `Owner::drain` and `Page::take_posted` (the model's page has one
    /// bitmap word: its three blocks); whether it pushed the page again,
    /// alone on the stack, for claims still undecided.
    ///
    /// # Safety
    /// The caller owns the heap.
    unsafe fn drain(&self) -> bool {
        let mut alone = false;
        let page =
            if self.stack.load(Ordering::Relaxed) == NIL { NIL } else { self.stack.swap(NIL, Ordering::Acquire) };
        if page != NIL {
            self.announced.swap(false, Ordering::SeqCst);
            sc_pair();
            // SAFETY: we own the heap. Blocks set aside that are posted and
            // live leave that list (`Page::unaside_posted`): they are freed
            // below.
            unsafe {
                self.sift_aside(
                    |b| !(self.posted[b].load(Ordering::Acquire) && self.live[b].load(Ordering::Relaxed)),
                    |_| {},
                )
            };
            for b in 0..BLOCKS {
                if !self.posted[b].load(Ordering::Relaxed) || !self.posted[b].swap(false, Ordering::SeqCst) {
                    continue;
                }
                if !self.live[b].load(Ordering::Relaxed) {
                    // The owner freed it too, in the same instant.
                    self.report();
                    self.pending[b].swap(false, Ordering::Release);
                    continue;
                }
                if !self.protocol.free_before_release {
                    self.pending[b].swap(false, Ordering::Release);
                }
                // SAFETY: we own the heap; the block is on no list.
                unsafe { self.push_free(b) };
                if self.protocol.free_before_release {
                    self.pending[b].swap(false, Ordering::Release);
                }
            }
            sc_pair();
            let undecided = (0..BLOCKS).any(|b| self.pending[b].load(Ordering::SeqCst));
            if undecided
                && self.protocol.reannounces_undecided
                && !self.announced.load(Ordering::SeqCst)
                && !self.announced.swap(true, Ordering::SeqCst)
            {
                alone = self.push_page() == NIL;
            }
        }
        // SAFETY: we own the heap.
        unsafe { self.settle_aside() };
        alone
    }

    /// What an owning thread does before it exits: allocates the free block,
    /// allocates again (the free list is empty: the slow path takes back the
    /// posted blocks), frees both, and abandons the heap.
    ///
    /// # Safety
    /// The caller owns the heap; it does not after this.
    unsafe fn work_and_exit(&self) {
        // SAFETY: per the contract.
        unsafe {
            let a = self.alloc();
            let b = self.alloc();
            for block in [a, b].into_iter().flatten() {
                assert!(self.free_racing(block), "block {block} not live when freed");
            }
            self.abandon();
        }
    }

    /// After every thread is joined: nobody owns the heap, no block waits
    /// posted, and every block is on the free list exactly once.
    fn check_settled(&self) {
        assert!(!self.taken.load(Ordering::SeqCst), "heap still owned after all threads exited");
        let posted: Vec<bool> = self.posted.iter().map(|p| p.load(Ordering::Relaxed)).collect();
        assert!(posted.iter().all(|p| !p), "block stranded, posted in a heap nobody owns: {posted:?}");
        assert_eq!(self.stack.load(Ordering::SeqCst), NIL, "page stranded on the stack of an abandoned heap");
        // SAFETY: every other thread is joined, so the heap is ours.
        self.local.with(|local| unsafe {
            assert_eq!((*local).aside, NIL, "a block still set aside");
            let mut seen = [false; BLOCKS];
            let mut b = (*local).free;
            while b != NIL {
                assert!(b < BLOCKS && !seen[b], "free list corrupt at block {b}");
                seen[b] = true;
                b = self.links[b].with(|link| *link);
            }
            assert_eq!(seen, [true; BLOCKS], "blocks lost from the free list");
            assert!(self.live.iter().all(|l| !l.load(Ordering::Relaxed)), "blocks still live");
            let pending: Vec<bool> = self.pending.iter().map(|p| p.load(Ordering::Relaxed)).collect();
            assert!(pending.iter().all(|p| !p), "blocks still pending: {pending:?}");
        });
    }
}

/// Runs a model, exploring every interleaving up to `preemptions` preemptions
/// (all of them with `None`); `LOOM_MAX_PREEMPTIONS` overrides it.
fn model<F: Fn() + Sync + Send + 'static>(preemptions: Option<usize>, f: F) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = preemptions;
    }

    builder.check(f);
}

/// The owner works and exits while one thread frees two of its blocks.
fn owner_exit_vs_freer(protocol: Protocol) {
    model(Some(3), move || {
        let heap = Arc::new(Heap::new(true, protocol));
        let owner = {
            let heap = heap.clone();
            // SAFETY: the heap was created taken, for this thread.
            thread::spawn(move || unsafe { heap.work_and_exit() })
        };
        let freer = {
            let heap = heap.clone();
            thread::spawn(move || {
                heap.free_remote(0);
                heap.free_remote(1);
            })
        };
        owner.join().unwrap();
        freer.join().unwrap();
        heap.check_settled();
    });
}

#[test]
fn owner_exit_races_remote_frees() {
    owner_exit_vs_freer(REAL);
}

/// The owner works and exits while two threads each free one of its blocks
/// (and may claim the abandoned heap, one after the other or racing).
#[test]
fn owner_exit_races_two_freers() {
    model(Some(2), || {
        let heap = Arc::new(Heap::new(true, REAL));
        let owner = {
            let heap = heap.clone();
            // SAFETY: the heap was created taken, for this thread.
            thread::spawn(move || unsafe { heap.work_and_exit() })
        };
        let freers: Vec<_> = (0..2)
            .map(|b| {
                let heap = heap.clone();
                thread::spawn(move || heap.free_remote(b))
            })
            .collect();
        owner.join().unwrap();
        for freer in freers {
            freer.join().unwrap();
        }
        heap.check_settled();
    });
}

/// A new thread adopts the abandoned heap (`take_heap`: one `try_take`, else
/// it takes another heap) while a thread frees two of its blocks and claims
/// it; the adopter works with the heap and exits.
#[test]
fn adoption_races_remote_claim() {
    model(Some(3), || {
        let heap = Arc::new(Heap::new(false, REAL));
        let adopter = {
            let heap = heap.clone();
            thread::spawn(move || {
                if heap.try_take() {
                    // SAFETY: `try_take` made us the owner.
                    unsafe { heap.work_and_exit() };
                }
            })
        };
        let freer = {
            let heap = heap.clone();
            thread::spawn(move || {
                heap.free_remote(0);
                heap.free_remote(1);
            })
        };
        adopter.join().unwrap();
        freer.join().unwrap();
        heap.check_settled();
    });
}

/// Without the re-check after `taken = false`, a block posted between the
/// owner's last look and its release, by a thread that saw the heap still
/// owned, stays posted in a heap nobody owns: loom must find that
/// execution.
#[test]
#[should_panic(expected = "stranded")]
fn exit_without_recheck_strands_a_block() {
    owner_exit_vs_freer(Protocol { recheck: false, ..REAL });
}

/// Without announcing the page again while a claim is undecided, a block
/// whose claimer announced the page before the owner's look and posts after
/// it is never taken back: loom must find it.
#[test]
#[should_panic(expected = "stranded")]
fn forgetting_undecided_claims_strands_a_block() {
    owner_exit_vs_freer(Protocol { reannounces_undecided: false, ..REAL });
}

/// Two threads free the same two blocks at the same moment (in opposite
/// orders) while the owner exits: each block's free takes effect exactly
/// once, and every block ends free once. (The owner does not allocate here:
/// a free that arrives after the block was handed out again is a valid free
/// of the new allocation, for the model as for the real code.)
#[test]
fn two_threads_free_the_same_blocks() {
    same_blocks_freed_twice(REAL);
}

/// With the pending bit released before the block is freed, a late claim
/// of the second thread succeeds on a block the owner is taking back: the
/// block is freed three times; loom must find it.
#[test]
#[should_panic(expected = "each block freed exactly once")]
fn releasing_before_freeing_frees_a_block_twice() {
    same_blocks_freed_twice(Protocol { free_before_release: false, ..REAL });
}

fn same_blocks_freed_twice(protocol: Protocol) {
    model(Some(2), move || {
        let heap = Arc::new(Heap::new(true, protocol));
        let owner = {
            let heap = heap.clone();
            // SAFETY: the heap was created taken, for this thread.
            thread::spawn(move || unsafe { heap.abandon() })
        };
        let freers: Vec<_> = [[0, 1], [1, 0]]
            .into_iter()
            .map(|order| {
                let heap = heap.clone();
                thread::spawn(move || order.iter().filter(|&&b| heap.free_remote(b)).count())
            })
            .collect();
        owner.join().unwrap();
        let claimed: usize = freers.into_iter().map(|f| f.join().unwrap()).sum();
        assert_eq!(claimed, 2, "each block freed exactly once");
        heap.check_settled();
    });
}

/// The owner frees block 0 while another thread frees it too; once both
/// frees returned, the owner (this thread now, after the joins) allocates
/// three times (past the two blocks of its free list, the posted blocks are
/// taken back), frees what it got and exits. Exactly one of the two frees is
/// reported, the owner never holds one block twice, and every block ends
/// free once.
#[test]
fn the_owner_and_another_thread_free_one_block_at_once() {
    owner_and_other_free_at_once(REAL);
}

/// With an allocation that does not test the pending bit, the owner hands
/// block 0 out again while the other thread's free of it is posted, and
/// taking it back frees it under its new owner, who gets it once more: loom
/// must find it.
#[test]
#[should_panic(expected = "two owners")]
fn an_allocation_blind_to_pending_gives_two_owners() {
    owner_and_other_free_at_once(Protocol { pop_tests_pending: false, ..REAL });
}

fn owner_and_other_free_at_once(protocol: Protocol) {
    model(Some(3), move || {
        let heap = Arc::new(Heap::new(true, protocol));
        let owner = {
            let heap = heap.clone();
            // SAFETY: the heap was created taken, for this thread; block 0
            // is live, handed out before.
            thread::spawn(move || unsafe { heap.free_racing(0) })
        };
        let other = {
            let heap = heap.clone();
            thread::spawn(move || heap.free_remote(0))
        };
        let took_effect = usize::from(owner.join().unwrap()) + usize::from(other.join().unwrap());
        assert!(took_effect >= 1, "block 0 freed");
        // SAFETY: the owner thread is joined without giving the heap up:
        // this thread holds it now.
        unsafe {
            let held: Vec<usize> = [heap.alloc(), heap.alloc(), heap.alloc()].into_iter().flatten().collect();
            for (i, x) in held.iter().enumerate() {
                assert!(!held[..i].contains(x), "block {x} held twice: two owners");
            }
            // Block 1 is the model's other live block.
            for block in held.into_iter().chain([1]) {
                assert!(heap.free_racing(block), "block {block} not live when freed");
            }
            heap.abandon();
        }
        assert_eq!(heap.reports.load(Ordering::Relaxed), 1, "one of the two frees reported");
        heap.check_settled();
    });
}

/// Another thread's late free of block 0 races with the owner's free of it,
/// its allocation again (block 0 first: the free list is LIFO) and its free
/// of what it got. The late claim may read block 0 live before the owner's
/// first free, set the pending bit, and then see it free and back out; in
/// that window the owner's allocation refuses the block, or its second free
/// finds the bit set. Exactly one free is reported (the program made one
/// double free), and every block ends free once: none is lost, no valid
/// free ignored.
#[test]
fn a_claim_backing_out_loses_no_block() {
    claim_backing_out(REAL);
}

/// The code before blocks were set aside: a refused block was dropped, and
/// the owner's free of a pending block reported at once (its valid free
/// lost when the claim backs out). Loom must find a lost block.
#[test]
#[should_panic(expected = "blocks lost from the free list")]
fn without_setting_aside_a_backed_out_claim_loses_a_block() {
    claim_backing_out(Protocol { sets_aside: false, ..REAL });
}

fn claim_backing_out(protocol: Protocol) {
    model(Some(3), move || {
        let heap = Arc::new(Heap::new(true, protocol));
        let owner = {
            let heap = heap.clone();
            // SAFETY: the heap was created taken, for this thread; block 0
            // is live, handed out before.
            thread::spawn(move || unsafe {
                heap.free_racing(0);
                if let Some(b) = heap.alloc() {
                    heap.free_racing(b);
                }
            })
        };
        let other = {
            let heap = heap.clone();
            thread::spawn(move || heap.free_remote(0))
        };
        owner.join().unwrap();
        other.join().unwrap();
        // SAFETY: the owner thread is joined without giving the heap up:
        // this thread holds it now. Block 1 is the model's other live block.
        unsafe {
            assert!(heap.free_racing(1), "block 1 not live when freed");
            heap.abandon();
        }
        heap.check_settled();
        assert_eq!(heap.reports.load(Ordering::Relaxed), 1, "one of the frees reported");
    });
}

/// The owner frees block 0 (a program's last block in the page), gives the
/// page back once no claim is pending (`release_if_empty`: a new
/// generation) and assigns it anew (another), and hands block 0 out again,
/// while another thread frees block 0 late: a double free of its first life.
/// If the claim read the generation of the first life, it must not stand,
/// whatever it finds in the bits now: block 0's second life is the
/// program's. (A claim that read the new generation frees the second life:
/// a late free cannot be told from a valid one, for any allocator.)
#[test]
fn a_claim_across_the_page_given_back_backs_out() {
    claim_across_release(REAL);
}

/// Without the generation's second read, the stale claim stands on the
/// block's second life: loom must find it.
#[test]
#[should_panic(expected = "a stale claim stood")]
fn a_claim_blind_to_the_generation_frees_a_new_life() {
    claim_across_release(Protocol { checks_generation: false, ..REAL });
}

fn claim_across_release(protocol: Protocol) {
    model(Some(3), move || {
        let heap = Arc::new(Heap::new(true, protocol));
        // Only block 0 is live: the page empties when the owner frees it.
        heap.live[1].store(false, Ordering::Relaxed);
        let owner = {
            let heap = heap.clone();
            // SAFETY: the heap was created taken, for this thread.
            thread::spawn(move || unsafe {
                heap.free_racing(0);
                // `Page::try_release`: the generation changes first, then no
                // claim may be pending (else the page stays, in a new
                // generation all the same).
                heap.generation.store(CHANGING, Ordering::SeqCst);
                sc_pair();
                let released =
                    !heap.pending.iter().any(|p| p.load(Ordering::SeqCst)) && !heap.announced.load(Ordering::SeqCst);
                heap.generation.store(2, Ordering::Release);
                (released, heap.pop())
            })
        };
        let other = {
            let heap = heap.clone();
            thread::spawn(move || {
                let generation = heap.generation.load(Ordering::Acquire);
                (generation == 1, heap.free_remote_seen(0, generation))
            })
        };
        let (released, got) = owner.join().unwrap();
        let (read_first_life, stood) = other.join().unwrap();
        if released && read_first_life && got == Some(0) {
            assert!(!stood, "a stale claim stood on the block's second life");
        }
        // SAFETY: the threads are joined; the heap is this thread's.
        unsafe {
            // Block 0's second life may have been freed by the claim (one
            // that read the new generation).
            if let Some(b) = got.filter(|&b| !(b == 0 && stood)) {
                assert!(heap.free_racing(b));
            }
            heap.live[1].store(true, Ordering::Relaxed);
            assert!(heap.free_racing(1));
            heap.abandon();
        }
        heap.check_settled();
    });
}
