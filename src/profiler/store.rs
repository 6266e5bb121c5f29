//! What the sampler keeps: one *bucket* per distinct call stack with its
//! estimated counts, and one *live record* per sampled block not yet freed.
//! Both live in an arena of mappings that only grows while the process runs
//! (a profile must still name stacks whose blocks are long gone), reached
//! through two chained hash tables. All of it under the profile's lock.
//!
//! The store also keeps the profile as it was at the *peak*: the moment the
//! estimated bytes in use were highest. Copying every bucket at each new
//! high would cost a sample O(stacks); instead a bucket saves its counts
//! (`at_peak`) the first time it changes after a peak, marked with that
//! peak's number. A bucket whose mark is not the present peak's has not
//! changed since, so its counts are its counts at the peak. A sampled
//! event costs O(1) more; nothing else does.

use crate::os::{self, OS_PAGE};
use core::ptr::null_mut;

/// Deepest stack recorded; deeper stacks keep their innermost frames (what
/// allocated) and lose the outermost (`main` and its callers).
pub const MAX_FRAMES: usize = 64;
/// Arena mappings of 256 KiB: about 500 buckets of 8-frame stacks, or 6,000
/// live records, per `mmap`.
const CHUNK: usize = 64 * OS_PAGE;
/// Heads of the stack table: a program has rarely more than a few thousand
/// distinct allocating stacks.
const BUCKET_HEADS: usize = 4096;
/// Heads of the live-block table: 16,384 chains keep them short up to 8 GiB
/// in use at the default rate (16,000 live samples).
const LIVE_HEADS: usize = 16384;

/// Estimated counts of a stack: each sample stands for `1 / p` blocks, where
/// `p` is the chance that a block of its size was sampled.
#[derive(Clone, Copy, Default)]
pub struct Counts {
    pub alloc_objects: f64,
    pub alloc_space: f64,
    pub inuse_objects: f64,
    pub inuse_space: f64,
}

#[repr(C)]
pub struct Bucket {
    next: *mut Bucket,
    hash: usize,
    depth: usize,
    pub counts: Counts,
    /// The counts at the peak numbered `peak_id`, if that is the present
    /// peak (else `counts` are).
    at_peak: Counts,
    peak_id: u64,
    // `depth` return addresses follow, innermost first.
}

impl Bucket {
    pub fn frames(&self) -> &[usize] {
        // SAFETY: `insert_bucket` wrote `depth` frames right after the header.
        unsafe { core::slice::from_raw_parts((self as *const Bucket).add(1).cast::<usize>(), self.depth) }
    }
}

struct Live {
    next: *mut Live,
    addr: usize,
    bucket: *mut Bucket,
    /// The blocks this sample stands for.
    weight: f64,
    size: usize,
}

/// A sampled block taken out of the table while it moves (`realloc` of a
/// huge block by `mremap`); put back with [`Store::attach`].
pub struct Detached(*mut Live);

/// The high-water mark of the estimated bytes in use.
#[derive(Clone, Copy, Default)]
pub struct Peak {
    pub bytes: f64,
    /// When it ended: the first change after it that did not rise above it
    /// (`CLOCK_REALTIME`, nanoseconds); 0 while it is the present. Timed
    /// at its end, not at each new high: while memory grows every sample
    /// is one, and a clock read each (70 instructions on i686) was a
    /// quarter of the profiler's cost on `realloc_grow`.
    pub time_nanos: u64,
    /// Counts the peaks: each new high is a new one.
    id: u64,
}

pub struct Store {
    buckets: *mut *mut Bucket,
    live: *mut *mut Live,
    free_live: *mut Live,
    cursor: usize,
    end: usize,
    /// Estimated bytes in use and allocated: the sums of the buckets'
    /// `inuse_space` and `alloc_space`.
    pub inuse: f64,
    pub allocated: f64,
    pub peak: Peak,
    /// Samples lost because the arena could not grow.
    pub dropped: u64,
}

// SAFETY: the store is only reached through the profile's lock.
unsafe impl Send for Store {}

impl Store {
    pub const fn new() -> Self {
        Self {
            buckets: null_mut(),
            live: null_mut(),
            free_live: null_mut(),
            cursor: 0,
            end: 0,
            inuse: 0.0,
            allocated: 0.0,
            peak: Peak { bytes: 0.0, time_nanos: 0, id: 0 },
            dropped: 0,
        }
    }

    /// The counts of `b` at the peak.
    pub fn at_peak(&self, b: &Bucket) -> Counts {
        if b.peak_id == self.peak.id { b.at_peak } else { b.counts }
    }

