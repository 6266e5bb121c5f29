//! Small pages: the slabs. A small segment is cut into [`PAGE_SIZE`] pages,
//! each serving one size class; its header holds every page's descriptor, so
//! the metadata never sits in the blocks themselves.
//!
//! ```text
//!  small segment (SEGMENT_SIZE, aligned)
//!  +--------+--------------+--------------+-----+--------------+
//!  | header | page 0 blocks| page 1 blocks| ... | page N blocks|
//!  +--------+--------------+--------------+-----+--------------+
//!   descriptors for pages 0..N live in the header
//! ```
//!
//! A page hands out fresh blocks from a bump pointer, so the memory of blocks
//! nobody asked for is never written (and never becomes resident). Freed blocks
//! go on an intrusive free list; a free block carries a marker derived from its
//! address and a per-process secret, which makes a second free of the same
//! block recognisable in O(1).

use crate::heap::Heap;
use crate::os::{self, OS_PAGE};
use crate::segment::{self, Kind, SEGMENT_SIZE, SegmentHeader};
use crate::size_class::{MAX_SMALL, class_size};
use crate::{error, options};
use core::cell::Cell;
use core::ptr::{NonNull, null_mut};
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering::Relaxed};

/// 64 KiB: the largest class (16 KiB) still gets four blocks, the smallest
/// (8 bytes) 8192; and a class a thread touches only once reserves no more than
/// this. mimalloc uses the same size for its small pages.
pub const PAGE_SHIFT: u32 = 16;
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;
pub const PAGES_PER_SEGMENT: usize = SEGMENT_SIZE / PAGE_SIZE;

/// The secret mixed into free-block markers, chosen at initialisation.
static KEY: AtomicUsize = AtomicUsize::new(0);

/// Sets the marker secret. The low bit is forced on, so that a marker (an
/// aligned address xor the key) is never 0, the value a live block's marker
/// word is reset to.
pub fn set_key(key: usize) {
    KEY.store(key | 1, Relaxed);
}

/// The first two words of a free block: the free-list link, encoded with
/// the secret (a stray write of a plausible pointer does not redirect the
/// list), and the marker.
#[repr(C)]
pub struct Block {
    next: usize,
    marker: usize,
}

/// The link is encoded with the secret rotated by half a word, so that link
/// and marker words differ even when `next` is the block itself.
#[inline(always)]
fn link_key(key: usize) -> usize {
    key.rotate_left(usize::BITS / 2)
}

impl Block {
    #[inline(always)]
    fn expected_marker(this: *const Block) -> usize {
        this as usize ^ KEY.load(Relaxed)
    }

    /// The next block on the list.
    ///
    /// # Safety
    /// `this` is a block on a free list.
    #[inline(always)]
    pub unsafe fn next(this: *const Block) -> *mut Block {
        // SAFETY: per the contract the block's words are readable.
        (unsafe { (*this).next } ^ link_key(KEY.load(Relaxed))) as *mut Block
    }

    /// Whether the block carries the free marker: it is on some free list.
    ///
    /// # Safety
    /// `this` must be a block of a live page (readable, `MIN_BLOCK` bytes).
    #[inline(always)]
    pub unsafe fn is_free(this: *const Block) -> bool {
        // SAFETY: per the contract, the block's words are readable.
        unsafe { (*this).marker == Self::expected_marker(this) }
    }

    /// Links the block in front of `next` and marks it free.
    ///
    /// # Safety
    /// The caller owns the block's memory (it was just freed).
    #[inline(always)]
    pub unsafe fn set_free(this: *mut Block, next: *mut Block) {
        let key = KEY.load(Relaxed);
        // SAFETY: per the contract.
        unsafe { this.write(Block { next: next as usize ^ link_key(key), marker: this as usize ^ key }) };
    }
}

