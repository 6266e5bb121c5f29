//! The counters behind the statistics. Small-block counters live in each
//! page and thread heap and are written only by the owner with plain
//! (non-atomic read-modify-write) instructions, so counting costs the fast
//! path one addition and no lock prefix; a reader sums all pages and heaps
//! ([`crate::api::stats`]). Rare events (mappings, large blocks) count in
//! global atomics.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A counter written by one thread and read by any: a relaxed load and store
/// instead of an atomic add (`lock xadd` would cost the fast path ~20 cycles).
#[cfg(target_pointer_width = "64")]
#[derive(Default)]
pub struct Counter(AtomicU64);

#[cfg(target_pointer_width = "64")]
impl Counter {
    pub const fn new() -> Self {
        Counter(AtomicU64::new(0))
    }

    #[inline(always)]
    pub fn add(&self, n: usize) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n as u64), Relaxed);
    }

    /// Back to 0 (the owner).
    pub fn clear(&self) {
        self.0.store(0, Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// On 32-bit targets a 64-bit atomic load and store go through SSE registers
/// (a third of the allocation fast path on i686: `docs/performance.md`,
/// step 16). The owner adds to the low word alone; when it carries, it bumps the
/// high word around the store as a sequence number (odd while it changes),
/// so that a reader sees the two halves of one value.
#[cfg(not(target_pointer_width = "64"))]
#[derive(Default)]
#[repr(C)]
pub struct Counter {
    low: core::sync::atomic::AtomicU32,
    /// Twice the high word, plus one while a carry is being written.
    high_seq: core::sync::atomic::AtomicU32,
}

#[cfg(not(target_pointer_width = "64"))]
impl Counter {
    pub const fn new() -> Self {
        Counter { low: core::sync::atomic::AtomicU32::new(0), high_seq: core::sync::atomic::AtomicU32::new(0) }
    }

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
        self.set_high(low, 2);
    }

    /// Back to 0 (the owner).
    pub fn clear(&self) {
        let seq = self.high_seq.load(Relaxed);
        self.set_high(0, -(seq as i32));
    }

    /// Stores `low` and moves the high word by `seq_step / 2`, the sequence
    /// odd in between.
    fn set_high(&self, low: u32, seq_step: i32) {
        use core::sync::atomic::Ordering::Release;
        let seq = self.high_seq.load(Relaxed);
        self.high_seq.store(seq | 1, Release);
        self.low.store(low, Release);
        self.high_seq.store(seq.wrapping_add_signed(seq_step), Release);
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

/// A counter that only its owner thread adds to, on a fast path: its
/// owner adds one with one `inc` (x86_64) or `add` (i686) to memory (see
/// `Page::count_out`), which LLVM does not make of a relaxed load, addition
/// and store (it keeps three instructions). On i686 that adds to the low
/// word, and the carry into the high word is a cold path ([`Self::carried`]);
/// a reader that races it, once per 2^32 additions, may read 2^32 too few.
#[repr(transparent)]
pub struct LocalCounter(Counter);

impl LocalCounter {
    pub const fn new() -> Self {
        LocalCounter(Counter::new())
    }

    /// Adds one, where no `asm!` does it.
    #[cfg(not(any(target_arch = "x86_64", target_arch = "x86")))]
    pub fn inc(&self) {
        self.0.add(1);
    }

    /// The low word wrapped to zero: carries into the high word.
    #[cfg(target_arch = "x86")]
    #[cold]
    pub fn carried(&self) {
        self.0.carry(0);
    }

    pub fn get(&self) -> u64 {
        self.0.get()
    }

    /// Back to 0 (the owner, when the page is assigned anew).
    pub fn reset(&self) {
        self.0.clear();
    }
}

/// Bytes a heap may still hand out before its next sample (see
/// `crate::profiler`): written by the owner, read by statistics. On x86 the
/// heap counts it down itself, in one instruction (`Heap::count_down`).
#[derive(Default)]
#[repr(transparent)]
pub struct Countdown(core::sync::atomic::AtomicIsize);

impl Countdown {
    pub const fn new(v: isize) -> Self {
        Countdown(core::sync::atomic::AtomicIsize::new(v))
    }

    /// Counts `n` bytes down; true when the count passed zero.
    #[cfg(not(any(target_arch = "x86_64", target_arch = "x86")))]
    #[inline(always)]
    pub fn take(&self, n: usize) -> bool {
        let left = self.0.load(Relaxed).wrapping_sub(n as isize);
        self.0.store(left, Relaxed);
        left < 0
    }

    pub fn get(&self) -> isize {
        self.0.load(Relaxed)
    }

    pub fn set(&self, v: isize) {
        self.0.store(v, Relaxed);
    }
}

/// A counter any thread may add to (rare events only).
pub struct Shared(pub AtomicU64);

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
pub static PEAK_MAPPED: AtomicU64 = AtomicU64::new(0);
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
/// Bytes of page bitmaps in use (see `crate::small::arena`).
pub static BITMAP_BYTES: Shared = Shared::new();

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