    /// Before the counts of `b` change: if they are still its counts at the
    /// peak, keeps them as such.
    ///
    /// # Safety
    /// `b` is a bucket of this store.
    unsafe fn keep_peak(&self, b: *mut Bucket) {
        // SAFETY: per the contract; the caller holds the store.
        unsafe {
            if (*b).peak_id != self.peak.id {
                (*b).at_peak = (*b).counts;
                (*b).peak_id = self.peak.id;
            }
        }
    }

    /// Adds `objects` blocks of `space` bytes in all to the bytes in use of
    /// `b` (negative: taken away); a new high makes the present the peak.
    ///
    /// # Safety
    /// `b` is a bucket of this store.
    unsafe fn add_inuse(&mut self, b: *mut Bucket, objects: f64, space: f64) {
        // SAFETY: per the contract.
        unsafe {
            self.keep_peak(b);
            (*b).counts.inuse_objects += objects;
            (*b).counts.inuse_space += space;
        }
        self.inuse += space;
        if self.inuse > self.peak.bytes {
            self.peak = Peak { bytes: self.inuse, time_nanos: 0, id: self.peak.id + 1 };
        } else if self.peak.time_nanos == 0 && self.peak.id != 0 {
            self.peak.time_nanos = super::now_nanos();
        }
    }

    /// Records a sampled block of `size` bytes at `addr` standing for
    /// `weight` blocks, allocated from `frames`. False when out of memory.
    pub fn record(&mut self, addr: usize, size: usize, weight: f64, frames: &[usize]) -> bool {
        let ok = self.try_record(addr, size, weight, frames).is_some();
        if !ok {
            self.dropped += 1;
        }
        ok
    }

    fn try_record(&mut self, addr: usize, size: usize, weight: f64, frames: &[usize]) -> Option<()> {
        if self.buckets.is_null() {
            self.buckets = self.carve(BUCKET_HEADS * size_of::<usize>())?.cast();
            self.live = self.carve(LIVE_HEADS * size_of::<usize>())?.cast();
        }
        let bucket = self.bucket(frames)?;
        let live = match self.free_live {
            l if l.is_null() => self.carve(size_of::<Live>())?.cast::<Live>(),
            // SAFETY: nodes on the free list are arena memory we own.
            l => unsafe { core::mem::replace(&mut self.free_live, (*l).next) },
        };
        // SAFETY: `bucket` is a bucket of this store; `live` is unused arena
        // memory of the right size and alignment.
        unsafe {
            self.keep_peak(bucket);
            let c = &mut (*bucket).counts;
            let space = weight * size as f64;
            c.alloc_objects += weight;
            c.alloc_space += space;
            self.allocated += space;
            live.write(Live { next: null_mut(), addr, bucket, weight, size });
            self.add_inuse(bucket, weight, space);
            self.link(live, addr);
        }
        Some(())
    }

    /// The bucket of `frames`, made if new.
    fn bucket(&mut self, frames: &[usize]) -> Option<*mut Bucket> {
        // FNV-1a's prime over rotated words: cheap, and distinct stacks of
        // the same frames in another order hash apart.
        let hash = frames.iter().fold(0x9e37_79b9_usize, |h, &f| (h.rotate_left(5) ^ f).wrapping_mul(0x0100_0193));
        // SAFETY: `buckets` has BUCKET_HEADS heads; chains hold buckets.
        unsafe {
            let head = self.buckets.add(hash % BUCKET_HEADS);
            let mut b = *head;
            while !b.is_null() {
                if (*b).hash == hash && (*b).frames() == frames {
                    return Some(b);
                }
                b = (*b).next;
            }
            let b = self.carve(size_of::<Bucket>() + size_of_val(frames))?.cast::<Bucket>();
            // New since the peak: it held nothing then.
            b.write(Bucket {
                next: *head,
                hash,
                depth: frames.len(),
                counts: Counts::default(),
                at_peak: Counts::default(),
                peak_id: self.peak.id,
            });
            core::ptr::copy_nonoverlapping(frames.as_ptr(), b.add(1).cast::<usize>(), frames.len());
            *head = b;
            Some(b)
        }
    }

    /// The block at `addr` was freed: its stack no longer holds it. False
    /// if it was not a sampled block.
    pub fn forget(&mut self, addr: usize) -> bool {
        let Some(l) = self.unlink(addr) else { return false };
        // SAFETY: `l` was a record of this store; its bucket is one too.
        unsafe { self.add_inuse((*l).bucket, -(*l).weight, -(*l).weight * (*l).size as f64) };
        self.discard(Detached(l));
        true
    }

