//! The release policy of freed large and huge memory, by time and by amount.
//!
//! By time (decay): free runs and cached huge mappings that stay unused go
//! back to the system, with no background thread: every call into the
//! large allocator first lets the decay run ([`State::decay`]). Each
//! `MALLOCATOR_DECAY_MS` (100 ms) a tick marks what is free as *aged* and
//! gives back what was already aged at the previous tick and was not used
//! since: the memory of a run or a mapping unused for between one and two
//! periods. A call that comes two periods (at most 50 ms) or more after the
//! previous one finds everything free older than that and gives it all
//! back, the entirely free segment kept for reuse unmapped too; so does
//! `malloc_trim` ([`trim_all`]) at once.
//!
//! By amount (the resident budget): after each release, what is free and
//! may be resident stays within twice a decaying peak of the live large and
//! huge bytes (at least `MALLOCATOR_DIRTY_KIB`, 2 MiB): past that, cached
//! huge mappings are unmapped smallest first, then free runs purged largest
//! first. A program that frees all its large blocks is down to that
//! minimum at once, and the decay takes the rest.
//!
//! Once a mapping fails, every cache and entirely free segment is unmapped.
//!
//! Nothing here counts resident pages: before issue 24 the budget counted
//! them with `mincore` whenever the upper bounds said it was exceeded, a
//! system call per 2 MiB under the lock, some 6,000 per run of a program
//! whose threads come and go (each new thread's first small segment reset
//! the peak: `trim_to_live`).

use super::huge::HugeHeader;
use super::runs::{BINS, LargeSegment, Run, Warm};
use super::{LARGE, State};
use crate::diag::counters as stats;
use crate::diag::options;
use crate::os::{self, OS_PAGE};
use crate::segment;
use crate::sys::clock;
use core::ptr::NonNull;

/// Share of the recent live peak forgotten per release: the peak decays by
/// about two thirds over 64 frees. Fluctuations of the live bytes over a few
/// dozen frees keep their warm pages (`large_blocks` replaces one of 32
/// blocks per step); a program that frees its large blocks for good gets
/// their memory back within a few dozen frees.
const PEAK_DECAY: usize = 256;

/// A call that comes two periods after the previous one, or this long if
/// that is less, gives back all free memory: nothing was freed in between,
/// so all of it has been unused that long. At most 50 ms, so that a program
/// that frees everything and makes its next call 100 ms later has it back
/// then (the memory issue's bound) whatever `MALLOCATOR_DECAY_MS` says.
const QUIET_MS: u64 = 50;

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

/// A tick of the decay whenever it last was: called when a thread maps a
/// new small segment, so that a program whose small blocks grow gives back
/// the large memory it freed before the previous new segment and has not
/// used since. `sqlite` frees its sort buffers while its page cache grows:
/// with the ordinary ticks they stayed resident through its run (peak RSS
/// 42-46 MB against 38 MB; 39 MB with this). Until issue 24 this trimmed
/// free large memory to twice the *current* live large bytes, counting with
/// `mincore`, at every new small segment, that is at every new thread of a
/// program whose threads come and go (`docs/performance.md`, steps 13 and
/// 31); in `churn` (400 threads, each a new segment) the ticks purged
/// nothing.
pub fn trim_to_live() {
    LARGE.lock().decay(clock::now_ms(), 0);
}

/// `malloc_trim`: gives back every free run's pages, every cached huge
/// mapping and every entirely free large segment, now; true if there was
/// any.
pub fn trim_all() -> bool {
    let mut state = LARGE.lock();
    let had = state.dirty != 0;
    state.release_aged(true);
    state.release_caches() | had
}

impl State {
    /// The decay's turn, at time `now` (ms), on every call into the large
    /// allocator, with ticks `period` ms apart (see the module's note).
    pub(super) fn decay(&mut self, now: u64, period: u64) {
        let quiet = now.saturating_sub(self.last_call);
        self.last_call = now;
        if quiet >= QUIET_MS.min(2 * options::decay_ms()) {
            // Nothing was freed since the previous call: all that is free
            // has been unused for two periods at least, the entirely free
            // segment too (its address space: the memory issue counts the
            // VmSize a program keeps after it freed everything).
            self.last_tick = now;
            self.release_aged(true);
            self.release_free_segments();
        } else if now.saturating_sub(self.last_tick) >= period {
            self.last_tick = now;
            self.release_aged(false);
        }
    }

