//! The resident budget and the release policy: how much freed large and
//! huge memory stays resident (twice a decaying peak of the live bytes), and
//! how the rest goes back: cached huge mappings unmapped oldest first, free
//! runs counted with `mincore` and purged largest first, and, once a mapping
//! fails, every cache and free segment unmapped.

use super::huge::HUGE_CACHE;
use super::runs::{BINS, LargeSegment};
use super::{LARGE, State};
use crate::diag::counters as stats;
use crate::diag::options;
use crate::os::{self, OS_PAGE};
use crate::segment;
use core::ptr::{NonNull, null_mut};

/// Share of the recent live peak forgotten per release: the peak decays by
/// about two thirds over 64 frees. Fluctuations of the live bytes over a few
/// dozen frees keep their warm pages (`large_blocks` replaces one of 32
/// blocks per step); a program that frees its large blocks for good gets
/// their memory back within a few dozen frees.
const PEAK_DECAY: usize = 256;

/// What freed large memory may stay resident: twice the recent peak of the
/// live large and huge bytes, at least `MALLOCATOR_DIRTY_KIB` (default
/// 2 MiB). A program that keeps replacing large blocks reuses warm pages
/// instead of faulting in fresh ones, which is what costs there; a budget of
/// the *current* live bytes would purge at every dip of the live set (see
/// `docs/performance.md`, steps 10 and 11).
fn resident_budget(recent_peak: usize) -> usize {
    options::dirty_limit().max(2 * recent_peak)
}

/// Returns the memory kept for reuse to the system (after a mapping failed);
/// true if there was any, so that retrying the mapping may succeed.
pub fn release_caches() -> bool {
    LARGE.lock().release_caches()
}

/// Purges free large memory down to the budget of the live large bytes now
/// (forgetting their recent peak). Called when a thread maps a new small
/// segment: while the program's small blocks grow, free large pages that no
/// large request reused would only add to its resident size (see
/// `docs/performance.md`, step 13).
pub fn trim_to_live() {
    let mut state = LARGE.lock();
    state.recent_peak = 0;
    state.trim(0);
}

impl State {
    /// After `released` bytes were given up, keeps freed memory within the
    /// resident budget: unmaps cached huge mappings, oldest first, then
    /// purges free runs.
    pub(super) fn trim(&mut self, released: usize) {
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

    /// Unmaps every cached mapping and entirely free segment: the address
    /// space they hold is worth more than their warmth once a mapping fails.
    pub(super) fn release_caches(&mut self) -> bool {
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

    /// Replaces the upper bounds of resident pages in free runs by what the
    /// system says is resident. The bounds only grow when a warm run is
    /// split (each part keeps the bound), so a program that reuses freed
    /// runs piecemeal would otherwise look far over budget and lose warm
    /// pages for nothing. Largest runs first, and only until the count is
    /// within `target`: `mincore` costs a system call per 2 MiB, and on our
    /// `/dev/zero` mappings the kernel looks each absent page up in the
    /// file's page cache (see `docs/performance.md`, steps 12 and 17).
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
