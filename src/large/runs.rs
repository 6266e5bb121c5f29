//! Large segments and their runs: the page table in each segment's header
//! (an entry per OS page, meaningful at the ends of each run), the size bins
//! of free runs, best-fit carving, and coalescing on release.

use super::{LARGE_MAX, LARGE_SEGMENT_SIZE, State};
use crate::diag::error::BadBlock;
use crate::diag::options;
use crate::os::{self, OS_PAGE};
use crate::segment::{self, Kind, SEGMENT_SIZE, SegmentHeader};
use core::ptr::{NonNull, null_mut};

pub(super) const RUNS: usize = LARGE_SEGMENT_SIZE / OS_PAGE;

/// Entry flags: a run's first page, its last page, a free run; and, at the
/// first page of a free run, that the decay saw it free at its last tick
/// (see `budget`).
pub(super) const FIRST: u16 = 1;
const LAST: u16 = 2;
pub(super) const FREE: u16 = 4;
const AGED: u16 = 8;

/// Per OS page of a large segment. `len` and `flags` are meaningful at the
/// first and last page of a run; `resident` and the links at the first page
/// of a free run.
#[repr(C)]
pub(super) struct Run {
    pub(super) len: u32,
    pub(super) flags: u16,
    /// Pages of the free run that may be resident (an upper bound: freed
    /// since the last purge); 0 means the run reads as zeros.
    pub(super) resident: u16,
    pub(super) next: *mut Run,
    prev: *mut Run,
}
const _: () = assert!(RUNS <= u16::MAX as usize, "page counts fit `resident`");

impl Run {
    /// Whether the free run starting at `run` was free at the decay's last
    /// tick and unused since.
    ///
    /// # Safety
    /// `run` is the first entry of a free run of a live segment.
    pub(super) unsafe fn aged(run: *const Run) -> bool {
        // SAFETY: per the contract.
        unsafe { (*run).flags & AGED != 0 }
    }

    /// # Safety
    /// As for [`Run::aged`].
    pub(super) unsafe fn set_aged(run: *mut Run) {
        // SAFETY: per the contract.
        unsafe { (*run).flags |= AGED };
    }
}

#[repr(C)]
pub(super) struct LargeSegment {
    header: SegmentHeader,
    pub(super) runs: [Run; RUNS],
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
pub(super) const BINS: usize = bin_of(RUNS) + 1;
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

impl LargeSegment {
    pub(super) fn run(&mut self, index: usize) -> *mut Run {
        &mut self.runs[index]
    }

    pub(super) fn of_run(run: *mut Run) -> (*mut LargeSegment, usize) {
        let seg = (run as usize & !(SEGMENT_SIZE - 1)) as *mut LargeSegment;
        // SAFETY: only the address of the runs array is computed.
        let first = unsafe { (&raw mut (*seg).runs).cast::<Run>() };
        (seg, (run as usize - first as usize) / size_of::<Run>())
    }

    pub(super) fn page_addr(&self, index: usize) -> usize {
        self as *const Self as usize + index * OS_PAGE
    }

    /// Writes the boundary entries of a run of `len` pages at `index`.
    pub(super) fn mark(&mut self, index: usize, len: usize, flags: u16) {
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
    /// `resident` may be resident, in its bin; `aged` if it is what is left
    /// of an aged run (memory freed now is not).
    pub(super) fn insert(&mut self, seg: &mut LargeSegment, index: usize, len: usize, resident: usize, aged: bool) {
        seg.mark(index, len, FREE);
        if aged {
            seg.runs[index].flags |= AGED;
        }
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

    pub(super) fn remove(&mut self, run: *mut Run) {
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
    pub(super) fn find(&self, pages: usize) -> *mut Run {
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
    pub(super) fn grow(&mut self) -> bool {
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
            self.insert(&mut *seg, first_page(), usable_pages(), 0, false);
        }
        true
    }

    /// The runs that are entirely free segments (the bin of the longest
    /// runs holds them).
    pub(super) fn free_segments(&self) -> impl Iterator<Item = *mut Run> + use<> {
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
}

/// Returns the run of `len` pages at `index` to the free bins, merged with
/// free neighbours, and trims to the resident budget.
///
/// # Safety
/// The run is part of `seg` and no live block overlaps it; the lock is held.
pub(super) unsafe fn release_run(state: &mut State, seg: *mut LargeSegment, mut index: usize, mut len: usize) {
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
        state.insert(s, index, len, resident, false);
    }
    state.trim(released);
}

/// The page index of the block starting at `p`, if `p` is a live block.
pub(super) fn block_index(s: &LargeSegment, p: *mut u8) -> Result<usize, BadBlock> {
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