/// Descriptor of one small page. Fields read by other threads' `free`
/// validation are atomics (Relaxed: plain loads and stores on x86); the rest
/// are `Cell`s that only the thread owning the heap touches. No `&mut` to a
/// page is ever made: other threads may hold `&Page` for validation at any
/// time.
///
/// One cache line each (64 bytes, aligned): `free` touches one line of
/// descriptor, and finding the descriptor of a page is a shift.
#[repr(C, align(64))]
pub struct Page {
    /// Local free list.
    free: Cell<*mut Block>,
    /// Next never-used block, and the end of the bump area.
    bump: AtomicUsize,
    end: Cell<usize>,
    /// Blocks handed out and not yet freed back to this list.
    pub used: Cell<u32>,
    /// Whether the page is off its class queue because it had no free block.
    pub full: Cell<bool>,
    /// Whether the page sits in its heap's ring of recently emptied pages.
    pub in_ring: Cell<bool>,
    pub class: Cell<u8>,
    /// Block size; 0 while the page belongs to no class.
    block_size: AtomicU32,
    /// ceil(2^32 / block_size): turns the interior-pointer check into a multiply.
    reciprocal: AtomicU32,
    /// First block: the page start, or past the header for page 0.
    start: AtomicUsize,
    /// Neighbours in the heap's queue of the same class.
    pub next: Cell<*mut Page>,
    pub prev: Cell<*mut Page>,
}

/// The header of a small segment.
#[repr(C)]
pub struct SmallSegment {
    header: SegmentHeader,
    /// The heap whose pages these are; fixed for the segment's life (a heap
    /// outlives its thread: another thread adopts it).
    pub heap: *const Heap,
    /// Bit i set: page i is free.
    free_pages: Cell<u64>,
    /// Neighbours in the heap's list of segments that have free pages.
    pub next: Cell<*mut SmallSegment>,
    pub prev: Cell<*mut SmallSegment>,
    pages: [Page; PAGES_PER_SEGMENT],
}

/// Bytes before the first block of page 0: the header, rounded to the OS page
/// so that purging page 0 never touches it.
const HEADER_SIZE: usize = (size_of::<SmallSegment>() + OS_PAGE - 1) & !(OS_PAGE - 1);
const _: () = assert!(HEADER_SIZE + OS_PAGE + MAX_SMALL <= PAGE_SIZE, "page 0 must hold a block of every class");
const _: () = assert!(size_of::<Page>() == 64);
const ALL_PAGES: u64 = if PAGES_PER_SEGMENT == 64 { u64::MAX } else { (1 << PAGES_PER_SEGMENT) - 1 };

/// Why a pointer into a small segment is not a live block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadBlock {
    /// The block is on a free list already.
    DoubleFree,
    /// The pointer is not the start of a block that was ever handed out.
    Invalid,
}

impl Page {
    /// Takes a free block, or null when the page has none. The hot path of
    /// every small allocation.
    ///
    /// A free block whose marker is gone, or whose link leaves the page, was
    /// written after it was freed: the process aborts with a report rather
    /// than hand out memory the free list no longer describes.
    #[inline(always)]
    pub fn pop(&self) -> *mut u8 {
        let block = self.free.get();
        if !block.is_null() {
            let key = KEY.load(Relaxed);
            // SAFETY: blocks on the free list are ours to read and write.
            unsafe {
                let next = (*block).next ^ link_key(key);
                let intact = (*block).marker == block as usize ^ key;
                if !intact || (next != 0 && (next ^ block as usize) >= PAGE_SIZE) {
                    error::corrupted(block.cast());
                }
                self.free.set(next as *mut Block);
                (*block).marker = 0;
            }
            self.used.set(self.used.get() + 1);
            return block.cast();
        }
        let fresh = self.bump.load(Relaxed);
        if fresh < self.end.get() {
            self.bump.store(fresh + self.block_size.load(Relaxed) as usize, Relaxed);
            self.used.set(self.used.get() + 1);
            return fresh as *mut u8;
        }
        null_mut()
    }

    /// Puts a block back on the local free list. Returns true when the page
    /// became empty or was full: the caller's slow path handles those.
    ///
    /// # Safety
    /// `block` is a live block of this page, validated by [`Self::check`], and
    /// the caller owns the page's heap.
    #[inline(always)]
    pub unsafe fn push(&self, block: *mut Block) -> bool {
        debug_assert!(block as usize ^ self.start.load(Relaxed) < PAGE_SIZE);
        // SAFETY: per the contract the block is ours now.
        unsafe { Block::set_free(block, self.free.get()) };
        self.free.set(block);
        let used = self.used.get() - 1;
        self.used.set(used);
        used == 0 || self.full.get()
    }

