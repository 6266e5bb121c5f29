//! The large-region allocator: requests above the largest size class.
//!
//! Up to [`LARGE_MAX`], a request takes a run of OS pages carved, best fit,
//! from a large segment shared by all threads; a freed run merges with free
//! neighbours. Run metadata sits out of line in the segment header (one entry
//! per OS page, meaningful at the first and last page of each run), so a free
//! run's memory can be given back to the system and stay untouched.
//!
//! ```text
//!  large segment: | header: runs[] | used 3p | free 5p (in bin) | used 1p | ...
//! ```
//!
//! Above `LARGE_MAX` a request gets a segment of its own (a *huge* block);
//! freed, the mapping is cached, and the next huge request that it can hold
//! takes it as it is, its surplus split off as a cached mapping of its own
//! when it is a segment or more: no `mremap`, no page faults.
//!
//! Release policy (`budget`): by time, freed runs and cached mappings that
//! stay unused for one to two `MALLOCATOR_DECAY_MS` (100 ms) go back to the
//! system at the next call into the large allocator (after a quiet spell of
//! two periods, at most 50 ms: all of it); by amount, they stay resident while they total at most twice
//! the recent peak of live large and huge bytes (at least
//! `MALLOCATOR_DIRTY_KIB`, default 2 MiB; see `budget::resident_budget`),
//! past which cached mappings are unmapped smallest first and the largest
//! runs purged until a quarter of the budget is free again. One entirely
//! free segment stays (warm, until the budget or the decay wants its
//! pages); others are unmapped. When a mapping fails, the caches go first.
//!
//! One file per mechanism: `runs` (large segments, their runs and size
//! bins), `huge` (blocks with a mapping of their own, and the cache of freed
//! ones), `budget` (the resident budget and the release of what is past it).
//! This file holds the state they share behind one lock, and the entry
//! points.

mod budget;
mod huge;
mod runs;

pub use budget::{release_caches, trim_all, trim_to_live};
pub use huge::{alloc_mapped, free_huge, resize_huge};

use crate::diag::counters as stats;
use crate::os::{OS_PAGE, align_up};
use crate::segment::{self, Kind, SEGMENT_SIZE, SegmentHeader};
use crate::sys::clock;
use crate::sys::lock::{SpinGuard, SpinLock};
use core::ptr::{NonNull, null_mut};
use huge::{HUGE_CACHE, HugeHeader, alloc_huge};
use runs::{BINS, FIRST, FREE, LargeSegment, RUNS, Run, Warm, block_index, release_run};

/// A large segment spans eight segment slots (32 MiB on x86_64, 16 MiB on
/// i686), so that blocks of several MiB share one coalescing pool: a freed
/// 3 MiB block serves a 1 MiB and a 2 MiB request from pages that are still
/// resident, where a mapping per block faults its pages in afresh (see
/// `docs/performance.md`, step 11). Blocks past the first slot are found
/// through the span table of [`crate::segment::map`].
pub const LARGE_SEGMENT_SIZE: usize = 8 * SEGMENT_SIZE;

/// Above this a block gets its own mapping: a quarter of a large segment
/// keeps the best fit from stranding most of a segment behind one block
/// (8 MiB on x86_64, 4 MiB on i686).
pub const LARGE_MAX: usize = LARGE_SEGMENT_SIZE / 4;

/// A block that `realloc` moves to a size above this gets a mapping of its
/// own, so that it keeps growing by moving pages (`mremap`) rather than by
/// copying them (1 MiB on x86_64, 512 KiB on i686: glibc's mmap threshold
/// starts at 128 KiB, and copying a MiB costs about what the `mremap` does).
pub const MAPPED_GROWTH_MIN: usize = SEGMENT_SIZE / 4;

