//! Statistics count what happens: allocations, frees, remote frees, large and
//! huge blocks, mappings. The tests take turns (the harness runs them on
//! threads of one process, and the requested-bytes total is the process's).

use mallocator::alloc::{alloc, free};
use mallocator::stats::snapshot;

/// A class the harness does not use: 14 KiB blocks.
const SIZE: usize = 13_000;

static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn counters_follow_allocations_frees_and_threads() {
    let _turn = TURN.lock().unwrap();
    let class = mallocator::size_class::class_of(SIZE);
    let before = snapshot();
    let blocks: Vec<usize> = (0..100).map(|_| alloc(SIZE, 8) as usize).collect();
    let during = snapshot();
    let c = during.classes[class];
    assert_eq!(c.block_size, mallocator::size_class::class_size(class) as u64);
    assert_eq!(c.allocations - before.classes[class].allocations, 100);
    assert_eq!(c.live_blocks - before.classes[class].live_blocks, 100);
    // Requested bytes are counted per heap, not per class: the vector's own
    // block may count too.
    let requested = during.requested_bytes - before.requested_bytes;
    assert!((100 * SIZE as u64..=100 * SIZE as u64 + 4096).contains(&requested), "{requested}");
    assert!(during.mapped_bytes >= 100 * SIZE as u64);
    assert!(during.peak_mapped_bytes >= during.mapped_bytes);

    // Half freed here, half by another thread.
    let (mine, theirs) = blocks.split_at(50);
    // SAFETY: the blocks are live and forgotten after this.
    mine.iter().for_each(|&p| unsafe { free(p as *mut u8) });
    let theirs = theirs.to_vec();
    std::thread::spawn(move || {
        // SAFETY: as above.
        theirs.iter().for_each(|&p| unsafe { free(p as *mut u8) });
    })
    .join()
    .unwrap();
    // Remote frees are counted when the owner takes them back: allocate once
    // more in the class to drain them (its page is full, so the slow path runs).
    let extra: Vec<usize> = (0..60).map(|_| alloc(SIZE, 8) as usize).collect();
    let after = snapshot();
    assert!(after.remote_frees - before.remote_frees >= 50);
    assert_eq!(after.classes[class].frees - before.classes[class].frees, 100);
    // SAFETY: as above.
    extra.iter().for_each(|&p| unsafe { free(p as *mut u8) });
    assert_eq!(snapshot().classes[class].live_blocks, before.classes[class].live_blocks);
}

#[test]
fn large_and_huge_blocks_and_mappings_are_counted() {
    let _turn = TURN.lock().unwrap();
    let before = snapshot();
    let large = alloc(100 * 1024, 8);
    let huge = alloc(64 << 20, 8);
    let during = snapshot();
    assert_eq!(during.large_allocations - before.large_allocations, 1);
    assert_eq!(during.large_live_bytes - before.large_live_bytes, 100 * 1024);
    assert_eq!(during.huge_allocations - before.huge_allocations, 1);
    assert!(during.huge_live_bytes - before.huge_live_bytes >= 64 << 20);
    assert!(during.mmap_calls > before.mmap_calls);
    // SAFETY: both are live and forgotten after this.
    unsafe {
        free(large);
        free(huge);
    }
    let after = snapshot();
    assert_eq!(after.large_frees - before.large_frees, 1);
    assert_eq!(after.huge_frees - before.huge_frees, 1);
    assert_eq!(after.large_live_bytes, before.large_live_bytes);
    assert_eq!(after.huge_live_bytes, before.huge_live_bytes);
    // The freed mapping is kept warm for the next huge request (within the
    // resident budget, twice the recent live peak) or unmapped.
    assert!(after.mapped_bytes <= during.mapped_bytes);
}

#[test]
fn the_footprint_finds_written_blocks_resident_and_emptied_pages_kept() {
    let _turn = TURN.lock().unwrap();
    let class = mallocator::size_class::class_of(SIZE);
    let before = mallocator::stats::footprint();
    let blocks: Vec<usize> = (0..100).map(|_| alloc(SIZE, 8) as usize).collect();
    // SAFETY: each block holds SIZE bytes, ours.
    blocks.iter().for_each(|&p| unsafe { std::ptr::write_bytes(p as *mut u8, 1, SIZE) });
    let during = mallocator::stats::footprint();
    // 100 blocks of 14 KiB, four to a 64 KiB page: 25 pages, every byte
    // written (and nothing past the page is counted).
    let pages = during.class_pages[class] - before.class_pages[class];
    let resident = during.class_resident[class] - before.class_resident[class];
    assert!((25..=26).contains(&pages), "{pages} pages");
    assert!(resident >= 100 * SIZE as u64 && resident <= pages * 65536, "{resident} bytes in {pages} pages");
    assert!(during.bitmap_bytes >= during.class_pages[class] * 64);
    assert!(during.segments >= 1 && during.header_resident >= 4096);
    // SAFETY: the blocks are live and forgotten after this.
    blocks.iter().for_each(|&p| unsafe { free(p as *mut u8) });
    let after = mallocator::stats::footprint();
    // Emptied, the pages leave the class: kept empty (the heap's ring, 64
    // pages) or given back with their bitmaps. (Other tests' threads empty
    // pages meanwhile: the empty pages are counted, not compared.)
    assert_eq!(after.class_pages[class], before.class_pages[class]);
    assert!(after.empty_resident <= after.empty_pages * 65536);
}