    /// Whether `p` is a block this page handed out and that is not free.
    /// Safe to call from any thread while the page is in use.
    #[inline(always)]
    pub fn check(&self, p: *mut u8) -> Result<*mut Block, BadBlock> {
        let offset = (p as usize).wrapping_sub(self.start.load(Relaxed));
        if offset >= PAGE_SIZE || p as usize >= self.bump.load(Relaxed) {
            return Err(BadBlock::Invalid);
        }
        // Offsets are below 2^16 and sizes below 2^15, so the reciprocal
        // multiply gives the exact quotient (see `docs/design.md`).
        let index = ((offset as u64 * self.reciprocal.load(Relaxed) as u64) >> 32) as usize;
        if index * self.block_size.load(Relaxed) as usize != offset {
            return Err(BadBlock::Invalid);
        }
        let block = p.cast::<Block>();
        // SAFETY: `block` is a block below the bump pointer of a page in use.
        if unsafe { Block::is_free(block) } {
            return Err(BadBlock::DoubleFree);
        }
        Ok(block)
    }

    /// The block size of this page's class (0 for a free page).
    pub fn block_size(&self) -> usize {
        self.block_size.load(Relaxed) as usize
    }

    fn assign(&self, class: usize, start: usize, area_end: usize) {
        let size = class_size(class);
        self.free.set(null_mut());
        self.used.set(0);
        self.full.set(false);
        self.in_ring.set(false);
        self.class.set(class as u8);
        self.start.store(start, Relaxed);
        self.bump.store(start, Relaxed);
        self.end.set(start + (area_end - start) / size * size);
        self.reciprocal.store((1u64 << 32).div_ceil(size as u64) as u32, Relaxed);
        self.next.set(null_mut());
        self.prev.set(null_mut());
        self.block_size.store(size as u32, Relaxed);
    }
}

