//! The model of `model.rs` across three threads: blocks of three heaps,
//! freed by any thread, and double frees, at the same moment from two
//! threads for small blocks. No block may overlap a live one or lose its
//! contents, whatever the double frees did. A file of its own (a process of
//! its own): a double free of a block that another test had been handed in
//! the meantime would free that test's block, which no allocator can tell
//! from a valid free.

mod common;

use common::{Live, check_and_free};
use mallocator::alloc::{alloc, free};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::{Arc, Barrier, mpsc};
use std::thread;

/// What the cross-thread model does: blocks allocated on this thread or on
/// one of two workers (so that they belong to three heaps), freed by any of
/// them, and double frees, by two threads at the same moment for small
/// blocks (exactly one may take effect) and one after the other otherwise.
#[derive(Debug, Clone)]
enum XOp {
    Alloc { on: usize, size: usize },
    Free { on: usize, pick: usize },
    DoubleFree { first: usize, second: usize, pick: usize },
}

fn xop() -> impl Strategy<Value = XOp> {
    let size = prop_oneof![4 => 0usize..=512, 2 => 513usize..=20_000, 1 => 20_000usize..=3_000_000];
    prop_oneof![
        5 => (0usize..3, size).prop_map(|(on, size)| XOp::Alloc { on, size }),
        4 => (0usize..3, any::<usize>()).prop_map(|(on, pick)| XOp::Free { on, pick }),
        1 => (0usize..3, 0usize..3, any::<usize>()).prop_map(|(first, second, pick)| XOp::DoubleFree { first, second, pick }),
    ]
}

enum Cmd {
    Alloc(usize, mpsc::Sender<usize>),
    /// Free the block this many times in a row, between the two barriers.
    Free(usize, usize, Arc<Gate>),
}

/// Every thread of a free passes `start`, frees, passes `done`: nobody
/// allocates between the frees (a block freed once and handed out again
/// would make the second free a valid one, of somebody else's block).
struct Gate {
    start: Barrier,
    done: Barrier,
}

/// A thread with a heap of its own that allocates and frees on request.
struct Worker {
    tx: mpsc::Sender<Cmd>,
    thread: Option<thread::JoinHandle<()>>,
}

fn free_times(p: usize, times: usize) {
    for _ in 0..times {
        // SAFETY: the model frees live blocks; the repeats are the double
        // frees the allocator must reject.
        unsafe { free(p as *mut u8) };
    }
}

impl Worker {
    fn start() -> Worker {
        let (tx, rx) = mpsc::channel::<Cmd>();
        let thread = thread::spawn(move || {
            for cmd in rx {
                match cmd {
                    Cmd::Alloc(size, reply) => reply.send(alloc(size, 8) as usize).unwrap(),
                    Cmd::Free(p, times, gate) => {
                        gate.start.wait();
                        free_times(p, times);
                        gate.done.wait();
                    }
                }
            }
        });
        Worker { tx, thread: Some(thread) }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let (tx, _) = mpsc::channel();
        self.tx = tx;
        self.thread.take().unwrap().join().unwrap();
    }
}

/// Allocates `size` bytes on thread `on` (0: this one).
fn alloc_on(workers: &[Worker], on: usize, size: usize) -> usize {
    if on == 0 {
        return alloc(size, 8) as usize;
    }
    let (tx, rx) = mpsc::channel();
    workers[on - 1].tx.send(Cmd::Alloc(size, tx)).unwrap();
    rx.recv().unwrap()
}

/// Frees `p` once per entry of `on` (0: this thread), the threads at the
/// same moment, a thread named twice twice in a row; returns when all are
/// done.
fn free_on(workers: &[Worker], on: &[usize], p: usize) {
    let mut times = [0; 3];
    on.iter().for_each(|&t| times[t] += 1);
    let helpers = times[1..].iter().filter(|&&n| n > 0).count();
    let gate = Arc::new(Gate { start: Barrier::new(helpers + 1), done: Barrier::new(helpers + 1) });
    for (w, &n) in workers.iter().zip(&times[1..]).filter(|(_, n)| **n > 0) {
        w.tx.send(Cmd::Free(p, n, gate.clone())).unwrap();
    }
    gate.start.wait();
    free_times(p, times[0]);
    gate.done.wait();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn blocks_stay_disjoint_across_threads_and_double_frees(ops in prop::collection::vec(xop(), 1..300)) {
        let workers = [Worker::start(), Worker::start()];
        let mut live: BTreeMap<usize, Live> = BTreeMap::new();
        for (i, op) in ops.into_iter().enumerate() {
            match op {
                XOp::Alloc { on, size } => {
                    let p = alloc_on(&workers, on, size);
                    prop_assert!(p != 0, "allocation of {} failed", size);
                    if let Some((&q, l)) = live.range(..p + size.max(1)).next_back() {
                        prop_assert!(q + l.size.max(1) <= p, "{:#x}+{} overlaps {:#x}", q, l.size, p);
                    }
                    let fill = (i % 251) as u8 + 1;
                    // SAFETY: the block has `size` writable bytes.
                    unsafe { std::ptr::write_bytes(p as *mut u8, fill, size) };
                    live.insert(p, Live { size, fill });
                }
                XOp::Free { on, pick } => {
                    if let Some(&p) = live.keys().nth(pick % live.len().max(1)) {
                        let l = live.remove(&p).unwrap();
                        prop_assert!(l.intact(p), "block {:#x} lost its contents", p);
                        free_on(&workers, &[on], p);
                    }
                }
                XOp::DoubleFree { first, second, pick } => {
                    if let Some(&p) = live.keys().nth(pick % live.len().max(1)) {
                        let l = live.remove(&p).unwrap();
                        if l.size <= mallocator::size_class::MAX_SMALL || first == second {
                            free_on(&workers, &[first, second], p);
                        } else {
                            // Not at once: a huge block's free unmaps it,
                            // and a free racing with that may read the
                            // unmapped header (README, bad input).
                            free_on(&workers, &[first], p);
                            free_on(&workers, &[second], p);
                        }
                    }
                }
            }
        }
        for (p, l) in live {
            check_and_free(p, &l);
        }
    }
}