/// What the three mechanisms share, behind one lock: the bins of free runs
/// (`runs`), the cache of freed huge mappings (`huge`), and the peak that
/// sets the resident budget (`budget`). Each keeps its `impl State` in its
/// own file.
struct State {
    bins: [*mut Run; BINS],
    nonempty: u64,
    /// Bytes of free runs that may be resident: the sum of their
    /// `resident` pages.
    dirty: usize,
    /// Freed huge mappings kept for reuse (resident: reusing one costs no
    /// page faults), oldest first, and their total size.
    huge_cache: [*mut HugeHeader; HUGE_CACHE],
    huge_cached: usize,
    /// Live large and huge bytes, decaying peak (see `budget::PEAK_DECAY`).
    recent_peak: usize,
    /// When (ms) the decay last aged the free memory, and when the large
    /// allocator was last called (see `budget`).
    last_tick: u64,
    last_call: u64,
}

// SAFETY: the state is only reached through its lock.
unsafe impl Send for State {}

static LARGE: SpinLock<State> = SpinLock::new(State {
    bins: [null_mut(); BINS],
    nonempty: 0,
    dirty: 0,
    huge_cache: [null_mut(); HUGE_CACHE],
    huge_cached: 0,
    recent_peak: 0,
    last_tick: 0,
    last_call: 0,
});

/// The shared state, locked, after the decay had its turn: every call that
/// allocates or frees is a moment where free memory that stayed unused long
/// enough goes back (there is no background thread).
fn enter() -> SpinGuard<'static, State> {
    let mut state = LARGE.lock();
    state.decay(clock::now_ms(), crate::diag::options::decay_ms());
    state
}

/// Freed memory the large allocator keeps: the bytes of free runs that may
/// be resident, and of cached huge mappings (for the statistics).
pub fn kept() -> (usize, usize) {
    let state = LARGE.lock();
    (state.dirty, state.huge_cached)
}

/// Holds the large allocator's lock across `fork` (see [`crate::api::fork`]).
pub fn lock_for_fork() {
    LARGE.lock_forever();
}

/// # Safety
/// After [`lock_for_fork`], in the parent or the child.
pub unsafe fn unlock_after_fork() {
    // SAFETY: per the contract.
    unsafe { LARGE.force_unlock() };
}

/// Why a pointer into a large or huge segment is not a live block.
pub use crate::diag::error::BadBlock;

/// Allocates `size` bytes aligned to `align` (a power of two); sizes above
/// [`LARGE_MAX`] get a mapping of their own. Also says whether the block is
/// known to read as zeros (fresh or purged pages), which spares `calloc` a
/// `memset` that would make every page resident.
pub fn alloc(size: usize, align: usize) -> (*mut u8, bool) {
    let align = align.max(OS_PAGE);
    // A zero-byte request still takes a page: every block is distinct.
    let Some(bytes) = align_up(size.max(1), OS_PAGE) else { return (null_mut(), false) };
    if bytes > LARGE_MAX || align > LARGE_MAX {
        return alloc_huge(bytes, align);
    }
    let pages = bytes / OS_PAGE;
    // Room to move the start to an aligned page.
    let search = pages + align / OS_PAGE - 1;
    let mut state = enter();
    let mut run = state.find(search);
    if run.is_null() {
        if !state.grow() {
            // No room for a large segment (a fragmented 32-bit address
            // space, a full span table): a mapping of the block's size may
            // still fit.
            drop(state);
            return alloc_huge(bytes, align);
        }
        run = state.find(search);
    }
    // SAFETY: the run is free in a live segment; we hold the lock.
    let (len, warm, aged) = unsafe { ((*run).len as usize, Run::warm(run), Run::aged(run)) };
    state.remove(run);
    let (seg, index) = LargeSegment::of_run(run);
    // SAFETY: as above.
    let seg = unsafe { &mut *seg };
    let addr = align_up(seg.page_addr(index), align).unwrap_or(0);
    let start = (addr - seg.page_addr(index)) / OS_PAGE + index;
    // Each part keeps the bound of its own pages.
    let (head, end) = (start - index, start - index + pages);
    if head > 0 {
        state.insert(seg, index, head, warm.part(len, 0, head), aged);
    }
    if end < len {
        state.insert(seg, start + pages, len - end, warm.part(len, end, len), aged);
    }
    seg.mark(start, pages, 0);
    stats::LARGE_ALLOCATIONS.add(1);
    stats::LARGE_LIVE_BYTES.add(bytes as u64);
    (addr as *mut u8, warm.part(len, head, end) == Warm::COLD)
}