impl Page {
    /// Secure mode: puts every block of a fresh page on the free list in a
    /// random order (a random start and a random stride coprime with the
    /// block count visit each block once), so the address of the next block
    /// cannot be predicted from the last. Costs a write to every block.
    fn shuffle(&self, seed: u64) {
        let size = self.block_size();
        let start = self.start.load(Relaxed);
        let n = (self.end.get() - start) / size;
        let mut rng = seed;
        let first = (splitmix64(&mut rng) % n as u64) as usize;
        let mut stride = if n > 1 { 1 + (splitmix64(&mut rng) % (n as u64 - 1)) as usize } else { 1 };
        while gcd(stride, n) != 1 {
            stride = stride % (n - 1) + 1;
        }
        for i in (0..n).rev() {
            let block = (start + (first + i * stride) % n * size) as *mut Block;
            // SAFETY: the block lies in this fresh page, which no one uses yet.
            unsafe { Block::set_free(block, self.free.get()) };
            self.free.set(block);
        }
        self.bump.store(self.end.get(), Relaxed);
    }
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A well-mixed 64-bit step (Steele et al.'s SplitMix64).
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Pages shuffled so far: varies the seed between pages at one address.
static SHUFFLES: AtomicUsize = AtomicUsize::new(0);

impl SmallSegment {
    /// Maps a segment whose pages will belong to `heap`.
    pub fn create(heap: *const Heap) -> Option<NonNull<SmallSegment>> {
        let seg = segment::create(Kind::Small, SEGMENT_SIZE)?.cast::<SmallSegment>();
        // SAFETY: the header was just mapped (zero) and only we know it; zero
        // is a valid `Page` (a free page with null links). The guard page
        // lies between the header and page 0's first block.
        unsafe {
            let s = &mut *seg.as_ptr();
            s.heap = heap;
            s.free_pages.set(ALL_PAGES);
            if options::secure() {
                os::protect(seg.as_ptr().cast::<u8>().add(HEADER_SIZE), OS_PAGE);
            }
        }
        Some(seg)
    }

    /// The small segment and page descriptor that `p` points into.
    ///
    /// # Safety
    /// `p` must lie in a live small segment (checked with [`segment::find`]),
    /// or be one of its page descriptors.
    #[inline(always)]
    pub unsafe fn page_of(p: *const u8) -> (*mut SmallSegment, *mut Page) {
        let s = (p as usize & !(SEGMENT_SIZE - 1)) as *mut SmallSegment;
        let index = (p as usize - s as usize) >> PAGE_SHIFT;
        // SAFETY: index < PAGES_PER_SEGMENT because p lies in the segment.
        (s, unsafe { (&raw mut (*s).pages).cast::<Page>().add(index) })
    }

    pub fn has_free_page(&self) -> bool {
        self.free_pages.get() != 0
    }

    pub fn is_unused(&self) -> bool {
        self.free_pages.get() == ALL_PAGES
    }

    /// The pages assigned to a class (empty or not).
    pub fn assigned_pages(&self) -> impl Iterator<Item = &Page> + '_ {
        let assigned = !self.free_pages.get() & ALL_PAGES;
        self.pages.iter().enumerate().filter(move |(i, _)| assigned & (1 << i) != 0).map(|(_, p)| p)
    }

    /// Whether no page of the segment holds a block (scans the descriptors:
    /// called only when a page becomes empty).
    pub fn is_empty(&self) -> bool {
        self.assigned_pages().all(|p| p.used.get() == 0)
    }

    /// Takes a free page (the lowest, to keep the used part of the segment
    /// compact) and assigns it to `class`.
    pub fn take_page(&self, class: usize) -> &Page {
        debug_assert!(self.has_free_page());
        let index = self.free_pages.get().trailing_zeros() as usize;
        self.free_pages.set(self.free_pages.get() & !(1 << index));
        let (start, end) = self.page_area(index);
        let page = &self.pages[index];
        page.assign(class, start, end);
        if options::secure() {
            let seed = (start ^ KEY.load(Relaxed)) as u64 ^ (SHUFFLES.fetch_add(1, Relaxed) as u64) << 32;
            page.shuffle(seed);
        }
        page
    }

    /// Returns an empty page to the segment and gives its memory back to the
    /// system; the addresses stay, and read zero when reused.
    ///
    /// # Safety
    /// `page` is a page of this segment with no live block and in no list.
    pub unsafe fn release_page(&self, page: &Page) {
        let index = (page as *const Page as usize - self.pages.as_ptr() as usize) / size_of::<Page>();
        // A zero bump pointer makes every pointer into the page fail `check`.
        page.block_size.store(0, Relaxed);
        page.bump.store(0, Relaxed);
        let (start, end) = self.page_area(index);
        // SAFETY: the page's blocks are all free, and `start` is OS-page
        // aligned (the header size is rounded), so no header byte is purged.
        unsafe { os::purge(start as *mut u8, end - start) };
        self.free_pages.set(self.free_pages.get() | 1 << index);
    }

    /// The block area of page `index`.
    fn page_area(&self, index: usize) -> (usize, usize) {
        let base = self as *const Self as usize + index * PAGE_SIZE;
        let guard = if options::secure() { OS_PAGE } else { 0 };
        let start = if index == 0 { base + HEADER_SIZE + guard } else { base };
        (start, base + PAGE_SIZE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size_class::{class_of, classes};

    #[test]
    fn header_fits_and_reciprocal_is_exact() {
        const { assert!(HEADER_SIZE <= PAGE_SIZE / 4) };
        for class in classes() {
            let size = class_size(class);
            let r = (1u64 << 32).div_ceil(size as u64);
            for offset in 0..PAGE_SIZE as u64 {
                assert_eq!(((offset * r) >> 32) as usize, offset as usize / size);
            }
        }
    }

    #[test]
    fn pages_hand_out_distinct_blocks_and_detect_bad_frees() {
        let seg = SmallSegment::create(null_mut()).unwrap();
        // SAFETY: the segment is ours for the test, until destroyed below.
        let s = unsafe { seg.as_ref() };
        let page = s.take_page(class_of(48));
        let a = page.pop();
        let b = page.pop();
        assert_eq!(b as usize - a as usize, 48);
        assert_eq!(page.check(a), Ok(a.cast()));
        // SAFETY: `a + 8` is inside a live block, readable.
        assert_eq!(page.check(unsafe { a.add(8) }), Err(BadBlock::Invalid));
        assert_eq!(page.check((b as usize + 48) as *mut u8), Err(BadBlock::Invalid), "never handed out");
        // SAFETY: `a` is a live block of this page.
        assert!(!unsafe { page.push(a.cast()) });
        assert_eq!(page.check(a), Err(BadBlock::DoubleFree));
        assert_eq!(page.pop(), a, "freed blocks are reused first");
        assert_eq!(page.check(a), Ok(a.cast()));
        // SAFETY: both blocks are live; the page then holds none.
        unsafe {
            page.push(a.cast());
            assert!(page.push(b.cast()), "the page became empty");
            s.release_page(page);
        }
        assert!(s.is_unused());
        // SAFETY: nothing uses the segment any more.
        unsafe { segment::destroy(seg.cast()) };
    }
}
