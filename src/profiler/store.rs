//! What the sampler keeps: one *bucket* per distinct call stack with its
//! estimated counts, and one *live record* per sampled block not yet freed.
//! Both live in an arena of mappings that only grows while the process runs
//! (a profile must still name stacks whose blocks are long gone), reached
//! through two chained hash tables. All of it under the profile's lock.

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

pub struct Store {
    buckets: *mut *mut Bucket,
    live: *mut *mut Live,
    free_live: *mut Live,
    cursor: usize,
    end: usize,
    /// Samples lost because the arena could not grow.
    pub dropped: u64,
}

// SAFETY: the store is only reached through the profile's lock.
unsafe impl Send for Store {}

impl Store {
    pub const fn new() -> Self {
        Self { buckets: null_mut(), live: null_mut(), free_live: null_mut(), cursor: 0, end: 0, dropped: 0 }
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
            let c = &mut (*bucket).counts;
            let space = weight * size as f64;
            c.alloc_objects += weight;
            c.alloc_space += space;
            live.write(Live { next: null_mut(), addr, bucket, weight, size });
            self.attach(addr, Detached(live));
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
            b.write(Bucket { next: *head, hash, depth: frames.len(), counts: Counts::default() });
            core::ptr::copy_nonoverlapping(frames.as_ptr(), b.add(1).cast::<usize>(), frames.len());
            *head = b;
            Some(b)
        }
    }

    /// The block at `addr` was freed: its stack no longer holds it. False
    /// if it was not a sampled block.
    pub fn forget(&mut self, addr: usize) -> bool {
        let Some(d) = self.detach(addr) else { return false };
        self.discard(d);
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

    /// Takes the record of the sampled block at `addr` out of the table.
    pub fn detach(&mut self, addr: usize) -> Option<Detached> {
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
                    let c = &mut (*(*l).bucket).counts;
                    c.inuse_objects -= (*l).weight;
                    c.inuse_space -= (*l).weight * (*l).size as f64;
                    return Some(Detached(l));
                }
                link = &raw mut (*l).next;
            }
        }
        None
    }

    /// Puts a record back, for the block now at `addr`.
    pub fn attach(&mut self, addr: usize, d: Detached) {
        let l = d.0;
        // SAFETY: `l` is a record of this store that no chain holds; the
        // table exists, since a record does.
        unsafe {
            (*l).addr = addr;
            let c = &mut (*(*l).bucket).counts;
            c.inuse_objects += (*l).weight;
            c.inuse_space += (*l).weight * (*l).size as f64;
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
        let d = s.detach(0x10000).expect("a live record");
        s.attach(0x50000, d);
        assert!(!s.forget(0x10000));
        assert!(s.forget(0x50000));
        // The freed records are reused.
        assert!(s.record(0x60000, 1, 1.0, &b));
        assert_eq!(s.dropped, 0);
    }
}