/// Frees a large block.
///
/// # Safety
/// `seg` is a live large segment containing `p`.
pub unsafe fn free(seg: NonNull<SegmentHeader>, p: *mut u8) -> Result<(), BadBlock> {
    let mut state = enter();
    still_there(seg, p)?;
    let seg = seg.as_ptr().cast::<LargeSegment>();
    // SAFETY: the segment is live (it holds `p`) and we hold the lock.
    let s = unsafe { &mut *seg };
    let index = block_index(s, p)?;
    let len = s.runs[index].len as usize;
    stats::LARGE_FREES.add(1);
    stats::LARGE_LIVE_BYTES.sub((len * OS_PAGE) as u64);
    // SAFETY: the run at `index` is a live block, now given up.
    unsafe { release_run(&mut state, seg, index, len) };
    Ok(())
}

/// Whether the segment a free found for `p` before it took the lock is
/// still `p`'s: large segments and huge mappings are given back under the
/// lock, so from here on the header stays. A free that found one a moment
/// before it went read only its first page, which stays mapped as a
/// tombstone (`segment::tombstones`); it is a free of a block already freed.
fn still_there(seg: NonNull<SegmentHeader>, p: *mut u8) -> Result<(), BadBlock> {
    if segment::find(p) == Some(seg) { Ok(()) } else { Err(BadBlock::DoubleFree) }
}

/// Resizes a large block without moving it: shrinking gives the tail back,
/// growing takes from a free run right after it. `Ok(false)` when it
/// cannot; an error when `p` is no longer a live block (another thread freed
/// it since the caller checked it, and its segment may be gone).
///
/// # Safety
/// `seg` is a large segment that held `p`, a live block of the caller.
pub unsafe fn resize_in_place(seg: NonNull<SegmentHeader>, p: *mut u8, new_size: usize) -> Result<bool, BadBlock> {
    let pages = new_size.div_ceil(OS_PAGE).max(1);
    let mut state = LARGE.lock();
    still_there(seg, p)?;
    let seg = seg.as_ptr().cast::<LargeSegment>();
    // SAFETY: as in `free`.
    let s = unsafe { &mut *seg };
    let index = block_index(s, p)?;
    let len = s.runs[index].len as usize;
    if pages < len {
        stats::LARGE_LIVE_BYTES.sub(((len - pages) * OS_PAGE) as u64);
        s.mark(index, pages, 0);
        // SAFETY: the tail is part of the caller's block, now given up.
        unsafe { release_run(&mut state, seg, index + pages, len - pages) };
        return Ok(true);
    }
    let right = index + len;
    if pages == len {
        return Ok(true);
    }
    if right >= RUNS || s.runs[right].flags & (FIRST | FREE) != FIRST | FREE {
        return Ok(false);
    }
    let free_len = s.runs[right].len as usize;
    if len + free_len < pages {
        return Ok(false);
    }
    stats::LARGE_LIVE_BYTES.add(((pages - len) * OS_PAGE) as u64);
    // SAFETY: `right` is the first entry of a free run (checked above).
    let (warm, aged) = unsafe { (Run::warm(s.run(right)), Run::aged(s.run(right))) };
    state.remove(s.run(right));
    // The free run's first page is now inside the block: not a block start.
    s.runs[right].flags = 0;
    s.mark(index, pages, 0);
    let rest = len + free_len - pages;
    if rest > 0 {
        state.insert(s, index + pages, rest, warm.part(free_len, free_len - rest, free_len), aged);
    }
    Ok(true)
}

