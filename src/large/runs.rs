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
/// first and last page of a run; `front`, `back` and the links at the first
/// page of a free run.
#[repr(C)]
pub(super) struct Run {
    pub(super) len: u16,
    pub(super) flags: u16,
    /// Where the free run's pages may be resident, as a [`Warm`].
    front: u16,
    back: u16,
    pub(super) next: *mut Run,
    prev: *mut Run,
}
const _: () = assert!(RUNS <= u16::MAX as usize, "page counts fit the entries");

/// Where a free run's pages may be resident (an upper bound: freed since
/// its last purge): within its first `front` and its last `back` pages;
/// none: the run reads as zeros. Two ends, not a count, because a run is
/// carved from its start and grows at both ends: a block freed next to a
/// purged run keeps its pages at one end, and what an allocation from the
/// start leaves is known to be clean where a count would give it the whole
/// run's. With a count, `churn` looked over its budget at every other free
/// (the count is only an upper bound) and purged warm runs that its next
/// blocks faulted in again: 120,000 page faults against 60,000 when the
/// count was corrected with `mincore` (`docs/performance.md`, step 39).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Warm {
    front: usize,
    back: usize,
}

impl Warm {
    pub(super) const COLD: Warm = Warm { front: 0, back: 0 };

    /// A run of `len` pages that may be resident throughout (a freed block).
    pub(super) fn all(len: usize) -> Warm {
        Warm { front: len, back: 0 }
    }

    /// The bound's count of pages.
    pub(super) fn pages(self) -> usize {
        self.front + self.back
    }

    /// The warm ends of a run of `len` pages: how many pages at the front
    /// and at the back, each if any.
    pub(super) fn ends(self, len: usize) -> (Option<usize>, Option<usize>) {
        debug_assert!(self.pages() <= len);
        ((self.front != 0).then_some(self.front), (self.back != 0).then_some(self.back))
    }

    /// The pages `[a, b)` of a run of `len` pages.
    pub(super) fn part(self, len: usize, a: usize, b: usize) -> Warm {
        let n = b - a;
        let front = self.front.saturating_sub(a).min(n);
        let back = b.saturating_sub(len - self.back).min(n);
        if front + back >= n { Warm::all(n) } else { Warm { front, back } }
    }

    /// A run of `len` pages followed by `right`, of `right_len` pages: the
    /// warm pages where they meet are covered from whichever end costs
    /// fewer pages.
    pub(super) fn join(self, len: usize, right: Warm, right_len: usize) -> Warm {
        let total = len + right_len;
        let middle = self.back != 0 || right.front != 0;
        let from_front = Warm { front: if middle { len + right.front } else { self.front }, back: right.back };
        let from_back = Warm { front: self.front, back: if middle { right_len + self.back } else { right.back } };
        let w = if from_front.pages() <= from_back.pages() { from_front } else { from_back };
        if w.pages() >= total { Warm::all(total) } else { w }
    }
}

impl Run {
    /// Where the free run starting at `run` may be resident.
    ///
    /// # Safety
    /// `run` is the first entry of a free run of a live segment.
    pub(super) unsafe fn warm(run: *const Run) -> Warm {
        // SAFETY: per the contract.
        unsafe { Warm { front: (*run).front as usize, back: (*run).back as usize } }
    }

    /// Records where the free run starting at `run` may be resident (its
    /// share of the state's dirty bytes is the caller's to account).
    ///
    /// # Safety
    /// As for [`Run::warm`].
    pub(super) unsafe fn set_warm(run: *mut Run, warm: Warm) {
        // SAFETY: per the contract.
        unsafe {
            (*run).front = warm.front as u16;
            (*run).back = warm.back as u16;
        }
    }

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
        self.runs[index].len = len as u16;
        self.runs[index].flags = flags | FIRST | if len == 1 { LAST } else { 0 };
        if len > 1 {
            self.runs[last].len = len as u16;
            self.runs[last].flags = flags | LAST;
        }
    }
}

impl State {
    /// Puts the free run of `len` pages at `index`, resident at most where
    /// `warm` says, in its bin; `aged` if it is what is left of an aged run
    /// (memory freed now is not).
    pub(super) fn insert(&mut self, seg: &mut LargeSegment, index: usize, len: usize, warm: Warm, aged: bool) {
        seg.mark(index, len, FREE);
        if aged {
            seg.runs[index].flags |= AGED;
        }
        let bin = bin_of(len);
        let run = seg.run(index);
        self.dirty += warm.pages() * OS_PAGE;
        // SAFETY: `run` and the bin's head are entries of live large segments,
        // and we hold the lock.
        unsafe {
            Run::set_warm(run, warm);
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
            self.dirty -= Run::warm(run).pages() * OS_PAGE;
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
            self.insert(&mut *seg, first_page(), usable_pages(), Warm::COLD, false);
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
    let mut warm = Warm::all(len);
    if index > first_page() && s.runs[index - 1].flags & (LAST | FREE) == LAST | FREE {
        let left = index - s.runs[index - 1].len as usize;
        // SAFETY: `left` is the first entry of a free run.
        warm = unsafe { Run::warm(s.run(left)) }.join(index - left, warm, len);
        state.remove(s.run(left));
        // A tombstone: a second free of this address reports a double free.
        s.runs[index].flags = FREE;
        s.runs[index - 1].flags &= !LAST;
        len += index - left;
        index = left;
    }
    let right = index + len;
    if right < RUNS && s.runs[right].flags & (FIRST | FREE) == FIRST | FREE {
        // SAFETY: `right` is the first entry of a free run.
        warm = warm.join(len, unsafe { Run::warm(s.run(right)) }, s.runs[right].len as usize);
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
        state.insert(s, index, len, warm, false);
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

#[cfg(test)]
mod tests {
    use super::Warm;

    /// Every page the bound leaves out of a part or a join was cold in the
    /// runs it came from: an upper bound stays an upper bound (calloc skips
    /// zeroing what it calls cold).
    #[test]
    fn parts_and_joins_keep_every_warm_page_inside_the_bound() {
        let covers = |w: Warm, len: usize, page: usize| page < w.front || page >= len - w.back;
        let shapes = |len: usize| (0..=len).flat_map(move |f| (0..=len - f).map(move |b| Warm { front: f, back: b }));
        for len in 1..7 {
            for w in shapes(len) {
                for a in 0..len {
                    for b in a + 1..=len {
                        let p = w.part(len, a, b);
                        assert!(p.pages() <= b - a);
                        for page in a..b {
                            assert!(!covers(w, len, page) || covers(p, b - a, page - a), "{w:?} [{a},{b})");
                        }
                    }
                }
                for right_len in 1..5 {
                    for r in shapes(right_len) {
                        let j = w.join(len, r, right_len);
                        assert!(j.pages() <= len + right_len);
                        for page in 0..len {
                            assert!(!covers(w, len, page) || covers(j, len + right_len, page));
                        }
                        for page in 0..right_len {
                            assert!(!covers(r, right_len, page) || covers(j, len + right_len, len + page));
                        }
                    }
                }
            }
        }
        // The pattern a count got wrong: a block freed before a cold run,
        // then carved again from the start, leaves a cold tail.
        let freed_then_cold = Warm::all(10).join(10, Warm::COLD, 90);
        assert_eq!(freed_then_cold, Warm { front: 10, back: 0 });
        assert_eq!(freed_then_cold.part(100, 10, 100), Warm::COLD);
        assert_eq!(Warm::COLD.join(50, Warm::all(10), 10), Warm { front: 0, back: 10 });
    }
}
