//! Statistics: the counters of every heap and the global ones, summed on
//! read. The snapshot is a `#[repr(C)]` struct, the same for C
//! (`memory_stats`) and Rust ([`snapshot`]); [`footprint`] says where the
//! resident memory is (Rust only: it asks the kernel, page by page);
//! [`print()`] writes both as a readable table without allocating.

use crate::diag::counters::*;
use crate::diag::text::Line;
use crate::small::segment::{Part, SmallSegment};
use crate::small::size_class::{NUM_CLASSES, class_size, classes};
use core::sync::atomic::Ordering::Relaxed;

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
    /// Sum of the sizes asked for through thread heaps, small and large.
    pub requested_bytes: u64,
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
        requested_bytes: 0,
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
        let c = &heap.counters;
        s.remote_frees += c.remote_frees.get();
        s.requested_bytes += c.requested();
        for (class, out) in s.classes.iter_mut().enumerate().take(NUM_CLASSES) {
            out.allocations += c.allocations[class].get();
        }
    });
    // Pages count their own allocations and blocks in use; frees are the
    // difference. A page given back meanwhile may count twice or not at
    // all: exact for the calling thread's heap, a moment's picture of the
    // others.
    SmallSegment::for_each_page(|page| {
        let c = &mut s.classes[page.class()];
        c.allocations += page.allocations();
        c.live_blocks += page.used() as u64;
    });
    for class in classes() {
        let c = &mut s.classes[class];
        c.block_size = class_size(class) as u64;
        c.frees = c.allocations.saturating_sub(c.live_blocks);
        s.small_allocations += c.allocations;
        s.small_frees += c.frees;
        s.small_live_bytes += c.live_blocks * c.block_size;
    }
    s.classes_used = NUM_CLASSES as u32;
    s
}

/// Where the resident memory is: what separates the bytes the program holds
/// from the bytes its process pays for (rounding to the class size is in
/// the blocks' bytes: see the class table of [`MemoryStats`]).
#[derive(Clone, Copy, Debug)]
pub struct Footprint {
    /// Per class: pages holding at least one block, and their resident
    /// bytes (live blocks, free blocks, and the written part of the rest).
    pub class_pages: [u64; STATS_CLASSES],
    pub class_resident: [u64; STATS_CLASSES],
    /// Pages of a class holding no block (the heaps' rings of emptied pages,
    /// kept for reuse), and their resident bytes.
    pub empty_pages: u64,
    pub empty_resident: u64,
    /// Resident bytes of pages that belong to no class (purged, but for the
    /// dirty pages a heap keeps, up to 256, to be reused warm or purged
    /// together).
    pub free_page_resident: u64,
    /// Small segments, and the resident bytes of their headers (fields and
    /// page descriptors).
    pub segments: u64,
    pub header_resident: u64,
    /// Bytes of page bitmaps in use.
    pub bitmap_bytes: u64,
    /// Freed large runs that may be resident, and cached huge mappings.
    pub large_kept: u64,
    pub huge_cached: u64,
}

/// Counts the resident pages of every small segment (`mincore`) and what the
/// large allocator keeps. Slow (a system call per segment), for a look at
/// one moment; other threads' pages change meanwhile.
pub fn footprint() -> Footprint {
    let mut f = Footprint {
        class_pages: [0; STATS_CLASSES],
        class_resident: [0; STATS_CLASSES],
        empty_pages: 0,
        empty_resident: 0,
        free_page_resident: 0,
        segments: 0,
        header_resident: 0,
        bitmap_bytes: BITMAP_BYTES.get(),
        large_kept: 0,
        huge_cached: 0,
    };
    SmallSegment::for_each_resident(|part, bytes| {
        let bytes = bytes as u64;
        match part {
            Part::Header => {
                f.segments += 1;
                f.header_resident += bytes;
            }
            Part::FreePage => f.free_page_resident += bytes,
            Part::Page(page) if page.used() == 0 => {
                f.empty_pages += 1;
                f.empty_resident += bytes;
            }
            Part::Page(page) => {
                f.class_pages[page.class()] += 1;
                f.class_resident[page.class()] += bytes;
            }
        }
    });
    let (large, huge) = crate::large::kept();
    (f.large_kept, f.huge_cached) = (large as u64, huge as u64);
    f
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
    Line::new().push(b"  requested ").dec(kib(s.requested_bytes)).push(b" KiB in all\n").write_to(fd);
    let f = footprint();
    let resident: u64 = f.class_resident.iter().sum();
    Line::new()
        .push(b"  resident: small pages in use ")
        .dec(kib(resident))
        .push(b" KiB (live blocks ")
        .dec(kib(s.small_live_bytes))
        .push(b" KiB), ")
        .dec(f.empty_pages)
        .push(b" empty pages kept ")
        .dec(kib(f.empty_resident))
        .push(b" KiB, free pages ")
        .dec(kib(f.free_page_resident))
        .push(b" KiB\n")
        .write_to(fd);
    Line::new()
        .push(b"  metadata: ")
        .dec(f.segments)
        .push(b" segment headers ")
        .dec(kib(f.header_resident))
        .push(b" KiB resident, bitmaps ")
        .dec(kib(f.bitmap_bytes))
        .push(b" KiB; freed and kept: large runs up to ")
        .dec(kib(f.large_kept))
        .push(b" KiB, huge mappings ")
        .dec(kib(f.huge_cached))
        .push(b" KiB\n")
        .write_to(fd);
    Line::new().push(b"  class  block     allocs      frees       live   live KiB  pages  res. KiB\n").write_to(fd);
    for (class, c) in s.classes.iter().enumerate().take(s.classes_used as usize) {
        if c.allocations == 0 {
            continue;
        }
        Line::new()
            .dec_width(class as u64, 7)
            .dec_width(c.block_size, 7)
            .dec_width(c.allocations, 11)
            .dec_width(c.frees, 11)
            .dec_width(c.live_blocks, 11)
            .dec_width(kib(c.live_blocks * c.block_size), 11)
            .dec_width(f.class_pages[class], 7)
            .dec_width(kib(f.class_resident[class]), 10)
            .push(b"\n")
            .write_to(fd);
    }
}
