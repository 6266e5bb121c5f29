//! Statistics. Small-block counters live in each thread heap and are written
//! only by the owner with plain (non-atomic read-modify-write) stores, so
//! counting costs the fast path two additions and no lock prefix; a reader
//! sums all heaps. Rare events (mappings, large blocks) count in global
//! atomics.
//!
//! The snapshot is a `#[repr(C)]` struct, the same for C (`memory_stats`) and
//! Rust ([`snapshot`]); [`print()`] writes a readable table without allocating.

use crate::size_class::{NUM_CLASSES, class_size, classes};
use crate::text::Line;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A counter written by one thread and read by any: a relaxed load and store
/// instead of an atomic add (`lock xadd` would cost the fast path ~20 cycles).
#[cfg(target_pointer_width = "64")]
#[derive(Default)]
pub struct Counter(AtomicU64);

#[cfg(target_pointer_width = "64")]
impl Counter {
    #[inline(always)]
    pub fn add(&self, n: usize) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n as u64), Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// On 32-bit targets a 64-bit atomic load and store go through SSE registers
/// (eleven instructions per counter on i686, a third of the allocation fast
/// path). The owner adds to the low word alone; when it carries, it bumps the
/// high word around the store as a sequence number (odd while it changes),
/// so that a reader sees the two halves of one value.
#[cfg(not(target_pointer_width = "64"))]
#[derive(Default)]
pub struct Counter {
    low: core::sync::atomic::AtomicU32,
    /// Twice the high word, plus one while a carry is being written.
    high_seq: core::sync::atomic::AtomicU32,
}

#[cfg(not(target_pointer_width = "64"))]
impl Counter {
    #[inline(always)]
    pub fn add(&self, n: usize) {
        let (low, carry) = self.low.load(Relaxed).overflowing_add(n as u32);
        if carry {
            self.carry(low);
        } else {
            // Release (a plain store on x86): a reader that sees this value
            // also sees the high word of the last carry.
            self.low.store(low, core::sync::atomic::Ordering::Release);
        }
    }

    #[cold]
    fn carry(&self, low: u32) {
        use core::sync::atomic::Ordering::Release;
        let seq = self.high_seq.load(Relaxed);
        self.high_seq.store(seq + 1, Release);
        self.low.store(low, Release);
        self.high_seq.store(seq + 2, Release);
    }

    pub fn get(&self) -> u64 {
        use core::sync::atomic::Ordering::Acquire;
        loop {
            let seq = self.high_seq.load(Acquire);
            let low = self.low.load(Acquire);
            if seq.is_multiple_of(2) && self.high_seq.load(Acquire) == seq {
                return u64::from(seq / 2) << 32 | u64::from(low);
            }
            core::hint::spin_loop();
        }
    }
}

/// Per class, in each heap.
#[derive(Default)]
pub struct ClassCounters {
    pub allocations: Counter,
    pub frees: Counter,
    /// Sum of the sizes asked for (the block size minus this is rounding).
    pub requested: Counter,
}

/// A counter any thread may add to (rare events only).
pub struct Shared(AtomicU64);

impl Shared {
    const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }

    pub fn sub(&self, n: u64) {
        self.0.fetch_sub(n, Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

pub static MAPPED: Shared = Shared::new();
static PEAK_MAPPED: AtomicU64 = AtomicU64::new(0);
pub static MMAP_CALLS: Shared = Shared::new();
pub static MUNMAP_CALLS: Shared = Shared::new();
/// Bytes given back with `madvise` (the addresses stay mapped).
pub static PURGED: Shared = Shared::new();
/// Bytes given back with `munmap`.
pub static UNMAPPED: Shared = Shared::new();
pub static LARGE_ALLOCATIONS: Shared = Shared::new();
pub static LARGE_FREES: Shared = Shared::new();
pub static LARGE_LIVE_BYTES: Shared = Shared::new();
pub static HUGE_ALLOCATIONS: Shared = Shared::new();
pub static HUGE_FREES: Shared = Shared::new();
pub static HUGE_LIVE_BYTES: Shared = Shared::new();

/// Records a new mapping of `bytes`.
pub fn mapped(bytes: usize) {
    MMAP_CALLS.add(1);
    let now = MAPPED.0.fetch_add(bytes as u64, Relaxed) + bytes as u64;
    PEAK_MAPPED.fetch_max(now, Relaxed);
}

/// Records a mapping resized (or, with `new = 0`, moved away) by `mremap`.
pub fn resized(old: usize, new: usize) {
    let now = MAPPED.0.fetch_add(new as u64, Relaxed) + new as u64;
    PEAK_MAPPED.fetch_max(now, Relaxed);
    MAPPED.sub(old as u64);
}

/// Records `bytes` unmapped.
pub fn unmapped(bytes: usize) {
    MUNMAP_CALLS.add(1);
    MAPPED.sub(bytes as u64);
    UNMAPPED.add(bytes as u64);
}

/// Capacity of the per-class table in [`MemoryStats`]; the C header has the
/// same number.
pub const STATS_CLASSES: usize = 64;
const _: () = assert!(NUM_CLASSES <= STATS_CLASSES);

/// One size class, summed over all heaps (`struct memory_class_stats`).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct ClassStats {
    pub block_size: u64,
    pub allocations: u64,
    pub frees: u64,
    pub live_blocks: u64,
    pub requested_bytes: u64,
}

/// A snapshot of all counters (`struct memory_stats` in `memory.h`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MemoryStats {
    pub mapped_bytes: u64,
    pub peak_mapped_bytes: u64,
    pub mmap_calls: u64,
    pub munmap_calls: u64,
    pub purged_bytes: u64,
    pub unmapped_bytes: u64,
    pub small_allocations: u64,
    pub small_frees: u64,
    pub small_live_bytes: u64,
    pub small_requested_bytes: u64,
    pub remote_frees: u64,
    pub large_allocations: u64,
    pub large_frees: u64,
    pub large_live_bytes: u64,
    pub huge_allocations: u64,
    pub huge_frees: u64,
    pub huge_live_bytes: u64,
    pub classes_used: u32,
    pub classes: [ClassStats; STATS_CLASSES],
}

