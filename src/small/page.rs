//! Small pages: the slabs. A page hands out fresh blocks from a bump
//! pointer, so the memory of blocks nobody asked for is never written (and
//! never becomes resident). Freed blocks go on an intrusive free list.

use super::block::{Block, KEY, link_key};
use super::size_class::class_size;
use crate::diag::error::{self, BadBlock};
use crate::segment::SEGMENT_SIZE;
use core::cell::Cell;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering::Relaxed};

/// 64 KiB: the largest class (16 KiB) still gets four blocks, the smallest
/// (8 bytes) 8192; and a class a thread touches only once reserves no more than
/// this. mimalloc uses the same size for its small pages.
pub const PAGE_SHIFT: u32 = 16;
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;
pub const PAGES_PER_SEGMENT: usize = SEGMENT_SIZE / PAGE_SIZE;

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
    pub(super) free: Cell<*mut Block>,
    /// Next never-used block, and the end of the bump area.
    pub(super) bump: AtomicUsize,
    pub(super) end: Cell<usize>,
    /// Blocks handed out and not yet freed back to this list.
    pub used: Cell<u32>,
    /// Whether the page is off its class queue because it had no free block.
    pub full: Cell<bool>,
    /// Whether the page sits in its heap's ring of recently emptied pages.
    pub in_ring: Cell<bool>,
    pub class: Cell<u8>,
    /// Block size; 0 while the page belongs to no class.
    pub(super) block_size: AtomicU32,
    /// ceil(2^32 / block_size): turns the interior-pointer check into a multiply.
    pub(super) reciprocal: AtomicU32,
    /// First block: the page start, or past the header for page 0.
    pub(super) start: AtomicUsize,
    /// Neighbours in the heap's queue of the same class.
    pub next: Cell<*mut Page>,
    pub prev: Cell<*mut Page>,
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

    pub fn assign(&self, class: usize, start: usize, area_end: usize) {
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