    /// Purges the free runs and unmaps the cached huge mappings that were
    /// aged (all of them with `all`), and ages the rest.
    pub(super) fn release_aged(&mut self, all: bool) {
        if self.dirty != 0 {
            self.walk_dirty(|state, seg, index, run| {
                // SAFETY: `run` is the first entry of a free run of `seg`.
                if all || unsafe { Run::aged(run) } {
                    // SAFETY: as above; a free run holds no block.
                    unsafe { state.purge_run(seg, index, run) };
                } else {
                    // SAFETY: as above.
                    unsafe { Run::set_aged(run) };
                }
                true
            });
        }
        let mut i = 0;
        while i < self.huge_cache.len() && !self.huge_cache[i].is_null() {
            let h = self.huge_cache[i];
            // SAFETY: cached headers are live mappings of ours.
            if all || unsafe { HugeHeader::aged(h) } {
                self.unmap_cached_at(i);
            } else {
                // SAFETY: as above.
                unsafe { HugeHeader::set_aged(h) };
                i += 1;
            }
        }
    }

    /// After `released` bytes were given up, keeps freed memory within the
    /// resident budget: unmaps cached huge mappings, smallest first, then
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
        while self.dirty + self.huge_cached > budget {
            if self.huge_cached == 0 {
                self.purge_down_to(budget - budget / 4);
                return;
            }
            self.unmap_smallest_cached();
        }
    }

    /// Unmaps every cached mapping and entirely free segment: the address
    /// space they hold is worth more than their warmth once a mapping fails.
    pub(super) fn release_caches(&mut self) -> bool {
        let had = self.release_free_segments() | (self.huge_cached != 0);
        while self.huge_cached != 0 {
            self.unmap_smallest_cached();
        }
        had
    }

    /// Purges free runs, largest first, until at most `target` bytes may be
    /// resident. Largest first because a big free run is the least likely
    /// to be reused whole, and stopping at the target (not purging
    /// everything) keeps the warm pages that the next requests reuse without
    /// faults.
    fn purge_down_to(&mut self, target: usize) {
        self.walk_dirty(|state, seg, index, run| {
            // SAFETY: `run` is the first entry of a free run of `seg`.
            unsafe { state.purge_run(seg, index, run) };
            state.dirty > target
        });
    }

    /// Gives the pages of a free run back to the system.
    ///
    /// # Safety
    /// `run` is the first entry, at `index`, of a free run of `seg`.
    unsafe fn purge_run(&mut self, seg: *mut LargeSegment, index: usize, run: *mut Run) {
        // SAFETY: per the contract; the run holds no block.
        unsafe {
            let (len, warm) = ((*run).len as usize, Run::warm(run));
            // One call: the pages between the warm ends are cheap to pass.
            let (from, to) = match warm.ends(len) {
                (Some(front), None) => (0, front),
                (None, Some(back)) => (len - back, len),
                _ => (0, len),
            };
            os::purge((*seg).page_addr(index + from) as *mut u8, (to - from) * OS_PAGE);
            self.dirty -= warm.pages() * OS_PAGE;
            Run::set_warm(run, Warm::COLD);
        }
    }

    /// Visits the free runs that may hold resident pages, largest first,
    /// while `visit(state, segment, index, run)` returns true.
    fn walk_dirty(&mut self, mut visit: impl FnMut(&mut Self, *mut LargeSegment, usize, *mut Run) -> bool) {
        for bin in (0..BINS).rev() {
            let mut run = self.bins[bin];
            while !run.is_null() {
                // SAFETY: bins link first entries of free runs of live
                // segments; the link is read before `visit` may change it
                // (purging keeps a run in its bin).
                let (next, warm) = unsafe { ((*run).next, Run::warm(run)) };
                if warm != Warm::COLD {
                    let (seg, index) = LargeSegment::of_run(run);
                    if !visit(self, seg, index, run) {
                        return;
                    }
                }
                run = next;
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

#[cfg(test)]
mod tests {
    use super::super::tests::{SERIAL, free_block as free_ok};
    use super::super::{LARGE_MAX, alloc};
    use super::*;
    use crate::segment;

    fn resident(p: *mut u8, bytes: usize) -> usize {
        let mut vec = std::vec![0u8; bytes / OS_PAGE];
        // SAFETY: `p` is page-aligned memory of ours, `vec` a byte per page.
        assert_eq!(unsafe { libc::mincore(p.cast(), bytes, vec.as_mut_ptr()) }, 0);
        vec.iter().filter(|&&b| b & 1 != 0).count()
    }

    fn touch(p: *mut u8, bytes: usize) {
        // SAFETY: `p` is a live block of at least `bytes`.
        unsafe { p.write_bytes(7, bytes) };
    }

    /// A free run unused for two periods is purged at a later call, one used
    /// again meanwhile stays warm; nothing is counted with `mincore`.
    #[test]
    fn free_runs_decay_by_time_and_stay_warm_while_used() {
        let _serial = SERIAL.lock().unwrap();
        release_caches();
        trim_all();
        let period = options::decay_ms();
        // Live one-page blocks between the others, so that freed runs do
        // not merge (a merged run is fresh again).
        let (keep, _) = alloc(400 * OS_PAGE, OS_PAGE);
        let (idle, _) = alloc(200 * OS_PAGE, OS_PAGE);
        let (sep1, _) = alloc(OS_PAGE, OS_PAGE);
        let (busy, _) = alloc(100 * OS_PAGE, OS_PAGE);
        let (sep2, _) = alloc(OS_PAGE, OS_PAGE);
        [keep, idle, busy].into_iter().zip([400, 200, 100]).for_each(|(p, n)| touch(p, n * OS_PAGE));
        free_ok(idle);
        assert_eq!(resident(idle, 200 * OS_PAGE), 200, "within the budget: freed warm");
        // The busy block is freed and taken again every few milliseconds
        // over three periods: each call lets the decay run.
        let start = crate::sys::clock::now_ms();
        let mut p = busy;
        while crate::sys::clock::now_ms() - start < 3 * period + 2 {
            free_ok(p);
            p = alloc(100 * OS_PAGE, OS_PAGE).0;
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(resident(p, 100 * OS_PAGE), 100, "reused every few ms: never purged");
        assert_eq!(resident(idle, 200 * OS_PAGE), 0, "unused for two periods: purged");
        assert_eq!(resident(keep, 400 * OS_PAGE), 400, "live blocks are never touched");
        [keep, p, sep1, sep2].into_iter().for_each(free_ok);
        release_caches();
    }

    /// Two new small segments give back a run freed before the first and
    /// unused since, whatever the period.
    #[test]
    fn new_small_segments_are_ticks() {
        let _serial = SERIAL.lock().unwrap();
        let (keep, _) = alloc(300 * OS_PAGE, OS_PAGE);
        let (idle, _) = alloc(100 * OS_PAGE, OS_PAGE);
        let (sep, _) = alloc(OS_PAGE, OS_PAGE);
        touch(idle, 100 * OS_PAGE);
        free_ok(idle);
        trim_to_live();
        assert_eq!(resident(idle, 100 * OS_PAGE), 100, "one tick: aged, still warm");
        trim_to_live();
        assert_eq!(resident(idle, 100 * OS_PAGE), 0, "the second: purged");
        [keep, sep].into_iter().for_each(free_ok);
    }

    /// A program that frees its large blocks and comes back later (here:
    /// 100 ms) finds them purged at its next call; `malloc_trim` at once.
    #[test]
    fn a_quiet_spell_or_malloc_trim_gives_everything_back() {
        let _serial = SERIAL.lock().unwrap();
        let (a, _) = alloc(300 * OS_PAGE, OS_PAGE);
        let (b, _) = alloc(LARGE_MAX + 1, OS_PAGE);
        let (c, _) = alloc(OS_PAGE, OS_PAGE);
        touch(a, 300 * OS_PAGE);
        touch(b, LARGE_MAX + 1);
        [a, b].into_iter().for_each(free_ok);
        assert_eq!(resident(a, 300 * OS_PAGE), 300, "c is live: within the budget, kept warm");
        assert!(segment::find(b).is_some(), "the huge mapping is cached");
        std::thread::sleep(std::time::Duration::from_millis(100));
        // The next call, for anything, lets the decay run first.
        let (d, _) = alloc(OS_PAGE, OS_PAGE);
        assert_eq!(resident(a, 300 * OS_PAGE), 0);
        assert!(segment::find(b).is_none(), "the cached mapping went back");
        // malloc_trim: no waiting (`c` keeps the segment mapped, so that
        // its pages can be looked at).
        let (e, _) = alloc(50 * OS_PAGE, OS_PAGE);
        touch(e, 50 * OS_PAGE);
        [e, d].into_iter().for_each(free_ok);
        assert_eq!(resident(e, 50 * OS_PAGE), 50);
        assert!(trim_all());
        assert_eq!(resident(e, 50 * OS_PAGE), 0);
        free_ok(c);
    }
}