/// Usable bytes of the large or huge block at `p`, if `p` is a live block.
///
/// # Safety
/// `seg` is a live large or huge segment containing `p`.
pub unsafe fn usable_size(seg: NonNull<SegmentHeader>, p: *const u8) -> Result<usize, BadBlock> {
    // SAFETY: per the contract; the large segment's table is read under the lock.
    unsafe {
        if (*seg.as_ptr()).kind == Kind::Huge {
            let h = seg.as_ptr().cast::<HugeHeader>();
            return match (*h).user {
                0 => Err(BadBlock::DoubleFree),
                user if user != p as usize => Err(BadBlock::Invalid),
                _ => Ok((*h).header.size - (p as usize - h as usize)),
            };
        }
        let _state = LARGE.lock();
        // Past its first page a returned segment's table is unmapped.
        still_there(seg, p.cast_mut())?;
        let s = &*seg.as_ptr().cast::<LargeSegment>();
        let index = block_index(s, p.cast_mut())?;
        Ok(s.runs[index].len as usize * OS_PAGE)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::segment;
    use std::sync::Mutex;

    /// The large allocator is shared: tests that check placement (or fill
    /// the span table) run alone.
    pub static SERIAL: Mutex<()> = Mutex::new(());

    fn free_ok_huge(p: *mut u8) {
        let seg = segment::find(p).unwrap();
        // SAFETY: `p` is a live huge block of ours in `seg`.
        assert_eq!(unsafe { free_huge(seg, p) }, Ok(()));
    }

    fn free_ok(p: *mut u8) {
        let seg = segment::find(p).unwrap();
        // SAFETY: `p` is a live block of ours in `seg`.
        assert_eq!(unsafe { free(seg, p) }, Ok(()));
    }

    /// Frees a live large or huge block of the test, which must succeed.
    pub(crate) fn free_block(p: *mut u8) {
        let seg = segment::find(p).unwrap();
        // SAFETY: `p` is a live block of ours in `seg`.
        let result = unsafe {
            match (*seg.as_ptr()).kind {
                Kind::Large => free(seg, p),
                _ => free_huge(seg, p),
            }
        };
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn freed_neighbours_coalesce_and_bad_frees_are_refused() {
        let _serial = SERIAL.lock().unwrap();
        let (a, _) = alloc(5 * OS_PAGE, OS_PAGE);
        let (b, _) = alloc(5 * OS_PAGE, OS_PAGE);
        let (c, _) = alloc(5 * OS_PAGE, OS_PAGE);
        assert_eq!(b as usize - a as usize, 5 * OS_PAGE, "best fit carves consecutively");
        let seg = segment::find(b).unwrap();
        // SAFETY: the pointers are in `seg`; the bad frees are refused without
        // touching the segment.
        unsafe {
            assert_eq!(free(seg, b.add(OS_PAGE)), Err(BadBlock::Invalid), "interior page");
            assert_eq!(free(seg, b.add(8)), Err(BadBlock::Invalid), "unaligned");
        }
        free_ok(b);
        // SAFETY: as above.
        assert_eq!(unsafe { free(seg, b) }, Err(BadBlock::DoubleFree));
        free_ok(a);
        free_ok(c);
        // All three and the rest of the segment merged: a block the size of
        // the three starts where `a` did.
        let (d, _) = alloc(15 * OS_PAGE, OS_PAGE);
        assert_eq!(d, a);
        // SAFETY: `d` is live.
        assert_eq!(unsafe { usable_size(segment::find(d).unwrap(), d) }, Ok(15 * OS_PAGE));
        free_ok(d);
    }

    #[test]
    fn blocks_past_the_first_slot_and_a_full_span_table() {
        let _serial = SERIAL.lock().unwrap();
        // Three LARGE_MAX blocks fill a large segment, so 3 * 70 blocks need
        // more large segments than the span table holds (64): the rest must
        // come as mappings of their own. Nothing is touched, so this costs
        // address space only.
        let blocks: std::vec::Vec<*mut u8> = (0..210).map(|_| alloc(LARGE_MAX, OS_PAGE).0).collect();
        assert!(blocks.iter().all(|p| !p.is_null()));
        let mut sorted = blocks.clone();
        sorted.sort();
        assert!(sorted.windows(2).all(|w| w[1] as usize - w[0] as usize >= LARGE_MAX), "blocks overlap");
        let past_first_slot = blocks.iter().filter(|&&p| segment::find_in_first_slot(p).is_none()).count();
        assert!(past_first_slot > 0, "some blocks start past their segment's first slot");
        let own_mappings = blocks
            .iter()
            // SAFETY: the blocks are live; `find` gives their segments.
            .filter(|&&p| unsafe { (*segment::find(p).unwrap().as_ptr()).kind } == Kind::Huge)
            .count();
        assert!(own_mappings > 0, "with the span table full, blocks get mappings of their own");
        blocks.into_iter().for_each(free_block);
        release_caches();
    }

    #[test]
    fn a_late_free_of_a_returned_huge_mapping_reads_its_tombstone() {
        let _serial = SERIAL.lock().unwrap();
        let (p, _) = alloc(LARGE_MAX + 1, OS_PAGE);
        let seg = segment::find(p).unwrap();
        free_ok_huge(p);
        // Out of the cache and given back: what a free that found the
        // mapping a moment before reads must still be mapped (it faulted
        // when the whole mapping went), and the free is refused.
        release_caches();
        assert!(segment::find(p).is_none());
        // SAFETY: as a late free would, with the segment it found.
        unsafe {
            assert_eq!((*seg.as_ptr()).kind, Kind::Huge);
            assert_eq!(free_huge(seg, p), Err(BadBlock::DoubleFree));
        }
    }

    #[test]
    fn a_late_size_query_or_resize_of_a_returned_large_segment_reads_its_tombstone() {
        let _serial = SERIAL.lock().unwrap();
        // Blocks of 100 pages, so that the last one's run entry lies past
        // the first page of the segment (the tombstone's).
        let blocks: [*mut u8; 4] = core::array::from_fn(|_| alloc(100 * OS_PAGE, OS_PAGE).0);
        let p = blocks[3];
        let seg = segment::find(p).unwrap();
        let entry = (p as usize - seg.as_ptr() as usize) / OS_PAGE * size_of::<Run>();
        assert!(entry >= OS_PAGE, "the run entry at byte {entry} of the table is in the first page");
        // SAFETY: `p` is live in `seg`.
        assert_eq!(unsafe { usable_size(seg, p) }, Ok(100 * OS_PAGE));
        blocks.into_iter().for_each(free_ok);
        release_caches();
        assert!(segment::find(p).is_none(), "the emptied segment went back");
        // SAFETY: as a late `malloc_usable_size` or `realloc` would, with
        // the segment it found: only the tombstone's first page is mapped
        // (reading the run table past it faulted before), and both are
        // refused.
        unsafe {
            assert_eq!((*seg.as_ptr()).kind, Kind::Large);
            assert_eq!(usable_size(seg, p), Err(BadBlock::DoubleFree));
            assert_eq!(resize_in_place(seg, p, 200 * OS_PAGE), Err(BadBlock::DoubleFree));
        }
    }

    #[test]
    fn alignment_and_huge_blocks() {
        let _serial = SERIAL.lock().unwrap();
        let (p, _) = alloc(40_000, 64 * 1024);
        assert_eq!(p as usize % (64 * 1024), 0);
        free_ok(p);
        // While a large block is live, a freed huge mapping stays cached
        // (once none is, the budget drops to its minimum).
        let (keep, _) = alloc(100 * 1024, OS_PAGE);
        let (h, zeroed) = alloc(LARGE_MAX + 1, 8);
        assert!(zeroed);
        assert_eq!(h as usize % OS_PAGE, 0);
        let seg = segment::find(h).unwrap();
        // SAFETY: `h` is live in `seg`.
        unsafe {
            assert!(usable_size(seg, h).unwrap() > LARGE_MAX);
            assert_eq!(free_huge(seg, h.add(OS_PAGE)), Err(BadBlock::Invalid));
            assert_eq!(free_huge(seg, h), Ok(()));
            assert_eq!(free_huge(seg, h), Err(BadBlock::DoubleFree), "a cached mapping is no block");
        }
        let (again, zeroed) = alloc(LARGE_MAX + 1, 8);
        assert_eq!(again, h, "the cached mapping is reused");
        assert!(!zeroed, "a reused mapping may hold old data");
        free_ok_huge(again);
        free_ok(keep);
        assert!(release_caches());
        assert!(segment::find(h).is_none(), "released caches are unmapped");
        let (a, _) = alloc(1 << 20, LARGE_MAX);
        assert_eq!(a as usize % LARGE_MAX, 0, "the pool serves alignments up to LARGE_MAX");
        free_ok(a);
        assert!(alloc(1 << 20, 2 * LARGE_MAX).0.is_null(), "larger alignments are refused");
    }
}
