//! Model check (with loom) of the protocol by which threads return blocks to
//! a heap they do not own: a freer claims each block (`Page::claim_foreign`:
//! the live bit must be set, and an atomic `or` of the pending bit must find
//! it clear), links its claimed blocks into one batch and posts the batch with
//! one compare-and-swap (`Outbox`, `Inbox::post`, `Heap::post_chain`); if the
//! heap has no owner, it claims the heap and drains it (`Heap::abandon`). The
//! owner drains its inbox (`Owner::drain`, `Page::take_back`: the pending bit
//! must have been set), and the heap is adopted by new threads
//! (`take_heap` in `src/thread/pool.rs`).
//!
//! This is a model, not the allocator: the real heap lives in mmap'd memory
//! that loom cannot track. Blocks are indices; each has two non-atomic words
//! (loom `UnsafeCell`s), as in the real code (`small::block::Link`): the
//! first links it on the owner's free list, the second on the remote list. The owner's state (free
//! list, which blocks are live, the work `collect` does) is one loom
//! `UnsafeCell`, touched only by whoever holds `taken`, so loom fails the test
//! if two threads ever own the heap at once or if a hand-over of ownership
//! (or of a block through the remote list) does not order the accesses.
//! Atomic operations use the orderings of the real code.
//!
//! Loom treats `SeqCst` loads and stores as acquire/release only (its README,
//! "Unsupported features"), which loses the single total order the real code
//! relies on where a thread stores one variable and then loads the other
//! (freer: push, then load `taken`; releaser: store `taken`, then load
//! `remote`). The model puts a `fence(SeqCst)`, which loom does model, between
//! the two accesses of each such pair ([`sc_pair`]): it gives exactly the
//! guarantee that C++/Rust `SeqCst` gives the pair (one of the two threads
//! sees the other's write), and what x86 gives, where the `SeqCst` store is
//! an `xchg`, a full barrier. Without it loom reports a stranded block that
//! the real code cannot produce.
//!
//! Checked in every explored execution: no block is left on the remote list
//! of a heap nobody owns, every block ends on the free list exactly once (no
//! loss, no double free), of two threads freeing one block at once exactly
//! one succeeds, and ownership is exclusive. The owner's free racing with
//! another thread's free of the same block (`Page::free` reads the pending
//! bit and clears the live bit without a read-modify-write) gives exactly
//! one report, and the owner never holds one block twice. A block the owner
//! meets with its pending bit set, on its free list or in its own free, is
//! set aside until the bit clears (`Owner::set_aside`): a late claim that
//! backs out loses no block and no valid free. Five tests break the protocol
//! on purpose (no re-check in `abandon`; the pending bit released before the
//! block is freed; one link word for both lists; an allocation that does not
//! test the pending bit; no setting aside) and expect loom to find the
//! failure.

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use loom::thread;

/// The null block.
const NIL: usize = usize::MAX;
/// Blocks in a model: 0 and 1 are live (other threads free them), 2 is free.
const BLOCKS: usize = 3;

/// What only the owner of the heap touches.
struct Local {
    /// Head of the free list, linked through the blocks' first words.
    free: usize,
    /// Head of the blocks set aside while their pending bit is set
    /// (`Owner::set_aside`), linked through the same words.
    aside: usize,
    /// Stands for the ring, spare and segment list that `collect` changes.
    collects: usize,
}

struct Heap {
    taken: AtomicBool,
    /// Head of the Treiber stack of blocks freed by other threads.
    remote: AtomicUsize,
    /// Each block's first word: its link on the free list.
    links: [UnsafeCell<usize>; BLOCKS],
    /// Each block's second word: its link on the remote list.
    posted: [UnsafeCell<usize>; BLOCKS],
    /// Double frees reported, by the owner and by other threads.
    reports: AtomicUsize,
    /// The live bitmap: written by the owner, read by freers (relaxed).
    live: [AtomicBool; BLOCKS],
    /// The pending bitmap: set by a freer's claim, cleared by the owner.
    pending: [AtomicBool; BLOCKS],
    /// Set while a claim that set the pending bit has not decided (to post
    /// the block, or to back out). Not in the real code: it stands for its
    /// timing assumption, that the owner's free of a pending block waits
    /// (`CLAIM_WINDOW_SPINS`) longer than a claim takes to decide.
    deciding: [AtomicBool; BLOCKS],
    local: UnsafeCell<Local>,
    /// Whether `abandon` re-checks the remote list after giving the heap up
    /// (false only in the deliberately broken model).
    recheck: bool,
    /// Whether the drain frees a block before it releases its pending bit
    /// (false only in the second broken model).
    free_before_release: bool,
    /// Whether the remote list links through the second word (false only in
    /// the third broken model: the first, as the free list).
    two_words: bool,
    /// Whether an allocation refuses a block whose pending bit is set (false
    /// only in the fourth broken model).
    pop_tests_pending: bool,
    /// Whether a block refused, or freed by the owner, while its pending bit
    /// is set waits aside until the bit clears (false only in the fifth
    /// broken model, the code before: a refused block was dropped, and the
    /// owner's free reported at once).
    sets_aside: bool,
}