    /// Whether the block at `addr` is a sample.
    pub fn contains(&self, addr: usize) -> bool {
        if self.live.is_null() {
            return false;
        }
        // SAFETY: as in `detach`.
        unsafe {
            let mut l = *self.live.add(live_slot(addr));
            while !l.is_null() && (*l).addr != addr {
                l = (*l).next;
            }
            !l.is_null()
        }
    }

    /// The block at `addr` now has `size` bytes and lies at `to`; its weight
    /// becomes `weight` if one is given. False if it is no sample. The
    /// bytes its estimate gains count as allocated.
    pub fn resize(&mut self, addr: usize, to: usize, size: usize, weight: Option<f64>) -> bool {
        let Some(l) = self.unlink(addr) else { return false };
        // SAFETY: `l` was a record of this store, now the caller's alone; its
        // bucket is a bucket of this store.
        unsafe {
            let (objects, space) = ((*l).weight, (*l).weight * (*l).size as f64);
            (*l).size = size;
            (*l).weight = weight.unwrap_or((*l).weight);
            let gained = (*l).weight * size as f64 - space;
            if gained > 0.0 {
                self.keep_peak((*l).bucket);
                (*(*l).bucket).counts.alloc_space += gained;
                self.allocated += gained;
            }
            self.add_inuse((*l).bucket, (*l).weight - objects, gained);
            self.link(l, to);
        }
        true
    }

    /// Drops a record taken out of the table: its node is reused.
    pub fn discard(&mut self, Detached(live): Detached) {
        // SAFETY: `live` was unlinked from the table; it goes on the free list.
        unsafe {
            (*live).next = self.free_live;
        }
        self.free_live = live;
    }

    /// Takes the record of the sampled block at `addr` out of the table
    /// while the block moves; it stays in use (a move ends no peak, and
    /// reads no clock).
    pub fn detach(&mut self, addr: usize) -> Option<Detached> {
        self.unlink(addr).map(Detached)
    }

    /// Puts a record back, for the block now at `addr`.
    pub fn attach(&mut self, addr: usize, d: Detached) {
        // SAFETY: a detached record is a record of this store that no chain
        // holds.
        unsafe { self.link(d.0, addr) };
    }

    /// Takes the record of `addr` out of its chain, its counts untouched.
    fn unlink(&mut self, addr: usize) -> Option<*mut Live> {
        if self.live.is_null() {
            return None;
        }
        // SAFETY: `live` has LIVE_HEADS heads; chains hold live records of
        // buckets of this store.
        unsafe {
            let mut link = self.live.add(live_slot(addr));
            while !(*link).is_null() {
                let l = *link;
                if (*l).addr == addr {
                    *link = (*l).next;
                    return Some(l);
                }
                link = &raw mut (*l).next;
            }
        }
        None
    }

    /// Links a record no chain holds as the block at `addr`.
    ///
    /// # Safety
    /// `l` is a record of this store that no chain holds; the table exists
    /// (it does once a record does).
    unsafe fn link(&mut self, l: *mut Live, addr: usize) {
        // SAFETY: per the contract.
        unsafe {
            (*l).addr = addr;
            let head = self.live.add(live_slot(addr));
            (*l).next = *head;
            *head = l;
        }
    }

    /// Calls `f` on every bucket.
    pub fn for_each_bucket(&self, mut f: impl FnMut(&Bucket)) {
        if self.buckets.is_null() {
            return;
        }
        for i in 0..BUCKET_HEADS {
            // SAFETY: as in `bucket`.
            let mut b = unsafe { *self.buckets.add(i) };
            while !b.is_null() {
                // SAFETY: as above.
                unsafe {
                    f(&*b);
                    b = (*b).next;
                }
            }
        }
    }

    /// `bytes` of zeroed arena memory, word-aligned.
    fn carve(&mut self, bytes: usize) -> Option<*mut u8> {
        let bytes = bytes.next_multiple_of(size_of::<usize>());
        if self.end - self.cursor < bytes {
            let size = bytes.next_multiple_of(CHUNK);
            let p = os::map_aligned(size, OS_PAGE);
            if p.is_null() {
                return None;
            }
            // The rest of the old chunk is left unused: a few bytes a chunk.
            self.cursor = p as usize;
            self.end = p as usize + size;
        }
        let p = self.cursor as *mut u8;
        self.cursor += bytes;
        Some(p)
    }
}

