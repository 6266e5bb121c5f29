//! Frees across threads. A thread that frees a block of another thread's heap
//! does not touch that heap's pages: it links the block into a batch for the
//! owner with plain stores ([`Outbox`], its own), and publishes a whole batch
//! with one compare-and-swap on the owner's [`Inbox`]. The owner takes its
//! inbox whole (one swap) on its slow path and validates every block before
//! it frees it (see `Owner::drain`).
//!
//! The design follows snmalloc's message queues and remote cache: batching
//! turns one contended atomic per `free` into one per batch, and the owner's
//! hot lines (page descriptors, queue heads) never leave its core.

use super::heap::Heap;
use crate::small::block::{Block, Link};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

/// The part of a heap that other threads write: the posted chains, and the
/// ownership flag that every poster reads. Each on a cache line of its own,
/// so that posters writing `head` do not take the flag's line from readers.
#[repr(C)]
pub struct Inbox {
    /// Chains of blocks posted by other threads, linked through their
    /// [`Link::Posted`] word (a Treiber stack of blocks; a chain is pushed at
    /// once).
    head: Line<AtomicPtr<Block>>,
    /// Whether a thread owns the heap (or claims it while it is abandoned).
    taken: Line<AtomicBool>,
}

/// A value alone on its cache line (64 bytes on x86).
#[repr(C, align(64))]
struct Line<T>(T);

impl<T> core::ops::Deref for Line<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl Inbox {
    pub fn try_take(&self) -> bool {
        self.taken.compare_exchange(false, true, Ordering::SeqCst, Ordering::Relaxed).is_ok()
    }

    /// Gives ownership up.
    pub fn release(&self) {
        self.taken.store(false, Ordering::SeqCst);
    }

    pub fn is_taken(&self) -> bool {
        self.taken.load(Ordering::SeqCst)
    }

    /// Publishes the chain `first ..= last` (linked through their links;
    /// `last`'s link is rewritten).
    ///
    /// # Safety
    /// The chain's blocks are validated blocks of this heap that the caller
    /// freed and that nobody else links.
    pub unsafe fn post(&self, first: *mut Block, last: *mut Block) {
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: the blocks are ours until the chain is published.
            unsafe { Block::link(last, Link::Posted, head) };
            match self.head.compare_exchange_weak(head, first, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.head.load(Ordering::SeqCst).is_null()
    }

    /// Takes every posted block (for the owner).
    pub fn take_all(&self) -> *mut Block {
        if self.head.load(Ordering::Relaxed).is_null() {
            return null_mut();
        }
        self.head.swap(null_mut(), Ordering::Acquire)
    }
}

/// Destinations a thread batches for at once. Eight covers a thread that
/// frees into several others (a server's workers) without a search: a
/// destination hashes to one slot, and a different one there flushes it.
const SLOTS: usize = 8;

/// Bytes a slot collects before it is published: 8 KiB is about 30 blocks
/// of a few hundred bytes per atomic operation, and a thread holds at most
/// `SLOTS` times this of other threads' memory (64 KiB) between flushes.
const SLOT_BYTES: usize = 8 * 1024;

/// A chain of blocks for one destination heap.
#[derive(Clone, Copy)]
struct Batch {
    dest: *const Heap,
    first: *mut Block,
    last: *mut Block,
    bytes: usize,
}

/// A thread's outgoing batches (owner only).
pub struct Outbox {
    slots: [Batch; SLOTS],
}

impl Outbox {
    /// Adds `block` (`size` bytes) for `dest`, publishing the slot's batch
    /// when it is full or held blocks for another heap.
    ///
    /// # Safety
    /// `block` passed `Page::claim_foreign` on a page of `dest`, and the
    /// caller gave it up.
    #[inline]
    pub unsafe fn add(&mut self, dest: *const Heap, block: *mut Block, size: usize) {
        let slot = &mut self.slots[(dest as usize >> 6) % SLOTS];
        // SAFETY: heaps are never freed.
        if !unsafe { (*dest).is_owned() } {
            // Its thread exited: nobody would take the block back until the
            // batch is published, and the block keeps its page (and maybe a
            // whole segment) from going back to the system.
            // SAFETY: per the contract; a chain of one block.
            return unsafe { (*dest).post_chain(block, block) };
        }
        if slot.dest != dest {
            slot.publish();
            slot.dest = dest;
        }
        // SAFETY: per the contract the block is ours to link.
        unsafe { Block::link(block, Link::Posted, slot.first) };
        if slot.first.is_null() {
            slot.last = block;
        }
        slot.first = block;
        slot.bytes += size;
        if slot.bytes >= SLOT_BYTES {
            slot.publish();
        }
    }

    /// Publishes every batch.
    pub fn flush(&mut self) {
        self.slots.iter_mut().for_each(Batch::publish);
    }
}

impl Batch {
    fn publish(&mut self) {
        if self.first.is_null() {
            return;
        }
        // SAFETY: heaps are never freed; the chain holds validated blocks
        // of `dest` that only this batch links.
        unsafe { (*self.dest).post_chain(self.first, self.last) };
        self.first = null_mut();
        self.last = null_mut();
        self.bytes = 0;
    }
}
