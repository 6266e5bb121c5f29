//! The slab size classes.
//!
//! Up to [`FINE_LIMIT`] the classes step by 8 bytes; above it there are four
//! classes per doubling up to [`MAX_SMALL`]. The measurements behind this
//! choice (space lost to rounding against lookup cost and page count, for
//! several candidate sets) are in `docs/class-measurements.md`; the
//! `class_waste` example reproduces them.
//!
//! Alignment follows from the spacing: every class is a multiple of 8, every
//! class that is a multiple of 16 yields 16-aligned blocks (blocks start at
//! the page base, and pages on 64 KiB boundaries), and every class above `FINE_LIMIT` is a multiple of 64.

/// The smallest block, on both targets: a free block holds one 32-bit link
/// (an encoded block index, see `crate::small::block`), and nothing else of
/// the allocator is ever written into a block; 8 keeps every block 8-aligned.
/// Requests of 1..8 bytes take 8 (against 16 until the bitmaps moved out of
/// the segment header: 0.2% of test 6's address space, which draws
/// 1..256 bytes).
pub const MIN_BLOCK: usize = 8;

/// Up to here classes are 8 bytes apart: uniform small requests (the seed's
/// test 6 draws 1..=256) then lose 3.5 bytes on average to rounding (2.7 %
/// of its bytes, both widths).
pub const FINE_LIMIT: usize = 256;

/// The largest request served from slabs; above it the large-region allocator
/// takes over. 16 KiB keeps at least four blocks in a 64 KiB page.
pub const MAX_SMALL: usize = 16 * 1024;

/// Classes per doubling above `FINE_LIMIT`: at most 25% (on average about
/// 11%) of a block is lost to rounding, as in jemalloc and mimalloc.
const STEPS_PER_DOUBLING: usize = 4;

/// Index of the first coarse class (the one just above `FINE_LIMIT`).
const FIRST_COARSE: usize = FINE_LIMIT / 8 + 1;

/// Number of class indices (index 0 is never used: requests below
/// `MIN_BLOCK` are rounded up to it).
pub const NUM_CLASSES: usize =
    FIRST_COARSE + STEPS_PER_DOUBLING * (MAX_SMALL.trailing_zeros() - FINE_LIMIT.trailing_zeros()) as usize;

/// Up to here the class of a request comes from a table (one byte per 8-byte
/// step, two 129-byte tables: three cache lines each), which spares the
/// fast path of `malloc` the rounding to 16 bytes and the bit scan of the
/// coarse classes; most requests of real programs are below 1 KiB. Each
/// heap mirrors the two tables with its current page per entry (see
/// `crate::thread::tables`), so that `malloc` goes from the size to a page in
/// one load.
pub const TABLE_LIMIT: usize = 1024;
/// Entries of a table: one per 8-byte step, and one for size 0.
pub const TABLE_LEN: usize = TABLE_LIMIT / 8 + 1;

/// The table entry of a request of `size <= TABLE_LIMIT` bytes.
#[inline(always)]
pub const fn table_index(size: usize) -> usize {
    (size + 7) >> 3
}

/// Which of the two tables a request uses.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(usize)]
pub enum Table {
    /// Blocks 8-aligned (Rust layouts that ask for no more, `allocate`).
    Rust = 0,
    /// Blocks above 8 bytes 16-aligned (C's `malloc`).
    C = 1,
}

impl Table {
    /// The class of a request of `size <= MAX_SMALL` bytes.
    #[inline(always)]
    pub fn class_of(self, size: usize) -> usize {
        match self {
            Table::Rust => class_of(size),
            Table::C => c_class_of(size),
        }
    }

    /// The entries of this table whose class is `class` (empty above
    /// [`TABLE_LIMIT`]): a class's entries are consecutive. From a table
    /// made at compile time: the heap asks whenever a class's current page
    /// changes (scanning the table each time cost `workset_medium` 4 % of
    /// its instructions).
    #[inline]
    pub fn entries_of(self, class: usize) -> core::ops::Range<usize> {
        let (first, end) = ENTRIES[self as usize][class];
        first as usize..end as usize
    }
}

/// `class_of`, for sizes up to `TABLE_LIMIT` in steps of 8.
static CLASSES: [u8; TABLE_LEN] = class_table(false);
/// The same for requests whose blocks must be 16-aligned above 8 bytes (C).
static C_CLASSES: [u8; TABLE_LEN] = class_table(true);

/// By table kind and class, the class's entries `first..end` (see
/// [`Table::entries_of`]).
static ENTRIES: [[(u8, u8); NUM_CLASSES]; 2] = [entry_ranges(&class_table(false)), entry_ranges(&class_table(true))];

