//! Threads: cross-thread frees, threads that exit with live blocks, heaps
//! adopted by new threads. Every block carries a pattern checked at free.

use mallocator::alloc::{alloc, free};
use std::sync::mpsc;
use std::thread;

/// A block address and its size; the block is filled with a byte derived
/// from its address.
#[derive(Clone, Copy)]
struct Block(usize, usize);

fn fill_of(p: usize) -> u8 {
    (p >> 4) as u8 | 1
}

fn make(size: usize) -> Block {
    let p = alloc(size, 8) as usize;
    assert!(p != 0);
    // SAFETY: a live block of `size` bytes.
    unsafe { std::ptr::write_bytes(p as *mut u8, fill_of(p), size) };
    Block(p, size)
}

fn release(b: Block) {
    // SAFETY: `b` is live and filled by `make`.
    let bytes = unsafe { std::slice::from_raw_parts(b.0 as *const u8, b.1) };
    assert!(bytes.iter().all(|&x| x == fill_of(b.0)), "block {:#x} corrupted", b.0);
    // SAFETY: live, forgotten after this.
    unsafe { free(b.0 as *mut u8) };
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

fn size_from(r: u64) -> usize {
    match r % 16 {
        0 => 16_385 + (r >> 8) as usize % 200_000,
        1 => 1 + (r >> 8) as usize % 16_384,
        _ => 1 + (r >> 8) as usize % 512,
    }
}

#[test]
fn producer_consumer_frees_everything_remotely() {
    let (tx, rx) = mpsc::sync_channel::<Vec<Block>>(16);
    let consumer = thread::spawn(move || {
        let mut n = 0;
        for batch in rx {
            n += batch.len();
            batch.into_iter().for_each(release);
        }
        n
    });
    let producers: Vec<_> = (0..3u64)
        .map(|t| {
            let tx = tx.clone();
            thread::spawn(move || {
                let mut seed = 0x9e37_79b9 + t;
                for _ in 0..200 {
                    let batch: Vec<Block> = (0..100).map(|_| make(size_from(xorshift(&mut seed)))).collect();
                    tx.send(batch).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    producers.into_iter().for_each(|p| p.join().unwrap());
    assert_eq!(consumer.join().unwrap(), 3 * 200 * 100);
}

#[test]
fn blocks_outlive_their_threads_and_heaps_are_adopted() {
    let mut carried: Vec<Block> = Vec::new();
    for round in 0..6u64 {
        // Threads free what the previous round's (exited) threads left, and
        // leave some of their own behind.
        let share: Vec<Vec<Block>> = (0..4).map(|i| carried.iter().skip(i).step_by(4).copied().collect()).collect();
        let handles: Vec<_> = share
            .into_iter()
            .enumerate()
            .map(|(i, old)| {
                let old: Vec<(usize, usize)> = old.into_iter().map(|b| (b.0, b.1)).collect();
                thread::spawn(move || {
                    old.into_iter().map(|(p, s)| Block(p, s)).for_each(release);
                    let mut seed = round * 97 + i as u64 + 1;
                    let mut mine: Vec<Block> = (0..2000).map(|_| make(size_from(xorshift(&mut seed)))).collect();
                    let kept = mine.split_off(1000);
                    mine.into_iter().for_each(release);
                    kept.into_iter().map(|b| (b.0, b.1)).collect::<Vec<_>>()
                })
            })
            .collect();
        carried = handles.into_iter().flat_map(|h| h.join().unwrap()).map(|(p, s)| Block(p, s)).collect();
        let mut spans: Vec<(usize, usize)> = carried.iter().map(|b| (b.0, b.1)).collect();
        spans.sort_unstable();
        assert!(spans.windows(2).all(|w| w[0].0 + w[0].1 <= w[1].0), "live blocks overlap");
    }
    carried.into_iter().for_each(release);
}

#[test]
fn many_threads_allocate_distinct_blocks_concurrently() {
    let handles: Vec<_> = (0..8u64)
        .map(|t| {
            thread::spawn(move || {
                let mut seed = t + 11;
                let mut live: Vec<Block> = Vec::new();
                for _ in 0..20_000 {
                    let r = xorshift(&mut seed);
                    if r.is_multiple_of(3) && !live.is_empty() {
                        let i = (r >> 8) as usize % live.len();
                        release(live.swap_remove(i));
                    } else {
                        live.push(make(1 + (r >> 16) as usize % 1024));
                    }
                }
                live.into_iter().for_each(release);
            })
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
}

/// Seconds the randomized stress runs (`MALLOCATOR_STRESS_SECONDS`, default 3:
/// a bound for CI; run it longer by hand).
fn stress_seconds() -> u64 {
    std::env::var("MALLOCATOR_STRESS_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3)
}

#[test]
fn randomized_stress_with_cross_thread_frees_and_thread_turnover() {
    use mallocator::alloc::realloc;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    const WORKERS: usize = 4;
    // Generations of threads the stress runs however slow the machine (an
    // instrumented build, a loaded CI host): each stops at its share of
    // the time, so that the turnover is tested within the bound.
    const GENERATIONS: u32 = 4;
    let total = Duration::from_secs(stress_seconds());
    let deadline = Instant::now() + total;
    // One mailbox per worker slot: blocks sent there are freed by whichever
    // thread runs that slot next (often not the allocating one, or a thread
    // created after the allocating one exited).
    type Mailboxes = Vec<Mutex<Vec<(usize, usize)>>>;
    let mailboxes: Arc<Mailboxes> = Arc::new((0..WORKERS).map(|_| Mutex::new(Vec::new())).collect());
    let mut generation = 0u64;
    while generation < u64::from(GENERATIONS) || Instant::now() < deadline {
        generation += 1;
        let share = Instant::now() + total / GENERATIONS;
        let handles: Vec<_> = (0..WORKERS)
            .map(|slot| {
                let mailboxes = Arc::clone(&mailboxes);
                thread::spawn(move || {
                    let mut seed = generation * 1000 + slot as u64 + 1;
                    let mut live: Vec<Block> = Vec::new();
                    for _ in 0..5_000 {
                        if Instant::now() > share {
                            break;
                        }
                        let r = xorshift(&mut seed);
                        match r % 8 {
                            0..=3 => live.push(make(size_from(r >> 3))),
                            4 if !live.is_empty() => release(live.swap_remove((r >> 8) as usize % live.len())),
                            5 if !live.is_empty() => {
                                // Grow or shrink, checking the kept prefix.
                                let i = (r >> 8) as usize % live.len();
                                let Block(p, size) = live[i];
                                let new_size = size_from(r >> 20);
                                // SAFETY: `p` is live; after a non-null result only the new pointer is used.
                                let q = unsafe { realloc(p as *mut u8, new_size, 8) } as usize;
                                assert!(q != 0);
                                // SAFETY: `q` holds min(size, new_size) bytes of the old contents.
                                let kept = unsafe { std::slice::from_raw_parts(q as *const u8, size.min(new_size)) };
                                assert!(kept.iter().all(|&b| b == fill_of(p)), "realloc lost contents");
                                // SAFETY: `q` is live with `new_size` bytes.
                                unsafe { std::ptr::write_bytes(q as *mut u8, fill_of(q), new_size) };
                                live[i] = Block(q, new_size);
                            }
                            6 if !live.is_empty() => {
                                let b = live.swap_remove((r >> 8) as usize % live.len());
                                mailboxes[(r >> 40) as usize % WORKERS].lock().unwrap().push((b.0, b.1));
                            }
                            _ => {
                                let mail = std::mem::take(&mut *mailboxes[slot].lock().unwrap());
                                mail.into_iter().map(|(p, s)| Block(p, s)).for_each(release);
                            }
                        }
                    }
                    // Exit with some blocks still live, handed to the mailboxes.
                    for (i, b) in live.into_iter().enumerate() {
                        mailboxes[i % WORKERS].lock().unwrap().push((b.0, b.1));
                    }
                })
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
    }
    for mailbox in mailboxes.iter() {
        std::mem::take(&mut *mailbox.lock().unwrap()).into_iter().map(|(p, s)| Block(p, s)).for_each(release);
    }
}
