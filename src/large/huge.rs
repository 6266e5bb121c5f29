//! Huge blocks, each in a mapping of its own: allocation, resizing with
//! `mremap`, freeing, and the cache of freed mappings kept for the next huge
//! request.

use super::{BadBlock, LARGE, State, release_caches};
use crate::diag::counters as stats;
use crate::os::{self, OS_PAGE, align_up};
use crate::segment::{self, Kind, SEGMENT_SIZE, SegmentHeader};
use core::ptr::{NonNull, null_mut};

/// Freed huge mappings kept at most (within the resident budget, see
/// `budget`).
pub(super) const HUGE_CACHE: usize = 16;

/// A huge block's segment header: the block starts at `user`.
#[repr(C)]
pub(super) struct HugeHeader {
    pub(super) header: SegmentHeader,
    pub(super) user: usize,
}

/// A block with a mapping of its own whatever its size, for `realloc` to
/// grow with `mremap` (see [`MAPPED_GROWTH_MIN`]). Null when no memory is
/// left.
///
/// [`MAPPED_GROWTH_MIN`]: super::MAPPED_GROWTH_MIN
pub fn alloc_mapped(size: usize) -> *mut u8 {
    align_up(size, OS_PAGE).map_or(null_mut(), |bytes| alloc_huge(bytes, OS_PAGE).0)
}

/// A huge block: a cached mapping if one is large enough (its surplus
/// returned), else a new one. Says whether the block is known to be zero.
pub(super) fn alloc_huge(bytes: usize, align: usize) -> (*mut u8, bool) {
    // The block must start in the first segment-sized slot of its mapping,
    // where `segment::find` looks for the header.
    if align > SEGMENT_SIZE / 2 {
        return (null_mut(), false);
    }
    let offset = align.max(OS_PAGE);
    let Some(total) = bytes.checked_add(offset) else { return (null_mut(), false) };
    stats::HUGE_ALLOCATIONS.add(1);
    let cached = if offset == OS_PAGE { LARGE.lock().take_cached(total) } else { None };
    if let Some(h) = cached {
        // SAFETY: the cached mapping is ours alone now.
        let resized = unsafe { remap_huge(h, total) };
        if !resized.is_null() {
            // SAFETY: as above.
            unsafe { (*resized).user = resized as usize + offset };
            return ((resized as usize + offset) as *mut u8, false);
        }
        // SAFETY: growing failed; the mapping is still ours, and unused.
        unsafe { segment::destroy(NonNull::new_unchecked(h).cast()) };
    }
    let created = segment::create(Kind::Huge, total)
        .or_else(|| release_caches().then(|| segment::create(Kind::Huge, total)).flatten());
    let Some(seg) = created else {
        stats::HUGE_ALLOCATIONS.sub(1);
        return (null_mut(), false);
    };
    stats::HUGE_LIVE_BYTES.add(total as u64);
    let h = seg.as_ptr().cast::<HugeHeader>();
    let user = h as usize + offset;
    // SAFETY: the header was just mapped and is ours.
    unsafe { (*h).user = user };
    (user as *mut u8, true)
}

/// Resizes a huge block to `new_size` (above [`LARGE_MAX`]): a growing
/// block takes at least an eighth more, so that a buffer grown in small steps
/// costs one `mremap` per eighth, not one per step. Null when no address
/// space is left; the block is then unchanged.
///
/// # Safety
/// `seg` is the live huge segment of `p`, a live block of the caller.
///
/// [`LARGE_MAX`]: super::LARGE_MAX
pub unsafe fn resize_huge(seg: NonNull<SegmentHeader>, p: *mut u8, new_size: usize) -> *mut u8 {
    let h = seg.as_ptr().cast::<HugeHeader>();
    // SAFETY: the header of a live huge segment is ours to read and update.
    unsafe {
        let offset = p as usize - h as usize;
        let old = (*h).header.size;
        let Some(mut new) = align_up(new_size, OS_PAGE).and_then(|b| b.checked_add(offset)) else {
            return null_mut();
        };
        if new > old {
            new = new.max(align_up(old + old / 8, OS_PAGE).unwrap_or(new));
        }
        stats::HUGE_LIVE_BYTES.sub(old as u64);
        let moved = remap_huge(h, new);
        if moved.is_null() {
            stats::HUGE_LIVE_BYTES.add(old as u64);
            return null_mut();
        }
        (*moved).user = moved as usize + offset;
        (*moved).user as *mut u8
    }
}