const fn entry_ranges(table: &[u8; TABLE_LEN]) -> [(u8, u8); NUM_CLASSES] {
    let mut ranges = [(0, 0); NUM_CLASSES];
    let mut i = 0;
    while i < TABLE_LEN {
        let class = table[i] as usize;
        if ranges[class].1 == 0 {
            ranges[class].0 = i as u8;
        }
        ranges[class].1 = i as u8 + 1;
        i += 1;
    }
    ranges
}

const fn class_table(align16: bool) -> [u8; TABLE_LEN] {
    let mut table = [0; TABLE_LEN];
    let mut i = 0;
    while i < TABLE_LEN {
        let size = i * 8;
        let size = if align16 && size > 8 { size.next_multiple_of(16) } else { size };
        table[i] = computed_class(size) as u8;
        i += 1;
    }
    table
}

/// The class that serves a request of `size` bytes (`size <= MAX_SMALL`).
#[inline(always)]
pub fn class_of(size: usize) -> usize {
    lookup(&CLASSES, size)
}

/// The class for a request of `size` bytes (`size <= MAX_SMALL`) whose block
/// must be 16-aligned if it is larger than 8 bytes (glibc's promise to C
/// programs). Classes above `FINE_LIMIT` are multiples of 64.
#[inline(always)]
pub fn c_class_of(size: usize) -> usize {
    lookup(&C_CLASSES, size)
}

#[inline(always)]
fn lookup(table: &[u8; TABLE_LEN], size: usize) -> usize {
    debug_assert!(size <= MAX_SMALL);
    match table.get(table_index(size)) {
        Some(&class) => class as usize,
        None => computed_class(size),
    }
}

const fn computed_class(size: usize) -> usize {
    if size <= FINE_LIMIT {
        let size = if size < MIN_BLOCK { MIN_BLOCK } else { size };
        return (size + 7) >> 3;
    }
    let s = size - 1;
    let bit = (usize::BITS - 1 - s.leading_zeros()) as usize;
    let group = bit - FINE_LIMIT.trailing_zeros() as usize;
    let step = (s >> (bit - STEPS_PER_DOUBLING.trailing_zeros() as usize)) & (STEPS_PER_DOUBLING - 1);
    FIRST_COARSE + group * STEPS_PER_DOUBLING + step
}

/// The block size of class `class`.
#[inline]
pub const fn class_size(class: usize) -> usize {
    if class < FIRST_COARSE {
        return class * 8;
    }
    let group = (class - FIRST_COARSE) / STEPS_PER_DOUBLING;
    let step = (class - FIRST_COARSE) % STEPS_PER_DOUBLING;
    (FINE_LIMIT << group) + (step + 1) * ((FINE_LIMIT / STEPS_PER_DOUBLING) << group)
}

/// The classes in use, smallest first.
pub fn classes() -> impl Iterator<Item = usize> {
    class_of(MIN_BLOCK)..NUM_CLASSES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_maps_to_the_smallest_class_that_fits() {
        for size in 0..=MAX_SMALL {
            let c = class_of(size);
            assert!(c < NUM_CLASSES);
            assert!(class_size(c) >= size.max(MIN_BLOCK), "size {size}");
            if c > class_of(MIN_BLOCK) {
                assert!(class_size(c - 1) < size, "size {size} could use class {}", c - 1);
            }
        }
        assert_eq!(class_size(NUM_CLASSES - 1), MAX_SMALL);
    }

    #[test]
    fn c_classes_are_the_smallest_16_aligned_fit() {
        for size in 0..=MAX_SMALL {
            let c = c_class_of(size);
            let expected = if size > 8 { class_of(size.next_multiple_of(16)) } else { class_of(size) };
            assert_eq!(c, expected, "size {size}");
            if size > 8 {
                assert_eq!(class_size(c) % 16, 0, "size {size}");
            }
        }
    }

    #[test]
    fn classes_increase_and_keep_their_alignment_promises() {
        let sizes: std::vec::Vec<usize> = classes().map(class_size).collect();
        assert!(sizes.windows(2).all(|w| w[0] < w[1]));
        assert!(sizes.len() >= 7, "the contract asks for at least 7 slab caches");
        for &s in &sizes {
            assert_eq!(s % 8, 0);
            if s > FINE_LIMIT {
                assert_eq!(s % 64, 0);
            }
        }
    }

    #[test]
    fn each_class_has_consecutive_table_entries() {
        for table in [Table::Rust, Table::C] {
            for size in 0..=TABLE_LIMIT {
                let class = table.class_of(size);
                assert!(table.entries_of(class).contains(&table_index(size)), "{table:?} size {size}");
            }
            assert!(table.entries_of(class_of(TABLE_LIMIT + 1)).is_empty());
        }
    }

    #[test]
    fn coarse_rounding_loses_at_most_a_quarter() {
        for size in FINE_LIMIT + 1..=MAX_SMALL {
            let waste = class_size(class_of(size)) - size;
            assert!(waste * 4 < size, "size {size} wastes {waste}");
        }
    }
}
