//! Headers of segments whose memory went back to the system, kept mapped so
//! that a stale `free` never reads unmapped memory.
//!
//! `free` tests the segment map, then reads the segment's header. Between
//! the two, another thread may give the segment back: it clears the map bit
//! first, so later frees see a foreign pointer, but a free already past the
//! test still reads the header. So a returned small segment keeps its
//! header mapped (the pages of blocks are unmapped, the bitmaps purged): the
//! late reader finds no live block there and reports the free. A tombstone
//! is brought back to life by the next small segment the process needs,
//! which maps its block area again, if no other mapping took those
//! addresses, and zeroes the header; so tombstones never outnumber the
//! small segments the process had at its peak.
//!
//! Large segments and huge mappings keep their first page (the common
//! header, and a huge block's `user`, zero once freed): a late free reads the
//! kind there, takes the large allocator's lock and finds the segment gone
//! from the map (see `large::free`). They are not revived.
//!
//! A header is unmapped only when its block area went to another mapping,
//! when 1,024 newer tombstones push it out, or when the address space runs
//! out (see [`release_all`]): then the old window (a few instructions
//! between the map test and the header read) is back for that segment.

use super::{Kind, SegmentHeader, forget, register};
use crate::os;
use crate::sys::lock::SpinLock;
use core::ptr::NonNull;

/// Tombstones kept: 4 GiB of small segments on x86_64, all of the address
/// space's on i686 (2 MiB segments); 16 KiB of table.
const MAX_TOMBSTONES: usize = 1024;

/// Each tombstone's address and how many bytes of it stay mapped.
struct Table {
    at: [(usize, usize); MAX_TOMBSTONES],
    n: usize,
}

static TABLE: SpinLock<Table> = SpinLock::new(Table { at: [(0, 0); MAX_TOMBSTONES], n: 0 });

/// Gives the segment's memory back but its first `keep` bytes (its header,
/// whose contents stay), and keeps the header as a tombstone.
///
/// # Safety
/// `seg` came from [`super::create`] or [`revive`], holds no live block and
/// nothing refers to its memory past `keep` any more.
pub unsafe fn retire(seg: NonNull<SegmentHeader>, keep: usize) {
    forget(seg);
    let base = seg.as_ptr().cast::<u8>();
    // SAFETY: the header of a live segment is readable; per the contract the
    // tail is unused.
    unsafe { os::unmap(base.add(keep), (*seg.as_ptr()).size - keep) };
    let mut table = TABLE.lock();
    // Full: the oldest goes, the least likely to have a late reader.
    let oldest = (table.n == MAX_TOMBSTONES).then(|| {
        let oldest = table.at[0];
        table.at.copy_within(1.., 0);
        table.n -= 1;
        oldest
    });
    let n = table.n;
    table.at[n] = (base as usize, keep);
    table.n += 1;
    drop(table);
    if let Some((old, old_keep)) = oldest {
        // SAFETY: the tombstone is ours and no longer listed.
        unsafe { os::unmap(old as *mut u8, old_keep) };
    }
}

/// A segment of `kind` and `size` bytes at a tombstone's address: its block
/// area mapped again and its header zero but for the common fields, as a
/// fresh one from [`super::create`]; None if there is no tombstone whose
/// addresses are still free.
pub fn revive(kind: Kind, size: usize, keep: usize) -> Option<NonNull<SegmentHeader>> {
    loop {
        let base = take(keep)? as *mut u8;
        // SAFETY: `base + keep` is inside the range the segment had, which
        // `map_at` maps only if nothing else has meanwhile.
        if os::map_at(unsafe { base.add(keep) }, size - keep) {
            // SAFETY: the header is ours, mapped, and read at most by late
            // frees, to which a zero header holds no live block.
            unsafe {
                os::purge(base, keep);
                base.cast::<SegmentHeader>().write(SegmentHeader { kind, size });
            }
            let seg = NonNull::new(base.cast::<SegmentHeader>())?;
            register(seg);
            return Some(seg);
        }
        // Its block area is another mapping's now: this header can never be
        // a segment again.
        // SAFETY: the tombstone is ours and no longer listed.
        unsafe { os::unmap(base, keep) };
    }
}

/// The newest tombstone that kept `keep` bytes (those of other kinds stay).
fn take(keep: usize) -> Option<usize> {
    let mut table = TABLE.lock();
    let n = table.n;
    let i = table.at[..n].iter().rposition(|&(_, k)| k == keep)?;
    let (base, _) = table.at[i];
    table.at.copy_within(i + 1..n, i);
    table.n -= 1;
    Some(base)
}

fn pop() -> Option<(usize, usize)> {
    let mut table = TABLE.lock();
    table.n = table.n.checked_sub(1)?;
    Some(table.at[table.n])
}

/// Unmaps every tombstone's header, when a mapping failed (the 32-bit
/// address space full: a header every segment-length would leave no room
/// for longer mappings). True if there was any.
pub fn release_all() -> bool {
    let mut any = false;
    while let Some((base, keep)) = pop() {
        // SAFETY: the tombstone is ours and no longer listed.
        unsafe { os::unmap(base as *mut u8, keep) };
        any = true;
    }
    any
}

/// Holds the table's lock across `fork` (see [`crate::api::fork`]).
pub fn lock_for_fork() {
    TABLE.lock_forever();
}

/// # Safety
/// After [`lock_for_fork`], in the parent or the child.
pub unsafe fn unlock_after_fork() {
    // SAFETY: per the contract.
    unsafe { TABLE.force_unlock() };
}
