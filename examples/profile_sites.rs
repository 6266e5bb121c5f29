//! The heap profiler through `GlobalAlloc`: a Rust program with
//! `mallocator::Mallocator` as its global allocator, one function per way
//! Rust allocates (a `Vec`'s buffer small and large, a huge one, zeroed,
//! over-aligned, grown by `realloc`), each holding a known number of blocks
//! of a known size. With all of them live it writes the profile to
//! `argv[1]` (`mallocator::profile::dump`) and the truth to `argv[2]` (the
//! lines `test/profile/check.py` reads), then exits with every block still
//! live. `test/profile/run.sh` builds it for both targets and runs it with
//! `MALLOCATOR_PROFILE_RATE=16384`; at that rate each site's standard error
//! is at most 3.2 % of its bytes, as in `paths.cpp`.
//!
//! Linked into the program, the allocator's frames cannot be told from the
//! program's, so the sites are found in the cumulative column.

use std::alloc::{Layout, alloc, alloc_zeroed, realloc};
use std::ffi::CString;
use std::hint::black_box;
use std::io::Write;

#[global_allocator]
static GLOBAL: mallocator::Mallocator = mallocator::Mallocator;

/// Huge blocks: above the large allocator's limit on both widths (8 MiB on
/// x86_64, 4 MiB on i686).
const HUGE: usize = 9_000_000;

/// (site, blocks, size) as the profile must estimate them.
const SITES: [(&str, usize, usize); 6] = [
    ("vec_small", 55_000, 300),
    ("vec_large", 100, 50_000),
    ("vec_huge", 4, HUGE),
    ("zeroed", 5_000, 3_008),
    ("over_aligned", 23_000, 700),
    ("grown", 50, 60_000),
];

/// A buffer of `n` bytes holding `tag`: the three `Vec` sites differ by it
/// (identical functions would be folded into one, which the profile would
/// name for all three).
fn tagged(n: usize, tag: u8) -> Vec<u8> {
    let mut v = Vec::with_capacity(n);
    v.push(tag);
    black_box(v)
}

#[inline(never)]
fn vec_small(n: usize) -> Vec<u8> {
    tagged(n, 1)
}

#[inline(never)]
fn vec_large(n: usize) -> Vec<u8> {
    tagged(n, 2)
}

#[inline(never)]
fn vec_huge(n: usize) -> Vec<u8> {
    tagged(n, 3)
}

#[inline(never)]
fn zeroed(n: usize) -> *mut u8 {
    // SAFETY: the layout has a non-zero size.
    black_box(unsafe { alloc_zeroed(Layout::from_size_align(n, 8).unwrap()) })
}

#[inline(never)]
fn over_aligned(n: usize) -> *mut u8 {
    // SAFETY: the layout has a non-zero size.
    black_box(unsafe { alloc(Layout::from_size_align(n, 128).unwrap()) })
}

/// A large block grown by `realloc` (in place or moved, as the pages after
/// it allow).
#[inline(never)]
fn grown(n: usize) -> *mut u8 {
    let layout = Layout::from_size_align(40_000, 8).unwrap();
    // SAFETY: the layout has a non-zero size; `p`, if not null, is a block
    // of that layout.
    black_box(unsafe {
        let p = alloc(layout);
        if p.is_null() { p } else { realloc(p, layout, n) }
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, profile, truth] = args.as_slice() else {
        eprintln!("usage: profile_sites PROFILE TRUTH");
        std::process::exit(2);
    };
    let mut vecs = Vec::new();
    let mut raw = Vec::new();
    for (site, count, size) in SITES {
        for _ in 0..count {
            match site {
                "vec_small" => vecs.push(vec_small(size)),
                "vec_large" => vecs.push(vec_large(size)),
                "vec_huge" => vecs.push(vec_huge(size)),
                "zeroed" => raw.push(zeroed(size)),
                "over_aligned" => raw.push(over_aligned(size)),
                _ => raw.push(grown(size)),
            }
        }
    }
    assert!(raw.iter().all(|p| !p.is_null()), "out of memory");
    let mut lines = String::new();
    for (site, count, size) in SITES {
        lines += &format!("{site} {count} {size} leaks\n");
    }
    std::fs::File::create(truth).and_then(|mut f| f.write_all(lines.as_bytes())).expect("writing the truth");
    let path = CString::new(profile.as_str()).expect("a path without NUL");
    if let Err(errno) = mallocator::profile::dump(Some(&path)) {
        eprintln!("profile_sites: dump failed, errno {errno}");
        std::process::exit(1);
    }
    // Every block stays live until the process ends.
    std::mem::forget((vecs, raw));
}