/// Sums every heap's counters and the global ones. Counters of other threads
/// are read while they run: each is exact, their sum is a moment's picture.
pub fn snapshot() -> MemoryStats {
    let mut s = MemoryStats {
        mapped_bytes: MAPPED.get(),
        peak_mapped_bytes: PEAK_MAPPED.load(Relaxed),
        mmap_calls: MMAP_CALLS.get(),
        munmap_calls: MUNMAP_CALLS.get(),
        purged_bytes: PURGED.get(),
        unmapped_bytes: UNMAPPED.get(),
        small_allocations: 0,
        small_frees: 0,
        small_live_bytes: 0,
        small_requested_bytes: 0,
        remote_frees: 0,
        large_allocations: LARGE_ALLOCATIONS.get(),
        large_frees: LARGE_FREES.get(),
        large_live_bytes: LARGE_LIVE_BYTES.get(),
        huge_allocations: HUGE_ALLOCATIONS.get(),
        huge_frees: HUGE_FREES.get(),
        huge_live_bytes: HUGE_LIVE_BYTES.get(),
        classes_used: 0,
        classes: [ClassStats::default(); STATS_CLASSES],
    };
    crate::thread::for_each_heap(|heap| {
        s.remote_frees += heap.remote_frees.get();
        for (class, c) in heap.counters.iter().enumerate() {
            let out = &mut s.classes[class];
            out.allocations += c.allocations.get();
            out.frees += c.frees.get();
            out.requested_bytes += c.requested.get();
        }
    });
    for class in classes() {
        let c = &mut s.classes[class];
        c.block_size = class_size(class) as u64;
        c.live_blocks = c.allocations.saturating_sub(c.frees);
        s.small_allocations += c.allocations;
        s.small_frees += c.frees;
        s.small_live_bytes += c.live_blocks * c.block_size;
        s.small_requested_bytes += c.requested_bytes;
    }
    s.classes_used = NUM_CLASSES as u32;
    s
}

/// Writes the statistics as a table to `fd`.
pub fn print(fd: i32) {
    let s = snapshot();
    let kib = |b: u64| b >> 10;
    Line::new().push(b"mallocator statistics\n").write_to(fd);
    Line::new()
        .push(b"  mapped now ")
        .dec(kib(s.mapped_bytes))
        .push(b" KiB, peak ")
        .dec(kib(s.peak_mapped_bytes))
        .push(b" KiB; mmap ")
        .dec(s.mmap_calls)
        .push(b", munmap ")
        .dec(s.munmap_calls)
        .push(b"; returned: purged ")
        .dec(kib(s.purged_bytes))
        .push(b" KiB, unmapped ")
        .dec(kib(s.unmapped_bytes))
        .push(b" KiB\n")
        .write_to(fd);
    Line::new()
        .push(b"  small: ")
        .dec(s.small_allocations)
        .push(b" allocs, ")
        .dec(s.small_frees)
        .push(b" frees (")
        .dec(s.remote_frees)
        .push(b" from other threads), live ")
        .dec(kib(s.small_live_bytes))
        .push(b" KiB\n")
        .write_to(fd);
    for (name, allocs, frees, live) in [
        (&b"  large: "[..], s.large_allocations, s.large_frees, s.large_live_bytes),
        (&b"  huge:  "[..], s.huge_allocations, s.huge_frees, s.huge_live_bytes),
    ] {
        Line::new()
            .push(name)
            .dec(allocs)
            .push(b" allocs, ")
            .dec(frees)
            .push(b" frees, live ")
            .dec(kib(live))
            .push(b" KiB\n")
            .write_to(fd);
    }
    Line::new().push(b"  class  block     allocs      frees       live   live KiB  requested%\n").write_to(fd);
    for (class, c) in s.classes.iter().enumerate().take(s.classes_used as usize) {
        if c.allocations == 0 {
            continue;
        }
        // Requested bytes as a share of the block bytes handed out: 100
        // minus the rounding loss of this class.
        let used = c.requested_bytes * 100 / (c.allocations * c.block_size).max(1);
        Line::new()
            .dec_width(class as u64, 7)
            .dec_width(c.block_size, 7)
            .dec_width(c.allocations, 11)
            .dec_width(c.frees, 11)
            .dec_width(c.live_blocks, 11)
            .dec_width(kib(c.live_blocks * c.block_size), 11)
            .dec_width(used, 11)
            .push(b"%\n")
            .write_to(fd);
    }
}

#[cfg(test)]
mod tests {
    use super::Counter;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn counter_carries_into_the_high_word() {
        let c = Counter::default();
        c.add(0xFFFF_FFF0);
        c.add(0x20);
        assert_eq!(c.get(), 0x1_0000_0010);
    }

    #[test]
    fn a_reader_never_sees_half_a_carry() {
        // Every add carries on 32-bit targets half of the time; a torn read
        // (new low word, old high word) would go backwards.
        let c = Counter::default();
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..200_000 {
                    c.add(0x8000_0000);
                }
                done.store(true, Ordering::Release);
            });
            let mut last = 0;
            while !done.load(Ordering::Acquire) {
                let now = c.get();
                assert!(now >= last && now.is_multiple_of(0x8000_0000), "{now:#x} after {last:#x}");
                last = now;
            }
        });
        assert_eq!(c.get(), 200_000 * 0x8000_0000);
    }
}