/// Resizes the mapping of a huge block to `total` bytes with `mremap`: in
/// place when the neighbouring addresses allow, else by moving its pages (no
/// copy) to a new aligned mapping. Counts `total` as live huge bytes. Null if
/// no address space is left (the mapping is then unchanged).
///
/// # Safety
/// `h` is the header of a huge mapping the caller owns (live or cached).
unsafe fn remap_huge(h: *mut HugeHeader, total: usize) -> *mut HugeHeader {
    // SAFETY: per the contract.
    unsafe {
        let old = (*h).header.size;
        if total == old || os::remap_in_place(h.cast(), old, total) {
            stats::resized(old, total);
            stats::HUGE_LIVE_BYTES.add(total as u64);
            (*h).header.size = total;
            return h;
        }
        let target = segment::map(total);
        if target.is_null() {
            return null_mut();
        }
        // Forget the old address before the move releases it: another
        // thread may map a segment there at once, and a late `forget` would
        // clear that segment's bit.
        segment::forget(NonNull::new_unchecked(h).cast());
        if !os::remap_to(h.cast(), old, total, target) {
            segment::register(NonNull::new_unchecked(h).cast());
            os::unmap(target, total);
            return null_mut();
        }
        // The target mapping was counted when made; the old one is gone.
        stats::resized(old, 0);
        stats::HUGE_LIVE_BYTES.add(total as u64);
        let moved = target.cast::<HugeHeader>();
        (*moved).header.size = total;
        segment::register(NonNull::new_unchecked(moved).cast());
        moved
    }
}

/// Frees a huge block: into the cache of mappings for reuse, or (past the
/// resident budget) back to the system.
///
/// # Safety
/// `seg` is a live huge segment containing `p`.
pub unsafe fn free_huge(seg: NonNull<SegmentHeader>, p: *mut u8) -> Result<(), BadBlock> {
    let h = seg.as_ptr().cast::<HugeHeader>();
    let mut state = LARGE.lock();
    super::still_there(seg, p)?;
    // SAFETY: the header of a live huge segment is ours to read and update
    // (a cached one has `user == 0`).
    unsafe {
        match (*h).user {
            0 => return Err(BadBlock::DoubleFree),
            user if user != p as usize => return Err(BadBlock::Invalid),
            _ => {}
        }
        stats::HUGE_FREES.add(1);
        stats::HUGE_LIVE_BYTES.sub((*h).header.size as u64);
        (*h).user = 0;
    }
    state.cache_huge(h);
    Ok(())
}

impl State {
    /// Takes entry `i` out of the huge-mapping cache.
    fn take_cached_at(&mut self, i: usize) -> *mut HugeHeader {
        let h = self.huge_cache[i];
        self.huge_cache.copy_within(i + 1.., i);
        self.huge_cache[HUGE_CACHE - 1] = null_mut();
        // SAFETY: cached headers are live mappings of ours.
        self.huge_cached -= unsafe { (*h).header.size };
        h
    }

    /// Unmaps the oldest cached huge mapping (the cache is not empty).
    pub(super) fn unmap_oldest_cached(&mut self) {
        let oldest = self.take_cached_at(0);
        // SAFETY: cached mappings hold no live block and only the cache
        // referred to this one.
        unsafe { segment::destroy(NonNull::new_unchecked(oldest).cast()) };
    }

    /// Takes the cached huge mapping that best serves `total` bytes: the
    /// smallest that is large enough, else the largest (to be grown: its
    /// resident pages still spare page faults).
    fn take_cached(&mut self, total: usize) -> Option<*mut HugeHeader> {
        // SAFETY: cached headers are live mappings of ours.
        let size = |h: *mut HugeHeader| unsafe { (*h).header.size };
        let cached = self.huge_cache.iter().enumerate().take_while(|(_, h)| !h.is_null());
        let fitting = cached.clone().filter(|&(_, &h)| size(h) >= total).min_by_key(|&(_, &h)| size(h));
        let (i, _) = fitting.or_else(|| cached.max_by_key(|&(_, &h)| size(h)))?;
        Some(self.take_cached_at(i))
    }

    /// Keeps a freed huge mapping for reuse (the newest; the oldest goes if
    /// the cache is full), then trims to the budget.
    fn cache_huge(&mut self, h: *mut HugeHeader) {
        if !self.huge_cache[HUGE_CACHE - 1].is_null() {
            self.unmap_oldest_cached();
        }
        let used = self.huge_cache.iter().take_while(|h| !h.is_null()).count();
        self.huge_cache[used] = h;
        // SAFETY: `h` is a live mapping of ours.
        let size = unsafe { (*h).header.size };
        self.huge_cached += size;
        self.trim(size);
    }
}