/// Stands in, for loom, for the total order of the real code's `SeqCst`
/// accesses between a store (or read-modify-write) to one variable and the
/// following load of the other; see the module documentation.
fn sc_pair() {
    fence(Ordering::SeqCst);
}

impl Heap {
    /// A heap whose free list holds block 2 and whose blocks 0 and 1 are live.
    fn new(taken: bool, recheck: bool) -> Heap {
        let links = core::array::from_fn(|_| UnsafeCell::new(NIL));
        let local = Local { free: 2, aside: NIL, collects: 0 };
        Heap {
            taken: AtomicBool::new(taken),
            remote: AtomicUsize::new(NIL),
            links,
            posted: core::array::from_fn(|_| UnsafeCell::new(NIL)),
            reports: AtomicUsize::new(0),
            live: [AtomicBool::new(true), AtomicBool::new(true), AtomicBool::new(false)],
            pending: core::array::from_fn(|_| AtomicBool::new(false)),
            deciding: core::array::from_fn(|_| AtomicBool::new(false)),
            local: UnsafeCell::new(local),
            recheck,
            free_before_release: true,
            two_words: true,
            pop_tests_pending: true,
            sets_aside: true,
        }
    }

    /// The word that links `b` on the remote list.
    fn posted_link(&self, b: usize) -> &UnsafeCell<usize> {
        if self.two_words { &self.posted[b] } else { &self.links[b] }
    }

    /// `Heap::try_take`.
    fn try_take(&self) -> bool {
        self.taken.compare_exchange(false, true, Ordering::SeqCst, Ordering::Relaxed).is_ok()
    }

