//! Random allocate/free sequences checked against a model: blocks never
//! overlap, are aligned as promised, and keep their contents (across threads:
//! `model_threads.rs`).

mod common;

use common::{Live, check_and_free};
use mallocator::alloc::{alloc, free, usable_size};
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
enum Op {
    Alloc { size: usize, align_log2: u32 },
    Free { pick: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        // Mostly small sizes, some large, a few huge.
        4 => (0usize..=512, 0u32..=4).prop_map(|(size, align_log2)| Op::Alloc { size, align_log2 }),
        2 => (513usize..=20_000, 0u32..=6).prop_map(|(size, align_log2)| Op::Alloc { size, align_log2 }),
        1 => (20_000usize..=3_000_000, 0u32..=13).prop_map(|(size, align_log2)| Op::Alloc { size, align_log2 }),
        5 => any::<usize>().prop_map(|pick| Op::Free { pick }),
    ]
}

/// The alignment a request gets: what it asked for, 16 for multiples of 16,
/// the OS page for blocks above the largest class.
fn promised_align(size: usize, align: usize) -> usize {
    let mut a = align.max(8);
    if size > 0 && size.is_multiple_of(16) {
        a = a.max(16);
    }
    if size > mallocator::size_class::MAX_SMALL {
        a = a.max(4096);
    }
    a
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn blocks_are_disjoint_aligned_and_intact(ops in prop::collection::vec(op(), 1..400)) {
        let mut live: BTreeMap<usize, Live> = BTreeMap::new();
        for (i, op) in ops.into_iter().enumerate() {
            match op {
                Op::Alloc { size, align_log2 } => {
                    let align = 1usize << align_log2;
                    let p = alloc(size, align) as usize;
                    prop_assert!(p != 0, "allocation of {} failed", size);
                    prop_assert_eq!(p % promised_align(size, align), 0, "size {} align {}", size, align);
                    let usable = usable_size(p as *const u8);
                    prop_assert!(usable >= size);
                    let span = size.max(1);
                    if let Some((&q, l)) = live.range(..p + span).next_back() {
                        prop_assert!(q + l.size.max(1) <= p, "{:#x}+{} overlaps {:#x}", q, l.size, p);
                    }
                    let fill = (i % 251) as u8 + 1;
                    // SAFETY: the block has `size` writable bytes.
                    unsafe { std::ptr::write_bytes(p as *mut u8, fill, size) };
                    live.insert(p, Live { size, fill });
                }
                Op::Free { pick } => {
                    if let Some(&p) = live.keys().nth(pick % live.len().max(1)) {
                        let l = live.remove(&p).unwrap();
                        check_and_free(p, &l);
                    }
                }
            }
        }
        for (p, l) in live {
            check_and_free(p, &l);
        }
    }
}

#[test]
fn double_free_leaves_the_heap_intact() {
    let p = alloc(32, 8);
    // SAFETY: `p` is live; the second free is the misuse under test, which the
    // allocator must detect without touching its lists.
    unsafe {
        free(p);
        free(p);
    }
    let a = alloc(32, 8);
    let b = alloc(32, 8);
    assert_ne!(a, b, "a double free must not hand out one block twice");
    // SAFETY: both are live blocks.
    unsafe {
        free(a);
        free(b);
    }
}

#[test]
fn absurd_sizes_fail_with_enomem() {
    for size in [usize::MAX, usize::MAX - 4095, usize::MAX - (8 << 20)] {
        assert!(alloc(size, 8).is_null());
        assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::ENOMEM));
    }
    assert!(alloc(100, 1 << (usize::BITS - 2)).is_null(), "unsatisfiable alignment");
}
