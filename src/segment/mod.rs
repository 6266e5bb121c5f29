//! Segments: the unit in which memory is mapped from the system.
//!
//! A segment is a mapping aligned to [`SEGMENT_SIZE`] that starts with a
//! header saying what it holds: small pages of one thread heap
//! ([`crate::small`]), large regions ([`crate::large`]), or one huge block.
//! Masking a pointer with `!(SEGMENT_SIZE - 1)` finds its header in O(1), and
//! [`crate::segment::map`] says whether that header is really ours.

use crate::os;
pub mod map;
pub mod tombstones;
use core::ptr::NonNull;

/// 4 MiB on x86_64: 64 small pages per mapping keeps `mmap` calls rare (one
/// per 4 MiB of small blocks) while a thread that allocates a few blocks
/// reserves only address space, not memory. 2 MiB on i686, where address space
/// is scarce: an almost empty segment strands at most 2 MiB of it, and a huge
/// block can still be aligned to 1 MiB (alignments up to half a segment work).
pub const SEGMENT_SHIFT: u32 = if usize::BITS == 64 { 22 } else { 21 };
pub const SEGMENT_SIZE: usize = 1 << SEGMENT_SHIFT;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Kind {
    Small,
    Large,
    Huge,
}

/// The first bytes of every segment.
#[repr(C)]
pub struct SegmentHeader {
    pub kind: Kind,
    /// Length of the mapping in bytes (a multiple of the OS page).
    pub size: usize,
}

/// Maps a new segment of `size` bytes (a multiple of [`os::OS_PAGE`]) holding
/// `kind`, registered in the segment map. The header is initialised; the rest
/// is zero and untouched.
pub fn create(kind: Kind, size: usize) -> Option<NonNull<SegmentHeader>> {
    let base = NonNull::new(map(size))?.cast::<SegmentHeader>();
    // SAFETY: the mapping is fresh, writable, aligned and large enough.
    unsafe { base.as_ptr().write(SegmentHeader { kind, size }) };
    if spans(kind, size) && !map::insert_span(base.as_ptr() as usize, size) {
        // SAFETY: the mapping was just made and nothing refers to it.
        unsafe { os::unmap(base.as_ptr().cast(), size) };
        return None;
    }
    register(base);
    Some(base)
}

/// Maps `size` bytes aligned to a segment, with room for it in the segment
/// map (null when the system refuses). Out of address space, the
/// tombstones' headers go first: on i686, one every few segments leaves no
/// room for a long mapping.
pub fn map(size: usize) -> *mut u8 {
    let mut p = os::map_aligned(size, SEGMENT_SIZE);
    if p.is_null() && tombstones::release_all() {
        p = os::map_aligned(size, SEGMENT_SIZE);
    }
    if !p.is_null() && !map::prepare(p as usize) {
        // SAFETY: the mapping was just made and nothing refers to it.
        unsafe { os::unmap(p, size) };
        return core::ptr::null_mut();
    }
    p
}

/// Whether blocks of the segment may start past its first slot, so that
/// [`find`] needs the span table: large segments. A huge block starts in the
/// first slot of its mapping.
fn spans(kind: Kind, size: usize) -> bool {
    kind == Kind::Large && size > SEGMENT_SIZE
}

/// Records a segment whose header is in place (also after a segment moved).
pub fn register(seg: NonNull<SegmentHeader>) {
    map::insert(seg.as_ptr() as usize);
}

/// Forgets a segment's address (before it is unmapped or moved).
pub fn forget(seg: NonNull<SegmentHeader>) {
    let base = seg.as_ptr() as usize;
    map::remove(base);
    // SAFETY: the header of a live segment is readable.
    if unsafe { spans((*seg.as_ptr()).kind, (*seg.as_ptr()).size) } {
        map::remove_span(base);
    }
}

/// Unregisters and unmaps a large segment or huge mapping, but for its
/// first page, kept as a tombstone (see [`tombstones`]).
///
/// # Safety
/// `seg` came from [`create`], and nothing refers to its memory any more.
pub unsafe fn destroy(seg: NonNull<SegmentHeader>) {
    // SAFETY: per the contract.
    unsafe { tombstones::retire(seg, os::OS_PAGE) };
}

/// The segment that holds `p`, if `p` lies in the first `SEGMENT_SIZE` bytes
/// of a segment of ours: the hot path of `free` (small blocks always do).
#[inline(always)]
pub fn find_in_first_slot(p: *const u8) -> Option<NonNull<SegmentHeader>> {
    let base = p as usize & !(SEGMENT_SIZE - 1);
    if map::contains(base) {
        // SAFETY: no segment starts at address 0 (it is never mapped).
        Some(unsafe { NonNull::new_unchecked(base as *mut SegmentHeader) })
    } else {
        None
    }
}

/// The segment that holds `p`, if any: [`find_in_first_slot`], then
/// [`find_past_first_slot`].
pub fn find(p: *const u8) -> Option<NonNull<SegmentHeader>> {
    find_in_first_slot(p).or_else(|| find_past_first_slot(p))
}

/// The large segment that holds `p` past its first slot, from the table of
/// multi-slot segments (for `free` after [`find_in_first_slot`] failed).
pub fn find_past_first_slot(p: *const u8) -> Option<NonNull<SegmentHeader>> {
    NonNull::new(map::span_of(p as usize)? as *mut SegmentHeader)
}