    /// Pops the free list (`Page::pop`), past blocks it refuses.
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
                if self.pop_tests_pending && self.pending[b].load(Ordering::Relaxed) {
                    if self.sets_aside {
                        self.links[b].with_mut(|link| *link = (*local).aside);
                        (*local).aside = b;
                    }
                    continue;
                }
                self.live[b].store(true, Ordering::Relaxed);
                return Some(b);
            }
        })
    }

    /// `Heap::alloc`: the free list, else (`alloc_slow`) the remote frees.
    ///
    /// # Safety
    /// The caller owns the heap.
    unsafe fn alloc(&self) -> Option<usize> {
        // SAFETY: per the contract.
        unsafe {
            if let Some(b) = self.pop() {
                return Some(b);
            }
            self.drain_remote();
            self.pop()
        }
    }

    /// `Heap::free_local`.
    ///
    /// # Safety
    /// The caller owns the heap and `b` is one of its blocks that no other
    /// thread uses.
    unsafe fn free_local(&self, b: usize) {
        // SAFETY: per the contract: `local` and `b` are the caller's.
        assert!(!self.pending[b].load(Ordering::Relaxed), "block {b} freed while another thread's free is pending");
        // SAFETY: per the contract.
        unsafe { self.push_free(b) };
    }

    /// Clears the live bit of `b` and links it on the free list.
    ///
    /// # Safety
    /// As for [`Self::free_local`].
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
    /// write), for a block the caller handed out: whether it took effect.
    ///
    /// # Safety
    /// The caller owns the heap; `b` is one of its blocks.
    unsafe fn free_racing(&self, b: usize) -> bool {
        let report = || {
            self.reports.fetch_add(1, Ordering::Relaxed);
            false
        };
        if !self.live[b].load(Ordering::Relaxed) {
            return report();
        }
        // SAFETY: per the contract.
        unsafe {
            if !self.pending[b].load(Ordering::Acquire) {
                self.push_free(b);
                return true;
            }
            if !self.sets_aside || self.is_aside(b) {
                return report();
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
        report()
    }

    /// `Owner::set_aside`.
    ///
    /// # Safety
    /// The caller owns the heap; `b` is on no list of it.
    unsafe fn set_aside(&self, b: usize) {
        // SAFETY: per the contract: `local` and `b`'s first word are ours.
        self.local.with_mut(|local| unsafe {
            self.links[b].with_mut(|link| *link = (*local).aside);
            (*local).aside = b;
        });
    }

    /// `Owner::is_aside`.
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

    /// `Owner::take_aside`: takes `b` out of the blocks set aside, if there.
    ///
    /// # Safety
    /// The caller owns the heap.
    unsafe fn take_aside(&self, b: usize) -> bool {
        // SAFETY: per the contract.
        self.local.with_mut(|local| unsafe {
            let (mut prev, mut x) = (NIL, (*local).aside);
            while x != NIL && x != b {
                (prev, x) = (x, self.links[x].with(|link| *link));
            }
            if x == NIL {
                return false;
            }
            let next = self.links[x].with(|link| *link);
            if prev == NIL {
                (*local).aside = next;
            } else {
                self.links[prev].with_mut(|link| *link = next);
            }
            true
        })
    }

    /// `Owner::settle_aside`: frees the blocks set aside whose pending bit
    /// has cleared (a freed one is live still, a refused one is not).
    ///
    /// # Safety
    /// The caller owns the heap.
    unsafe fn settle_aside(&self) {
        // SAFETY: per the contract.
        let mut b = self.local.with_mut(|local| unsafe { core::mem::replace(&mut (*local).aside, NIL) });
        while b != NIL {
            // SAFETY: per the contract: `b` was set aside, its first word ours.
            let next = self.links[b].with(|link| unsafe { *link });
            // SAFETY: per the contract; `b` is on no list now.
            unsafe {
                if self.pending[b].load(Ordering::Relaxed) {
                    self.set_aside(b);
                } else {
                    // `push_free` clears the live bit: a refused block's is
                    // clear already.
                    self.live[b].store(true, Ordering::Relaxed);
                    self.push_free(b);
                }
            }
            b = next;
        }
    }

    /// `Page::claim_foreign`: whether this thread's free of `b` takes effect.
    fn claim(&self, b: usize) -> bool {
        let report = || {
            self.reports.fetch_add(1, Ordering::Relaxed);
            false
        };
        if !self.live[b].load(Ordering::Relaxed) {
            return report();
        }
        self.deciding[b].store(true, Ordering::SeqCst);
        // AcqRel: the owner that reads the bit set sees `deciding` too.
        if self.pending[b].swap(true, Ordering::AcqRel) {
            self.deciding[b].store(false, Ordering::SeqCst);
            return report();
        }
        let live = self.live[b].load(Ordering::Relaxed);
        if !live {
            // `fetch_and` in the real code: a read-modify-write too.
            self.pending[b].swap(false, Ordering::Relaxed);
        }
        self.deciding[b].store(false, Ordering::SeqCst);
        live || report()
    }

    /// A thread frees blocks of the heap: claims each (a refused claim is a
    /// reported double free), links the claimed ones into one batch
    /// (`Outbox::add`) and posts it (`Heap::post_chain`). Returns how many
    /// claims succeeded.
    fn free_remote(&self, blocks: &[usize]) -> usize {
        let claimed: Vec<usize> = blocks.iter().copied().filter(|&b| self.claim(b)).collect();
        let (Some(&first), Some(&last)) = (claimed.first(), claimed.last()) else {
            return 0;
        };
        for pair in claimed.windows(2) {
            // SAFETY: claimed blocks are ours to write until published.
            self.posted_link(pair[0]).with_mut(|link| unsafe { *link = pair[1] });
        }
        let mut head = self.remote.load(Ordering::Relaxed);
        loop {
            // SAFETY: as above.
            self.posted_link(last).with_mut(|link| unsafe { *link = head });
            match self.remote.compare_exchange_weak(head, first, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => head = now,
            }
        }
        sc_pair();
        if !self.taken.load(Ordering::SeqCst) {
            self.reclaim_abandoned();
        }
        claimed.len()
    }

    /// `Heap::reclaim_abandoned`.
    fn reclaim_abandoned(&self) {
        if self.try_take() {
            // SAFETY: `try_take` made us the owner.
            unsafe { self.abandon() };
        }
    }

    /// `Heap::abandon` (thread exit, or the end of a claim).
    ///
    /// # Safety
    /// The caller owns the heap; it does not after this.
    unsafe fn abandon(&self) {
        loop {
            // SAFETY: we own the heap (again, after the `try_take` below).
            unsafe { self.collect() };
            self.taken.store(false, Ordering::SeqCst);
            if !self.recheck {
                return;
            }
            sc_pair();
            if self.remote.load(Ordering::SeqCst) == NIL || !self.try_take() {
                return;
            }
        }
    }

    /// `Heap::collect`: drains the remote frees and always updates owner
    /// state (the ring of empty pages).
    ///
    /// # Safety
    /// The caller owns the heap.
    unsafe fn collect(&self) {
        // SAFETY: per the contract.
        unsafe { self.drain_remote() };
        // SAFETY: per the contract, `local` is ours.
        self.local.with_mut(|local| unsafe { (*local).collects += 1 });
    }

    /// `Heap::drain_remote`.
    ///
    /// # Safety
    /// The caller owns the heap.
    unsafe fn drain_remote(&self) {
        let mut b =
            if self.remote.load(Ordering::Relaxed) == NIL { NIL } else { self.remote.swap(NIL, Ordering::Acquire) };
        while b != NIL {
            // SAFETY: blocks on the remote list were published by
            // `free_remote`, whose release pairs with our acquire.
            let next = self.posted_link(b).with(|link| unsafe { *link });
            // SAFETY: we own the heap. Out of the aside list before the
            // block is linked on the free list through the same word.
            let was_aside = unsafe { self.take_aside(b) };
            // `Page::take_back`: only a claimed block may be on the list; it
            // is freed before its pending bit is released.
            assert!(self.pending[b].load(Ordering::Relaxed), "block {b} posted without a claim");
            if !self.live[b].load(Ordering::Relaxed) {
                // The owner freed it too, in the same instant.
                self.reports.fetch_add(1, Ordering::Relaxed);
                self.pending[b].swap(false, Ordering::Release);
                if was_aside {
                    // SAFETY: as above; refused, settled below.
                    unsafe { self.set_aside(b) };
                }
                b = next;
                continue;
            }
            // (If it was set aside, the owner's free reported the double free.)

            if !self.free_before_release {
                self.pending[b].swap(false, Ordering::Release);
            }
            // SAFETY: we own the heap; the block is no longer on the list.
            unsafe { self.push_free(b) };
            if self.free_before_release {
                self.pending[b].swap(false, Ordering::Release);
            }
            b = next;
        }
        // SAFETY: we own the heap.
        unsafe { self.settle_aside() };
    }

    /// What an owning thread does before it exits: allocates the free block,
    /// allocates again (the free list is empty: `alloc_slow` drains the
    /// remote frees), frees both, and abandons the heap.
    ///
    /// # Safety
    /// The caller owns the heap; it does not after this.
    unsafe fn work_and_exit(&self) {
        // SAFETY: per the contract.
        unsafe {
            let a = self.alloc();
            let b = self.alloc();
            for block in [a, b].into_iter().flatten() {
                self.free_local(block);
            }
            self.abandon();
        }
    }

    /// After every thread is joined: nobody owns the heap, no block waits on
    /// its remote list, and every block is on the free list exactly once.
    fn check_settled(&self) {
        assert!(!self.taken.load(Ordering::SeqCst), "heap still owned after all threads exited");
        assert_eq!(self.remote.load(Ordering::SeqCst), NIL, "block stranded on the remote list of an abandoned heap");
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
fn owner_exit_vs_freer(recheck: bool) {
    model(None, move || {
        let heap = Arc::new(Heap::new(true, recheck));
        let owner = {
            let heap = heap.clone();
            // SAFETY: the heap was created taken, for this thread.
            thread::spawn(move || unsafe { heap.work_and_exit() })
        };
        let freer = {
            let heap = heap.clone();
            thread::spawn(move || {
                heap.free_remote(&[0, 1]);
            })
        };
        owner.join().unwrap();
        freer.join().unwrap();
        heap.check_settled();
    });
}

#[test]
fn owner_exit_races_remote_frees() {
    owner_exit_vs_freer(true);
}

/// The owner works and exits while two threads each free one of its blocks
/// (and may claim the abandoned heap, one after the other or racing).
#[test]
fn owner_exit_races_two_freers() {
    model(Some(3), || {
        let heap = Arc::new(Heap::new(true, true));
        let owner = {
            let heap = heap.clone();
            // SAFETY: the heap was created taken, for this thread.
            thread::spawn(move || unsafe { heap.work_and_exit() })
        };
        let freers: Vec<_> = (0..2)
            .map(|b| {
                let heap = heap.clone();
                thread::spawn(move || heap.free_remote(&[b]))
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
    model(Some(5), || {
        let heap = Arc::new(Heap::new(false, true));
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
                heap.free_remote(&[0, 1]);
            })
        };
        adopter.join().unwrap();
        freer.join().unwrap();
        heap.check_settled();
    });
}

/// The old owner exits while a new thread adopts the heap (possibly in the
/// window where `abandon` has released it and is re-checking) and another
/// frees two of its blocks.
#[test]
fn owner_exit_races_adoption_and_remote_frees() {
    model(Some(3), || {
        let heap = Arc::new(Heap::new(true, true));
        let owner = {
            let heap = heap.clone();
            // SAFETY: the heap was created taken, for this thread.
            thread::spawn(move || unsafe { heap.work_and_exit() })
        };
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
                heap.free_remote(&[0, 1]);
            })
        };
        owner.join().unwrap();
        adopter.join().unwrap();
        freer.join().unwrap();
        heap.check_settled();
    });
}

/// Without the re-check after `taken = false`, a block freed remotely between
/// the owner's last drain and its release, by a thread that saw the heap
/// still owned, stays on the remote list of a heap nobody owns: loom must
/// find that execution.
#[test]
#[should_panic(expected = "block stranded on the remote list of an abandoned heap")]
fn exit_without_recheck_strands_a_block() {
    owner_exit_vs_freer(false);
}

/// Two threads free the same two blocks at the same moment (each as one
/// batch, in opposite orders) while the owner exits: each block's free takes
/// effect exactly once, and every block ends free once. (The owner does not
/// allocate here: a free that arrives after the block was handed out again
/// is a valid free of the new allocation, for the model as for the real
/// code.)
#[test]
fn two_threads_free_the_same_blocks() {
    same_blocks_freed_twice(true);
}

/// With the pending bit released before the block is freed, a late claim
/// of the second thread succeeds on a block the owner is taking back: the
/// block is freed three times; loom must find it.
#[test]
#[should_panic(expected = "each block freed exactly once")]
fn releasing_before_freeing_gives_a_block_two_lists() {
    same_blocks_freed_twice(false);
}

fn same_blocks_freed_twice(free_before_release: bool) {
    model(Some(3), move || {
        let mut heap = Heap::new(true, true);
        heap.free_before_release = free_before_release;
        let heap = Arc::new(heap);
        let owner = {
            let heap = heap.clone();
            // SAFETY: the heap was created taken, for this thread.
            thread::spawn(move || unsafe { heap.abandon() })
        };
        let freers: Vec<_> = [[0, 1], [1, 0]]
            .into_iter()
            .map(|order| {
                let heap = heap.clone();
                thread::spawn(move || heap.free_remote(&order))
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
/// three times (past the two blocks of its free list, the remote list is
/// drained), frees what it got and exits. Exactly one of the two frees is
/// reported, the owner never holds one block twice, and every block ends
/// free once.
#[test]
fn the_owner_and_another_thread_free_one_block_at_once() {
    owner_and_other_free_at_once(true, true);
}

/// With one link word for both lists, the owner's link and the other
/// thread's are written to the same word unordered: loom must find it.
#[test]
#[should_panic(expected = "Concurrent write accesses")]
fn one_link_word_for_both_lists_races() {
    owner_and_other_free_at_once(false, true);
}

/// With an allocation that does not test the pending bit, the owner hands
/// block 0 out again while the other thread's free of it is posted, and the
/// drain frees it under its new owner, who gets it once more: loom must find
/// it.
#[test]
#[should_panic(expected = "two owners")]
fn an_allocation_blind_to_pending_gives_two_owners() {
    owner_and_other_free_at_once(true, false);
}

fn owner_and_other_free_at_once(two_words: bool, pop_tests_pending: bool) {
    model(Some(3), move || {
        let mut heap = Heap::new(true, true);
        heap.two_words = two_words;
        heap.pop_tests_pending = pop_tests_pending;
        let heap = Arc::new(heap);
        let owner = {
            let heap = heap.clone();
            // SAFETY: the heap was created taken, for this thread; block 0
            // is live, handed out before.
            thread::spawn(move || unsafe { heap.free_racing(0) })
        };
        let other = {
            let heap = heap.clone();
            thread::spawn(move || heap.free_remote(&[0]))
        };
        let took_effect = usize::from(owner.join().unwrap()) + other.join().unwrap();
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
    claim_backing_out(true);
}

/// The code before blocks were set aside: a refused block was dropped, and
/// the owner's free of a pending block reported at once (its valid free
/// lost when the claim backs out). Loom must find a lost block.
#[test]
#[should_panic(expected = "blocks lost from the free list")]
fn without_setting_aside_a_backed_out_claim_loses_a_block() {
    claim_backing_out(false);
}

fn claim_backing_out(sets_aside: bool) {
    model(Some(3), move || {
        let mut heap = Heap::new(true, true);
        heap.sets_aside = sets_aside;
        let heap = Arc::new(heap);
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
            thread::spawn(move || heap.free_remote(&[0]))
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
