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
//! freed, the mapping is cached for the next huge request (resized with
//! `mremap`).
//!
//! Release policy: freed runs and cached huge mappings stay resident while
//! they total at most twice the recent peak of live large and huge bytes (at
//! least `MALLOCATOR_DIRTY_KIB`, default 2 MiB; see [`resident_budget`]).
//! Past that, cached mappings are unmapped oldest first, then the resident
//! pages of free runs are counted (`mincore`) and the largest runs purged
//! until a quarter of the budget is free again. One entirely free segment
//! stays (warm, until the budget wants its pages); others are unmapped. When
//! a mapping fails, the caches go first.

use crate::diag::counters as stats;
use crate::diag::options;
use crate::os::{self, OS_PAGE, align_up};
use crate::segment::{self, Kind, SEGMENT_SIZE, SegmentHeader};
use crate::sys::lock::SpinLock;
use core::ptr::{NonNull, null_mut};

/// A large segment spans eight segment slots (32 MiB on x86_64, 16 MiB on
/// i686), so that blocks of several MiB share one coalescing pool: a freed
/// 3 MiB block serves a 1 MiB and a 2 MiB request from pages that are still
/// resident. With a mapping per block, the `large_blocks` benchmark (blocks
/// of 4 KiB..4 MiB) page-faulted 132,000 times where tcmalloc's page heap
/// faulted 15,000 times and ran 8x faster. Blocks past the first slot are
/// found through the span table of [`crate::segment::map`].
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

const RUNS: usize = LARGE_SEGMENT_SIZE / OS_PAGE;

/// Entry flags: a run's first page, its last page, a free run.
const FIRST: u16 = 1;
const LAST: u16 = 2;
const FREE: u16 = 4;

/// Per OS page of a large segment. `len` and `flags` are meaningful at the
/// first and last page of a run; `resident` and the links at the first page
/// of a free run.
#[repr(C)]
struct Run {
    len: u32,
    flags: u16,
    /// Pages of the free run that may be resident (an upper bound: freed
    /// since the last purge); 0 means the run reads as zeros.
    resident: u16,
    next: *mut Run,
    prev: *mut Run,
}
const _: () = assert!(RUNS <= u16::MAX as usize, "page counts fit `resident`");

#[repr(C)]
struct LargeSegment {
    header: SegmentHeader,
    runs: [Run; RUNS],
}

/// Pages at the start of a large segment taken by its header.
const HEADER_PAGES: usize = size_of::<LargeSegment>().div_ceil(OS_PAGE);
const _: () = assert!(2 * (LARGE_MAX / OS_PAGE) < RUNS - HEADER_PAGES - 1, "an aligned LARGE_MAX block fits");

/// The first page a large segment hands out: after the header, and in secure
/// mode after a guard page.
fn first_page() -> usize {
    HEADER_PAGES + options::secure() as usize
}

/// Pages a large segment can hand out.
fn usable_pages() -> usize {
    RUNS - first_page()
}

/// Free runs of 1..=16 pages have a bin each; longer ones four bins per
/// doubling. 53 bins on x86_64, so one `u64` says which are non-empty.
const EXACT_BINS: usize = 16;
const BINS: usize = bin_of(RUNS) + 1;
const _: () = assert!(BINS <= 64);

/// Runs examined in a bin before settling for the best seen (best effort:
/// bins are narrow, so the first few are close to the best).
const BEST_FIT_SCAN: usize = 8;

const fn bin_of(pages: usize) -> usize {
    if pages <= EXACT_BINS {
        return pages - 1;
    }
    let bit = (usize::BITS - 1 - pages.leading_zeros()) as usize;
    EXACT_BINS + (bit - EXACT_BINS.trailing_zeros() as usize) * 4 + ((pages >> (bit - 2)) & 3)
}

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
    /// Live large and huge bytes, decaying peak (see [`PEAK_DECAY`]).
    recent_peak: usize,
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
});

/// Freed huge mappings kept at most (within the resident budget below).
const HUGE_CACHE: usize = 16;