/// Blocks sampled are whole pages (see `super::alloc_sampled`) or larger:
/// the bits above the page offset spread them over the table.
fn live_slot(addr: usize) -> usize {
    (addr / OS_PAGE) % LIVE_HEADS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_forgets_by_stack() {
        let mut s = Store::new();
        let (a, b) = ([1usize, 2, 3], [1usize, 2, 4]);
        assert!(s.record(0x10000, 100, 2.0, &a));
        assert!(s.record(0x20000, 50, 1.0, &a));
        assert!(s.record(0x30000, 10, 4.0, &b));
        assert!(s.forget(0x20000));
        assert!(!s.forget(0x20000), "a record is forgotten once");
        let mut seen = 0;
        s.for_each_bucket(|bk| {
            seen += 1;
            let c = bk.counts;
            if bk.frames() == a {
                assert_eq!((c.alloc_objects, c.alloc_space, c.inuse_objects, c.inuse_space), (3.0, 250.0, 2.0, 200.0));
            } else {
                assert_eq!(bk.frames(), b);
                assert_eq!((c.alloc_objects, c.inuse_space), (4.0, 40.0));
            }
        });
        assert_eq!(seen, 2);
        // A move keeps the block in use: no peak ends, no bytes change.
        let (inuse, peak) = (s.inuse, (s.peak.bytes, s.peak.time_nanos, s.peak.id));
        let d = s.detach(0x10000).expect("a live record");
        s.attach(0x50000, d);
        assert_eq!((s.inuse, (s.peak.bytes, s.peak.time_nanos, s.peak.id)), (inuse, peak));
        assert!(!s.forget(0x10000));
        assert!(s.forget(0x50000));
        // The freed records are reused.
        assert!(s.record(0x60000, 1, 1.0, &b));
        assert_eq!(s.dropped, 0);
    }

    /// Each bucket's counts at the peak, by its first frame.
    fn peak_of(s: &Store, frame: usize) -> Counts {
        let mut found = None;
        s.for_each_bucket(|b| {
            if b.frames()[0] == frame {
                found = Some(s.at_peak(b));
            }
        });
        found.expect("a bucket of that stack")
    }

    #[test]
    fn keeps_the_counts_at_the_high_water_mark() {
        let mut s = Store::new();
        let (a, b, c) = ([1usize], [2usize], [3usize]);
        assert!(s.record(0x10000, 100, 1.0, &a));
        assert!(s.record(0x20000, 300, 1.0, &b));
        // 400 in use: the peak. Then `a` falls and `c`, new, rises, but not
        // above it.
        assert!(s.forget(0x10000));
        assert!(s.record(0x30000, 50, 1.0, &c));
        assert_eq!((s.inuse, s.peak.bytes), (350.0, 400.0));
        assert_eq!([1, 2, 3].map(|f| peak_of(&s, f).inuse_space), [100.0, 300.0, 0.0]);
        // A new high: the present is the peak again, whatever changed since.
        assert!(s.record(0x40000, 200, 1.0, &a));
        assert_eq!(s.peak.bytes, 550.0);
        assert_eq!([1, 2, 3].map(|f| peak_of(&s, f).inuse_space), [200.0, 300.0, 50.0]);
        // Falling changes the present, not the peak.
        assert!(s.forget(0x20000));
        assert!(s.forget(0x30000));
        assert_eq!([1, 2, 3].map(|f| peak_of(&s, f).inuse_space), [200.0, 300.0, 50.0]);
        assert_eq!(peak_of(&s, 1).alloc_space, 300.0);
        assert_eq!((s.inuse, s.allocated), (200.0, 650.0));
        assert!(s.peak.time_nanos != 0, "timed when it ended");
    }

    #[test]
    fn a_resized_record_follows_its_block() {
        let mut s = Store::new();
        assert!(s.record(0x10000, 100, 2.0, &[1]));
        assert!(!s.resize(0x20000, 0x20000, 50, None), "no record there");
        // Grown and moved, weighed anew: 2 x 100 -> 1.5 x 300 bytes.
        assert!(s.resize(0x10000, 0x30000, 300, Some(1.5)));
        assert!(!s.contains(0x10000) && s.contains(0x30000));
        let c = peak_of(&s, 1);
        assert_eq!((c.inuse_objects, c.inuse_space, c.alloc_space), (1.5, 450.0, 450.0));
        assert_eq!(s.peak.time_nanos, 0, "still rising: the peak is the present");
        // Shrunk in place, weight kept: the allocated bytes stay.
        assert!(s.resize(0x30000, 0x30000, 100, None));
        assert_eq!((s.inuse, s.allocated, s.peak.bytes), (150.0, 450.0, 450.0));
        assert!(s.peak.time_nanos != 0);
        assert!(s.forget(0x30000) && s.inuse == 0.0);
    }
}