/// Share of the recent live peak forgotten per release: the peak decays by
/// about two thirds over 64 frees. Fluctuations of the live bytes over a few
/// dozen frees keep their warm pages (`large_blocks` replaces one of 32
/// blocks per step); a program that frees its large blocks for good gets
/// their memory back within a few dozen frees.
const PEAK_DECAY: usize = 256;

/// What freed large memory may stay resident: twice the recent peak of the
/// live large and huge bytes, at least `MALLOCATOR_DIRTY_KIB` (default
/// 2 MiB). A program that keeps replacing large blocks reuses warm pages
/// instead of faulting in fresh ones, which is what costs there. Measured on
/// `large_blocks` (`bench/build/64/large mode=blocks live=32 iters=4000`):
/// with twice the *current* live bytes, dips of the live set purged 470 MB
/// over the run (37,000 page faults, 0.076 s); never purging faults 11,900
/// times (0.033 s, tcmalloc 0.031 s) at the same 48.9 MB peak RSS.
fn resident_budget(recent_peak: usize) -> usize {
    options::dirty_limit().max(2 * recent_peak)
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

/// Returns the memory kept for reuse to the system (after a mapping failed);
/// true if there was any, so that retrying the mapping may succeed.
pub fn release_caches() -> bool {
    LARGE.lock().release_caches()
}

/// Purges free large memory down to the budget of the live large bytes now
/// (forgetting their recent peak). Called when a thread maps a new small
/// segment: while the program's small blocks grow, free large pages that no
/// large request reused would only add to its resident size. Measured on the
/// `sqlite` benchmark (whose few large blocks are sort buffers freed while
/// its page cache grows): peak RSS 46.5 MB without, 38.6 MB with (as with
/// a mapping per block above 1 MiB; glibc 32.6 MB).
pub fn trim_to_live() {
    let mut state = LARGE.lock();
    state.recent_peak = 0;
    state.trim(0);
}

/// Why a pointer into a large or huge segment is not a live block.
pub use crate::diag::error::BadBlock;

impl LargeSegment {
    fn run(&mut self, index: usize) -> *mut Run {
        &mut self.runs[index]
    }

    fn of_run(run: *mut Run) -> (*mut LargeSegment, usize) {
        let seg = (run as usize & !(SEGMENT_SIZE - 1)) as *mut LargeSegment;
        // SAFETY: only the address of the runs array is computed.
        let first = unsafe { (&raw mut (*seg).runs).cast::<Run>() };
        (seg, (run as usize - first as usize) / size_of::<Run>())
    }

    fn page_addr(&self, index: usize) -> usize {
        self as *const Self as usize + index * OS_PAGE
    }

    /// Writes the boundary entries of a run of `len` pages at `index`.
    fn mark(&mut self, index: usize, len: usize, flags: u16) {
        let last = index + len - 1;
        self.runs[index].len = len as u32;
        self.runs[index].flags = flags | FIRST | if len == 1 { LAST } else { 0 };
        if len > 1 {
            self.runs[last].len = len as u32;
            self.runs[last].flags = flags | LAST;
        }
    }
}

impl State {
    /// Puts the free run of `len` pages at `index`, of which at most
    /// `resident` may be resident, in its bin.
    fn insert(&mut self, seg: &mut LargeSegment, index: usize, len: usize, resident: usize) {
        seg.mark(index, len, FREE);
        let bin = bin_of(len);
        let run = seg.run(index);
        self.dirty += resident * OS_PAGE;
        // SAFETY: `run` and the bin's head are entries of live large segments,
        // and we hold the lock.
        unsafe {
            (*run).resident = resident as u16;
            (*run).prev = null_mut();
            (*run).next = self.bins[bin];
            if !self.bins[bin].is_null() {
                (*self.bins[bin]).prev = run;
            }
        }
        self.bins[bin] = run;
        self.nonempty |= 1 << bin;
    }

    fn remove(&mut self, run: *mut Run) {
        // SAFETY: `run` is the first entry of a free run, linked in its bin.
        unsafe {
            let bin = bin_of((*run).len as usize);
            self.dirty -= (*run).resident as usize * OS_PAGE;
            let (prev, next) = ((*run).prev, (*run).next);
            if prev.is_null() {
                self.bins[bin] = next;
                if next.is_null() {
                    self.nonempty &= !(1 << bin);
                }
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
        }
    }

    /// The smallest free run of at least `pages` (best effort).
    fn find(&self, pages: usize) -> *mut Run {
        let mut bins = self.nonempty & (u64::MAX << bin_of(pages));
        while bins != 0 {
            let bin = bins.trailing_zeros() as usize;
            bins &= bins - 1;
            let mut best: *mut Run = null_mut();
            let mut run = self.bins[bin];
            let mut seen = 0;
            // SAFETY: bins link first entries of free runs of live segments.
            unsafe {
                while !run.is_null() && seen < BEST_FIT_SCAN {
                    let len = (*run).len as usize;
                    if len >= pages && (best.is_null() || len < (*best).len as usize) {
                        best = run;
                        if len == pages {
                            break;
                        }
                    }
                    run = (*run).next;
                    seen += 1;
                }
            }
            if !best.is_null() {
                return best;
            }
        }
        null_mut()
    }

    /// A new segment, its whole usable area one free run.
    fn grow(&mut self) -> bool {
        let created = segment::create(Kind::Large, LARGE_SEGMENT_SIZE)
            .or_else(|| self.release_caches().then(|| segment::create(Kind::Large, LARGE_SEGMENT_SIZE)).flatten());
        let Some(seg) = created else { return false };
        let seg = seg.as_ptr().cast::<LargeSegment>();
        // SAFETY: the segment is live and its header ours (we hold the lock);
        // the guard page is part of the fresh mapping.
        unsafe {
            if options::secure() {
                os::protect((*seg).page_addr(HEADER_PAGES) as *mut u8, OS_PAGE);
            }
            self.insert(&mut *seg, first_page(), usable_pages(), 0);
        }
        true
    }

    /// After `released` bytes were given up, keeps freed memory within the
    /// resident budget: unmaps cached huge mappings, oldest first, then
    /// purges free runs.
    fn trim(&mut self, released: usize) {
        let live = (stats::LARGE_LIVE_BYTES.get() + stats::HUGE_LIVE_BYTES.get()) as usize;
        // The live bytes peaked just before the release. A program that
        // freed all its large blocks gets their memory back at once.
        self.recent_peak = match live {
            0 => 0,
            _ => (live + released).max(self.recent_peak - self.recent_peak / PEAK_DECAY),
        };
        let budget = resident_budget(self.recent_peak);
        if self.dirty + self.huge_cached > budget {
            self.count_resident(budget.saturating_sub(self.huge_cached));
        }
        while self.dirty + self.huge_cached > budget {
            if self.huge_cached == 0 {
                self.purge_down_to(budget - budget / 4);
                return;
            }
            self.unmap_oldest_cached();
        }
    }

    /// Takes entry `i` out of the huge-mapping cache.
    fn take_cached_at(&mut self, i: usize) -> *mut HugeHeader {
        let h = self.huge_cache[i];
        self.huge_cache.copy_within(i + 1.., i);
        self.huge_cache[HUGE_CACHE - 1] = null_mut();
        // SAFETY: cached headers are live mappings of ours.
        self.huge_cached -= unsafe { (*h).header.size };
        h
    }

    /// Unmaps the oldest cached huge mapping (the cache is not empty).
    fn unmap_oldest_cached(&mut self) {
        let oldest = self.take_cached_at(0);
        // SAFETY: cached mappings hold no live block and only the cache
        // referred to this one.
        unsafe { segment::destroy(NonNull::new_unchecked(oldest).cast()) };
    }

    /// Unmaps every cached mapping and entirely free segment: the address
    /// space they hold is worth more than their warmth once a mapping fails.
    fn release_caches(&mut self) -> bool {
        let had = self.release_free_segments() | (self.huge_cached != 0);
        for h in core::mem::replace(&mut self.huge_cache, [null_mut(); HUGE_CACHE]) {
            if !h.is_null() {
                // SAFETY: as in `unmap_oldest_cached`.
                unsafe { segment::destroy(NonNull::new_unchecked(h).cast()) };
            }
        }
        self.huge_cached = 0;
        had
    }

    /// Takes the cached huge mapping that best serves `total` bytes: the
    /// smallest that is large enough, else the largest (to be grown: its
    /// resident pages still spare page faults).
    fn take_cached(&mut self, total: usize) -> Option<*mut HugeHeader> {
        // SAFETY: cached headers are live mappings of ours.
        let size = |h: *mut HugeHeader| unsafe { (*h).header.size };
        let cached = self.huge_cache.iter().enumerate().take_while(|(_, h)| !h.is_null());
        let fitting = cached.clone().filter(|&(_, &h)| size(h) >= total).min_by_key(|&(_, &h)| size(h));
        let (i, _) = fitting.or_else(|| cached.max_by_key(|&(_, &h)| size(h)))?;
        Some(self.take_cached_at(i))
    }

    /// Keeps a freed huge mapping for reuse (the newest; the oldest goes if
    /// the cache is full), then trims to the budget.
    fn cache_huge(&mut self, h: *mut HugeHeader) {
        if !self.huge_cache[HUGE_CACHE - 1].is_null() {
            self.unmap_oldest_cached();
        }
        let used = self.huge_cache.iter().take_while(|h| !h.is_null()).count();
        self.huge_cache[used] = h;
        // SAFETY: `h` is a live mapping of ours.
        let size = unsafe { (*h).header.size };
        self.huge_cached += size;
        self.trim(size);
    }

    /// Replaces the upper bounds of resident pages in free runs by what the
    /// system says is resident. The bounds only grow when a warm run is
    /// split (each part keeps the bound), so a program that reuses freed
    /// runs piecemeal would otherwise look far over budget: on
    /// `large_blocks` the bounds alone purged 430 MB over the run (43,000
    /// page faults); counted, nothing needs purging there. Largest runs
    /// first, and only until the count is within `target`: `mincore` costs a
    /// system call per 2 MiB, and on our `/dev/zero` mappings the kernel
    /// looks each absent page up in the file's page cache (counting every
    /// free run took 5 % of `large_blocks`' time).
    fn count_resident(&mut self, target: usize) {
        // SAFETY: `lower_resident` passes the range of a free run of ours.
        self.lower_resident(target, |addr, bytes| unsafe { os::resident_pages(addr, bytes) });
    }

    /// Purges free runs, largest first, until at most `target` bytes are
    /// resident. Largest first because a big free run is the least likely to
    /// be reused whole, and stopping at the target (not purging everything)
    /// keeps the warm pages that the next requests reuse without faults.
    fn purge_down_to(&mut self, target: usize) {
        self.lower_resident(target, |addr, bytes| {
            // SAFETY: as above; a free run holds no block.
            unsafe { os::purge(addr, bytes) };
            0
        });
    }

    /// Walks the free runs that may hold resident pages, largest first,
    /// while more than `target` bytes may be resident, and lowers each run's
    /// bound to what `resident(address, bytes)` returns for it.
    fn lower_resident(&mut self, target: usize, mut resident: impl FnMut(*mut u8, usize) -> usize) {
        for bin in (0..BINS).rev() {
            let mut run = self.bins[bin];
            while !run.is_null() && self.dirty > target {
                let (seg, index) = LargeSegment::of_run(run);
                // SAFETY: `run` is the first entry of a free run of `seg`.
                unsafe {
                    let bound = (*run).resident as usize;
                    if bound != 0 {
                        let addr = (*seg).page_addr(index) as *mut u8;
                        let now = resident(addr, (*run).len as usize * OS_PAGE).min(bound);
                        self.dirty -= (bound - now) * OS_PAGE;
                        (*run).resident = now as u16;
                    }
                    run = (*run).next;
                }
            }
        }
    }

    /// The runs that are entirely free segments (the bin of the longest
    /// runs holds them).
    fn free_segments(&self) -> impl Iterator<Item = *mut Run> + use<> {
        let mut run = self.bins[bin_of(usable_pages())];
        core::iter::from_fn(move || {
            while !run.is_null() {
                let this = run;
                // SAFETY: bins link first entries of free runs of live
                // segments; the link is read before the caller may unmap it.
                unsafe {
                    run = (*this).next;
                    if (*this).len as usize == usable_pages() {
                        return Some(this);
                    }
                }
            }
            None
        })
    }

    /// Unmaps every entirely free segment; true if there was one.
    fn release_free_segments(&mut self) -> bool {
        let mut any = false;
        for run in self.free_segments() {
            self.remove(run);
            // SAFETY: the segment holds no block; nothing refers to it now.
            unsafe { segment::destroy(NonNull::new_unchecked(LargeSegment::of_run(run).0).cast()) };
            any = true;
        }
        any
    }
}

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
    let mut state = LARGE.lock();
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
    let (len, resident) = unsafe { ((*run).len as usize, (*run).resident as usize) };
    state.remove(run);
    let (seg, index) = LargeSegment::of_run(run);
    // SAFETY: as above.
    let seg = unsafe { &mut *seg };
    let addr = align_up(seg.page_addr(index), align).unwrap_or(0);
    let start = (addr - seg.page_addr(index)) / OS_PAGE + index;
    // Which of the run's pages were resident is not known: each part keeps
    // the bound (`trim` counts them when it matters).
    if start > index {
        state.insert(seg, index, start - index, resident.min(start - index));
    }
    let tail = index + len - (start + pages);
    if tail > 0 {
        state.insert(seg, start + pages, tail, resident.min(tail));
    }
    seg.mark(start, pages, 0);
    stats::LARGE_ALLOCATIONS.add(1);
    stats::LARGE_LIVE_BYTES.add(bytes as u64);
    (addr as *mut u8, resident == 0)
}

/// Frees a large block.
///
/// # Safety
/// `seg` is a live large segment containing `p`.
pub unsafe fn free(seg: NonNull<SegmentHeader>, p: *mut u8) -> Result<(), BadBlock> {
    let seg = seg.as_ptr().cast::<LargeSegment>();
    let mut state = LARGE.lock();
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

/// Resizes a large block without moving it: shrinking gives the tail back,
/// growing takes from a free run right after it. False when it cannot.
///
/// # Safety
/// `seg` is a live large segment containing `p`, a live block of the caller.
pub unsafe fn resize_in_place(seg: NonNull<SegmentHeader>, p: *mut u8, new_size: usize) -> bool {
    let pages = new_size.div_ceil(OS_PAGE).max(1);
    let seg = seg.as_ptr().cast::<LargeSegment>();
    let mut state = LARGE.lock();
    // SAFETY: as in `free`.
    let s = unsafe { &mut *seg };
    let Ok(index) = block_index(s, p) else { return false };
    let len = s.runs[index].len as usize;
    if pages < len {
        stats::LARGE_LIVE_BYTES.sub(((len - pages) * OS_PAGE) as u64);
        s.mark(index, pages, 0);
        // SAFETY: the tail is part of the caller's block, now given up.
        unsafe { release_run(&mut state, seg, index + pages, len - pages) };
        return true;
    }
    let right = index + len;
    if pages == len {
        return true;
    }
    if right >= RUNS || s.runs[right].flags & (FIRST | FREE) != FIRST | FREE {
        return false;
    }
    let free_len = s.runs[right].len as usize;
    if len + free_len < pages {
        return false;
    }
    stats::LARGE_LIVE_BYTES.add(((pages - len) * OS_PAGE) as u64);
    let resident = s.runs[right].resident as usize;
    state.remove(s.run(right));
    // The free run's first page is now inside the block: not a block start.
    s.runs[right].flags = 0;
    s.mark(index, pages, 0);
    let rest = len + free_len - pages;
    if rest > 0 {
        state.insert(s, index + pages, rest, resident.min(rest));
    }
    true
}

/// Returns the run of `len` pages at `index` to the free bins, merged with
/// free neighbours, and trims to the resident budget.
///
/// # Safety
/// The run is part of `seg` and no live block overlaps it; the lock is held.
unsafe fn release_run(state: &mut State, seg: *mut LargeSegment, mut index: usize, mut len: usize) {
    // SAFETY: per the contract.
    let s = unsafe { &mut *seg };
    let released = len * OS_PAGE;
    let mut resident = len;
    if index > first_page() && s.runs[index - 1].flags & (LAST | FREE) == LAST | FREE {
        let left = index - s.runs[index - 1].len as usize;
        resident += s.runs[left].resident as usize;
        state.remove(s.run(left));
        // A tombstone: a second free of this address reports a double free.
        s.runs[index].flags = FREE;
        s.runs[index - 1].flags &= !LAST;
        len += index - left;
        index = left;
    }
    let right = index + len;
    if right < RUNS && s.runs[right].flags & (FIRST | FREE) == FIRST | FREE {
        resident += s.runs[right].resident as usize;
        state.remove(s.run(right));
        s.runs[right].flags &= !FIRST;
        s.runs[right - 1].flags &= !LAST;
        len += s.runs[right].len as usize;
    }
    // One entirely free segment stays in the bins, warm, until the budget
    // calls for its memory: it absorbs a program whose large blocks come and
    // go together. A second one is unmapped at once.
    if len == usable_pages() && state.free_segments().next().is_some() {
        // SAFETY: the segment holds no block any more.
        unsafe { segment::destroy(NonNull::new_unchecked(seg).cast()) };
    } else {
        state.insert(s, index, len, resident);
    }
    state.trim(released);
}

/// The page index of the block starting at `p`, if `p` is a live block.
fn block_index(s: &LargeSegment, p: *mut u8) -> Result<usize, BadBlock> {
    let offset = p as usize - s as *const LargeSegment as usize;
    let index = offset / OS_PAGE;
    if !offset.is_multiple_of(OS_PAGE) || index < first_page() {
        return Err(BadBlock::Invalid);
    }
    let flags = s.runs[index].flags;
    if flags & FIRST == 0 {
        // Freed blocks absorbed into a neighbour keep their FREE flag.
        return Err(if flags & FREE != 0 { BadBlock::DoubleFree } else { BadBlock::Invalid });
    }
    if flags & FREE != 0 {
        return Err(BadBlock::DoubleFree);
    }
    Ok(index)
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
        let s = &*seg.as_ptr().cast::<LargeSegment>();
        let index = block_index(s, p.cast_mut())?;
        Ok(s.runs[index].len as usize * OS_PAGE)
    }
}

/// A huge block's segment header: the block starts at `user`.
#[repr(C)]
struct HugeHeader {
    header: SegmentHeader,
    user: usize,
}

/// A block with a mapping of its own whatever its size, for `realloc` to
/// grow with `mremap` (see [`MAPPED_GROWTH_MIN`]). Null when no memory is
/// left.
pub fn alloc_mapped(size: usize) -> *mut u8 {
    align_up(size, OS_PAGE).map_or(null_mut(), |bytes| alloc_huge(bytes, OS_PAGE).0)
}

/// A huge block: a cached mapping if one is large enough (its surplus
/// returned), else a new one. Says whether the block is known to be zero.
fn alloc_huge(bytes: usize, align: usize) -> (*mut u8, bool) {
    // The block must start in the first segment-sized slot of its mapping,
    // where `segment::find` looks for the header.
    if align > SEGMENT_SIZE / 2 {
        return (null_mut(), false);
    }
    let offset = align.max(OS_PAGE);
    let Some(total) = bytes.checked_add(offset) else { return (null_mut(), false) };
    stats::HUGE_ALLOCATIONS.add(1);
    let cached = if offset == OS_PAGE { LARGE.lock().take_cached(total) } else { None };
    if let Some(h) = cached {
        // SAFETY: the cached mapping is ours alone now.
        let resized = unsafe { remap_huge(h, total) };
        if !resized.is_null() {
            // SAFETY: as above.
            unsafe { (*resized).user = resized as usize + offset };
            return ((resized as usize + offset) as *mut u8, false);
        }
        // SAFETY: growing failed; the mapping is still ours, and unused.
        unsafe { segment::destroy(NonNull::new_unchecked(h).cast()) };
    }
    let created = segment::create(Kind::Huge, total)
        .or_else(|| release_caches().then(|| segment::create(Kind::Huge, total)).flatten());
    let Some(seg) = created else {
        stats::HUGE_ALLOCATIONS.sub(1);
        return (null_mut(), false);
    };
    stats::HUGE_LIVE_BYTES.add(total as u64);
    let h = seg.as_ptr().cast::<HugeHeader>();
    let user = h as usize + offset;
    // SAFETY: the header was just mapped and is ours.
    unsafe { (*h).user = user };
    (user as *mut u8, true)
}

/// Resizes a huge block to `new_size` (above [`LARGE_MAX`]): a growing
/// block takes at least an eighth more, so that a buffer grown in small steps
/// costs one `mremap` per eighth, not one per step. Null when no address
/// space is left; the block is then unchanged.
///
/// # Safety
/// `seg` is the live huge segment of `p`, a live block of the caller.
pub unsafe fn resize_huge(seg: NonNull<SegmentHeader>, p: *mut u8, new_size: usize) -> *mut u8 {
    let h = seg.as_ptr().cast::<HugeHeader>();
    // SAFETY: the header of a live huge segment is ours to read and update.
    unsafe {
        let offset = p as usize - h as usize;
        let old = (*h).header.size;
        let Some(mut new) = align_up(new_size, OS_PAGE).and_then(|b| b.checked_add(offset)) else {
            return null_mut();
        };
        if new > old {
            new = new.max(align_up(old + old / 8, OS_PAGE).unwrap_or(new));
        }
        stats::HUGE_LIVE_BYTES.sub(old as u64);
        let moved = remap_huge(h, new);
        if moved.is_null() {
            stats::HUGE_LIVE_BYTES.add(old as u64);
            return null_mut();
        }
        (*moved).user = moved as usize + offset;
        (*moved).user as *mut u8
    }
}

/// Resizes the mapping of a huge block to `total` bytes with `mremap`: in
/// place when the neighbouring addresses allow, else by moving its pages (no
/// copy) to a new aligned mapping. Counts `total` as live huge bytes. Null if
/// no address space is left (the mapping is then unchanged).
///
/// # Safety
/// `h` is the header of a huge mapping the caller owns (live or cached).
unsafe fn remap_huge(h: *mut HugeHeader, total: usize) -> *mut HugeHeader {
    // SAFETY: per the contract.
    unsafe {
        let old = (*h).header.size;
        if total == old || os::remap_in_place(h.cast(), old, total) {
            stats::resized(old, total);
            stats::HUGE_LIVE_BYTES.add(total as u64);
            (*h).header.size = total;
            return h;
        }
        let target = os::map_aligned(total, SEGMENT_SIZE);
        if target.is_null() {
            return null_mut();
        }
        // Forget the old address before the move releases it: another
        // thread may map a segment there at once, and a late `forget` would
        // clear that segment's bit.
        segment::forget(NonNull::new_unchecked(h).cast());
        if !os::remap_to(h.cast(), old, total, target) {
            segment::register(NonNull::new_unchecked(h).cast());
            os::unmap(target, total);
            return null_mut();
        }
        // The target mapping was counted when made; the old one is gone.
        stats::resized(old, 0);
        stats::HUGE_LIVE_BYTES.add(total as u64);
        let moved = target.cast::<HugeHeader>();
        (*moved).header.size = total;
        segment::register(NonNull::new_unchecked(moved).cast());
        moved
    }
}

/// Frees a huge block: into the cache of mappings for reuse, or (past the
/// resident budget) back to the system.
///
/// # Safety
/// `seg` is a live huge segment containing `p`.
pub unsafe fn free_huge(seg: NonNull<SegmentHeader>, p: *mut u8) -> Result<(), BadBlock> {
    let h = seg.as_ptr().cast::<HugeHeader>();
    let mut state = LARGE.lock();
    // SAFETY: the header of a live huge segment is ours to read and update
    // (a cached one has `user == 0`).
    unsafe {
        match (*h).user {
            0 => return Err(BadBlock::DoubleFree),
            user if user != p as usize => return Err(BadBlock::Invalid),
            _ => {}
        }
        stats::HUGE_FREES.add(1);
        stats::HUGE_LIVE_BYTES.sub((*h).header.size as u64);
        (*h).user = 0;
    }
    state.cache_huge(h);
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
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
        for &p in &blocks {
            let seg = segment::find(p).unwrap();
            // SAFETY: `p` is a live block in `seg`.
            let result = unsafe {
                match (*seg.as_ptr()).kind {
                    Kind::Large => free(seg, p),
                    _ => free_huge(seg, p),
                }
            };
            assert_eq!(result, Ok(()));
        }
        release_caches();
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
