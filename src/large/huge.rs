//! Huge blocks, each in a mapping of its own: allocation, resizing with
//! `mremap`, freeing, and the cache of freed mappings kept for the next huge
//! request.
//!
//! A huge request takes the smallest cached mapping that holds it, as it
//! is: what a program that replaces big buffers needs is memory it has
//! already faulted in, at no system call. A surplus of a segment or more
//! (a 9 MiB buffer in a freed 25 MiB one) is split off at the first segment
//! boundary past the block and cached as a mapping of its own: a header
//! written there, no system call either (the kernel's mapping stays whole;
//! `munmap` and `mremap` work on any part of it). A freed mapping merges
//! with the cached ones next to it, so that what was split comes together
//! again. When no cached mapping is large enough, the largest is extended
//! by a mapping right before or after it (one `mmap` at a fixed address),
//! as a heap grows in place: its resident pages serve the request instead
//! of idling beside a new mapping. Only then is a new mapping made, a whole
//! number of segments long, so that its slack serves a later, slightly
//! longer request. Until issue 24 a cached mapping was resized to the
//! request with `mremap`, one call or more per replaced buffer and page
//! faults for every page it grew by (1,727 `mremap` over a run of the
//! issue's program, where tcmalloc made none; `big_buffers` now makes
//! about one `mmap` or `munmap` per 13 replaced buffers on x86_64, most of
//! them when it starts and ends: `docs/performance.md`, step 39).
//!
//! A merged mapping remembers where the headers of its parts stood (its
//! *seams*): when it goes back to the system it is cut there again and each
//! part keeps its first page as a tombstone, as any returned mapping does
//! (`segment::tombstones`), so that a late free of a block that started
//! there still reads a mapped header. Parts from two kernel mappings can
//! merge (the kernel places mappings side by side, and an extension is one
//! more); `mremap` refuses to move or grow a range that spans two, so
//! `realloc` of such a block copies.

use super::{BadBlock, State, enter, release_caches};
use crate::diag::counters as stats;
use crate::os::{self, OS_PAGE, align_up};
use crate::segment::{self, Kind, SEGMENT_SIZE, SegmentHeader};
use core::ptr::{NonNull, null_mut};

/// Freed huge mappings kept at most (within the resident budget and the
/// decay, see `budget`).
pub(super) const HUGE_CACHE: usize = 16;

/// Parts a merged mapping may have, less one: past that, neighbours stay
/// apart (a few suffice to undo the splits of a few buffer sizes).
const SEAMS: usize = 7;

/// A huge block's segment header: the block starts at `user` (0 while the
/// mapping is cached).
#[repr(C)]
pub(super) struct HugeHeader {
    pub(super) header: SegmentHeader,
    pub(super) user: usize,
    /// Cached, and seen so by the decay's last tick (see `budget`).
    aged: bool,
    /// The header has been a block's: a late free of that block may read
    /// it, so it must stay mapped (as a seam, once merged into another).
    lent: bool,
    /// Made of parts that may be different kernel mappings (merged or
    /// extended), which `mremap` cannot move or grow as one.
    joined: bool,
    /// Where the headers of merged parts that were blocks stood, ascending
    /// (see the module note); `seams[..nseams]`.
    nseams: usize,
    seams: [usize; SEAMS],
}

impl HugeHeader {
    /// # Safety
    /// `h` is the header of a huge mapping of ours.
    pub(super) unsafe fn aged(h: *const HugeHeader) -> bool {
        // SAFETY: per the contract.
        unsafe { (*h).aged }
    }

    /// # Safety
    /// As for [`HugeHeader::aged`].
    pub(super) unsafe fn set_aged(h: *mut HugeHeader) {
        // SAFETY: per the contract.
        unsafe { (*h).aged = true };
    }

    /// Writes the header of a cached part at `at`, `size` bytes long, with
    /// the seams that lie in it; `lent` if a block's header stood there,
    /// `joined` if its parts may be different kernel mappings.
    ///
    /// # Safety
    /// `[at, at + size)` is unused memory of a mapping of ours; `at` is
    /// segment-aligned.
    unsafe fn write_part(
        at: usize,
        size: usize,
        aged: bool,
        lent: bool,
        joined: bool,
        seams: &[usize],
    ) -> *mut HugeHeader {
        let h = at as *mut HugeHeader;
        let mut own = [0; SEAMS];
        own[..seams.len()].copy_from_slice(seams);
        // SAFETY: per the contract.
        unsafe {
            h.write(HugeHeader {
                header: SegmentHeader { kind: Kind::Huge, size },
                user: 0,
                aged,
                lent,
                joined,
                nseams: seams.len(),
                seams: own,
            })
        };
        h
    }

    /// Unregisters and unmaps a huge mapping, cut at its seams so that each
    /// part keeps its first page as a tombstone.
    ///
    /// # Safety
    /// `h` is a mapping of ours that holds no block any more (cached, or
    /// copied away), and that only the caller refers to.
    unsafe fn destroy(h: *mut HugeHeader) {
        // SAFETY: per the contract; the parts lie in `h`'s mapping, and no
        // one else refers to them.
        unsafe {
            let mut end = h as usize + (*h).header.size;
            let seams = (*h).seams;
            for &seam in seams[..(*h).nseams].iter().rev() {
                let part = Self::write_part(seam, end - seam, false, true, false, &[]);
                segment::destroy(NonNull::new_unchecked(part).cast());
                end = seam;
            }
            (*h).header.size = end - h as usize;
            segment::destroy(NonNull::new_unchecked(h).cast());
        }
    }
}

/// A block with a mapping of its own whatever its size, for `realloc` to
/// grow with `mremap` (see [`MAPPED_GROWTH_MIN`]). Null when no memory is
/// left.
///
/// [`MAPPED_GROWTH_MIN`]: super::MAPPED_GROWTH_MIN
pub fn alloc_mapped(size: usize) -> *mut u8 {
    align_up(size, OS_PAGE).map_or(null_mut(), |bytes| alloc_huge(bytes, OS_PAGE).0)
}

/// A huge block: a cached mapping if one is large enough, else the largest
/// extended, else a new one. Says whether the block is known to be zero.
pub(super) fn alloc_huge(bytes: usize, align: usize) -> (*mut u8, bool) {
    // The block must start in the first segment-sized slot of its mapping,
    // where `segment::find` looks for the header; a mapping starts on a
    // segment boundary, so an offset of `align` aligns the block.
    if align > SEGMENT_SIZE / 2 {
        return (null_mut(), false);
    }
    let offset = align.max(OS_PAGE);
    let Some(total) = bytes.checked_add(offset) else { return (null_mut(), false) };
    stats::HUGE_ALLOCATIONS.add(1);
    let taken = enter().take_for(total);
    // SAFETY: a mapping taken out of the cache is ours alone.
    let grown = taken.largest.and_then(|p| unsafe { HugeHeader::extend(p, total) });
    if let (Some(p), None) = (taken.largest, grown) {
        enter().push_cached(p);
    }
    let (h, fresh) = match taken.fitting.or(grown) {
        Some(h) => (h, false),
        None => {
            let size = align_up(total, SEGMENT_SIZE).unwrap_or(total);
            let created = segment::create(Kind::Huge, size)
                .or_else(|| release_caches().then(|| segment::create(Kind::Huge, size)).flatten())
                .or_else(|| segment::create(Kind::Huge, total));
            let Some(seg) = created else {
                stats::HUGE_ALLOCATIONS.sub(1);
                return (null_mut(), false);
            };
            (seg.as_ptr().cast::<HugeHeader>(), true)
        }
    };
    // SAFETY: the mapping is ours alone (fresh, or out of the cache).
    unsafe {
        stats::HUGE_LIVE_BYTES.add((*h).header.size as u64);
        (*h).user = h as usize + offset;
        (*h).lent = true;
        ((*h).user as *mut u8, fresh)
    }
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
/// copy) to a new aligned mapping, else (its parts are two kernel mappings,
/// which `mremap` refuses) by copying them there. Counts `total` as live
/// huge bytes. Null if no address space is left (the mapping is then
/// unchanged).
///
/// # Safety
/// `h` is the header of a live huge block's mapping, owned by the caller.
unsafe fn remap_huge(h: *mut HugeHeader, total: usize) -> *mut HugeHeader {
    // SAFETY: per the contract.
    unsafe {
        let old = (*h).header.size;
        if total == old || os::remap_in_place(h.cast(), old, total) {
            stats::resized(old, total);
            stats::HUGE_LIVE_BYTES.add(total as u64);
            (*h).header.size = total;
            // A shrink unmapped the seams past the new end.
            let end = h as usize + total;
            let seams = (*h).seams;
            (*h).nseams = seams[..(*h).nseams].iter().take_while(|&&seam| seam < end).count();
            return h;
        }
        let target = segment::map(total);
        if target.is_null() {
            return null_mut();
        }
        let moved = target.cast::<HugeHeader>();
        if !(*h).joined {
            // Forget the old address before the move releases it: another
            // thread may map a segment there at once, and a late `forget`
            // would clear that segment's bit.
            segment::forget(NonNull::new_unchecked(h).cast());
            if !os::remap_to(h.cast(), old, total, target) {
                segment::register(NonNull::new_unchecked(h).cast());
                os::unmap(target, total);
                return null_mut();
            }
            // The target mapping was counted when made; the old one is gone.
            stats::resized(old, 0);
        } else {
            // Merged parts may be two kernel mappings, whose move `mremap`
            // refuses (after unmapping the target): copy, and give the old
            // mapping back with its tombstones.
            target.copy_from_nonoverlapping(h.cast(), old.min(total));
            (*moved).nseams = 0;
            (*moved).joined = false;
            HugeHeader::destroy(h);
        }
        stats::HUGE_LIVE_BYTES.add(total as u64);
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
    let mut state = enter();
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

    /// Gives cache entry `i` back to the system.
    pub(super) fn unmap_cached_at(&mut self, i: usize) {
        let h = self.take_cached_at(i);
        // SAFETY: cached mappings hold no block, and only the cache
        // referred to this one.
        unsafe { HugeHeader::destroy(h) };
    }

    /// Unmaps the smallest cached huge mapping (the cache is not empty).
    pub(super) fn unmap_smallest_cached(&mut self) {
        // SAFETY: cached headers are live mappings of ours.
        let size = |h: *mut HugeHeader| unsafe { (*h).header.size };
        let cached = self.huge_cache.iter().enumerate().take_while(|(_, h)| !h.is_null());
        let (i, _) = cached.min_by_key(|&(_, &h)| size(h)).unwrap();
        self.unmap_cached_at(i);
    }

    /// For a request of `total` bytes: the smallest cached mapping that
    /// holds it, its surplus past the first segment boundary after `total`
    /// split off and cached when that is a segment or more; else the
    /// largest cached mapping, to be extended.
    fn take_for(&mut self, total: usize) -> Taken {
        // SAFETY: cached headers are live mappings of ours.
        let size = |h: *mut HugeHeader| unsafe { (*h).header.size };
        let cached = self.huge_cache.iter().enumerate().take_while(|(_, h)| !h.is_null());
        let fitting = cached.clone().filter(|&(_, &h)| size(h) >= total).min_by_key(|&(_, &h)| size(h));
        let Some((i, _)) = fitting else {
            let largest = cached.max_by_key(|&(_, &h)| size(h)).map(|(i, _)| i);
            return Taken { fitting: None, largest: largest.map(|i| self.take_cached_at(i)) };
        };
        let h = self.take_cached_at(i);
        Taken { fitting: Some(self.split(h, total)), largest: None }
    }

    /// Splits the surplus of the cached mapping `h` past the first segment
    /// boundary after `total` off, into the cache, if it is a segment or
    /// more; returns `h`.
    fn split(&mut self, h: *mut HugeHeader, total: usize) -> *mut HugeHeader {
        // SAFETY: `h` is a cached mapping the caller took out of the cache.
        let size = unsafe { (*h).header.size };
        let end = h as usize + size;
        let Some(cut) = align_up(h as usize + total, SEGMENT_SIZE) else { return h };
        if end.checked_sub(cut).is_some_and(|rest| rest >= SEGMENT_SIZE) {
            // SAFETY: `[cut, end)` is the unused tail of a cached mapping
            // that is ours alone; `cut` is segment-aligned, so `find` finds
            // the new header for the addresses of its first slot. The seams
            // past `cut` go with the tail (`cut` itself, if it was one, is
            // a header again).
            unsafe {
                let all = (*h).seams;
                let seams = &all[..(*h).nseams];
                let below = seams.iter().take_while(|&&seam| seam < cut).count();
                let above = seams.iter().position(|&seam| seam > cut).map_or(&[][..], |at| &seams[at..]);
                let lent = seams[below..].first() == Some(&cut);
                let rest = HugeHeader::write_part(cut, end - cut, (*h).aged, lent, (*h).joined, above);
                (*h).header.size = cut - h as usize;
                (*h).nseams = below;
                segment::register(NonNull::new_unchecked(rest).cast());
                self.push_cached(rest);
            }
        }
        h
    }

    /// Adds a mapping to the cache (the newest; the smallest goes if the
    /// cache is full).
    fn push_cached(&mut self, h: *mut HugeHeader) {
        if !self.huge_cache[HUGE_CACHE - 1].is_null() {
            self.unmap_smallest_cached();
        }
        let used = self.huge_cache.iter().take_while(|h| !h.is_null()).count();
        self.huge_cache[used] = h;
        // SAFETY: `h` is a live mapping of ours.
        self.huge_cached += unsafe { (*h).header.size };
    }

    /// Keeps a freed huge mapping for reuse, merged with the cached
    /// mappings right before and after it, then trims to the budget.
    fn cache_huge(&mut self, mut h: *mut HugeHeader) {
        // SAFETY: `h` and cached headers are live mappings of ours; `h`
        // holds no block any more.
        let released = unsafe {
            (*h).aged = false;
            (*h).header.size
        };
        while let Some((i, lower, upper)) = self.neighbour_of(h) {
            // SAFETY: as above; the neighbour leaves the cache before it
            // becomes part of another mapping.
            unsafe {
                if !HugeHeader::can_absorb(lower, upper) {
                    break;
                }
                self.take_cached_at(i);
                HugeHeader::absorb(lower, upper);
            }
            h = lower;
        }
        self.push_cached(h);
        self.trim(released);
    }

    /// A cached mapping that ends where `h` starts or starts where it
    /// ends: its index, and which of the two is the lower.
    fn neighbour_of(&self, h: *mut HugeHeader) -> Option<(usize, *mut HugeHeader, *mut HugeHeader)> {
        // SAFETY: cached headers and `h` are live mappings of ours.
        let end = |m: *mut HugeHeader| unsafe { m as usize + (*m).header.size };
        let cached = self.huge_cache.iter().take_while(|c| !c.is_null());
        cached.enumerate().find_map(|(i, &c)| match () {
            _ if end(c) == h as usize => Some((i, c, h)),
            _ if end(h) == c as usize => Some((i, h, c)),
            _ => None,
        })
    }
}

/// What the cache has for a request: a mapping that holds it, or else the
/// largest, to be extended.
struct Taken {
    fitting: Option<*mut HugeHeader>,
    largest: Option<*mut HugeHeader>,
}

impl HugeHeader {
    /// Extends the cached mapping `p` to hold `total` bytes with a mapping
    /// right before it (where the kernel places new mappings, below the
    /// older ones) or else right after it: the request then reuses `p`'s
    /// resident pages, as a heap that grows in place does, where a mapping
    /// of its own would leave `p` idle beside it. One `mmap` and no trimming
    /// (an aligned mapping elsewhere costs up to two `munmap`s more). None
    /// when both addresses are taken.
    ///
    /// # Safety
    /// `p` is a cached mapping the caller took out of the cache, smaller
    /// than `total`.
    unsafe fn extend(p: *mut HugeHeader, total: usize) -> Option<*mut HugeHeader> {
        // SAFETY: per the contract; `map_at` maps only addresses nothing
        // else holds, and the new part and `p` are ours alone.
        unsafe {
            let size = (*p).header.size;
            let more = align_up(total - size, SEGMENT_SIZE)?;
            let seams = (*p).seams;
            let lent = usize::from((*p).lent);
            let below = (p as usize).checked_sub(more).filter(|&b| b != 0);
            if let Some(below) = below.filter(|_| (*p).nseams + lent <= SEAMS)
                && os::map_at(below as *mut u8, more)
            {
                let mut parts = [p as usize; SEAMS];
                parts[lent..lent + (*p).nseams].copy_from_slice(&seams[..(*p).nseams]);
                let h = Self::write_part(below, more + size, false, false, true, &parts[..lent + (*p).nseams]);
                segment::forget(NonNull::new_unchecked(p).cast());
                segment::register(NonNull::new_unchecked(h).cast());
                return Some(h);
            }
            if os::map_at((p as usize + size) as *mut u8, more) {
                (*p).header.size = size + more;
                (*p).joined = true;
                return Some(p);
            }
            None
        }
    }

    /// Whether `lower` can take `upper` in without more seams than it holds.
    ///
    /// # Safety
    /// Both are headers of huge mappings of ours.
    unsafe fn can_absorb(lower: *const HugeHeader, upper: *const HugeHeader) -> bool {
        // SAFETY: per the contract.
        unsafe { (*lower).nseams + usize::from((*upper).lent) + (*upper).nseams <= SEAMS }
    }

    /// Makes `upper`, which starts where `lower` ends, part of `lower`:
    /// `upper`'s header is no longer a segment of the map, and a seam if it
    /// was a block's.
    ///
    /// # Safety
    /// Both are cached mappings of ours that only the caller refers to,
    /// adjacent, and [`Self::can_absorb`] allows it.
    unsafe fn absorb(lower: *mut HugeHeader, upper: *mut HugeHeader) {
        // SAFETY: per the contract.
        unsafe {
            segment::forget(NonNull::new_unchecked(upper).cast());
            let (mut n, m) = ((*lower).nseams, (*upper).nseams);
            let (mut seams, upper_seams) = ((*lower).seams, (*upper).seams);
            if (*upper).lent {
                seams[n] = upper as usize;
                n += 1;
            }
            seams[n..n + m].copy_from_slice(&upper_seams[..m]);
            (*lower).seams = seams;
            (*lower).nseams = n + m;
            (*lower).header.size += (*upper).header.size;
            (*lower).aged = false;
            (*lower).joined = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{SERIAL, free_block as free_ok};
    use super::super::{LARGE_MAX, alloc, usable_size};
    use super::*;

    /// A freed big buffer serves two smaller huge requests as it is: the
    /// first takes its start, the surplus is split off at a segment boundary
    /// and serves the second. Its pages are the ones written before (no
    /// `munmap`, `mremap` or purge came between), and nothing overlaps.
    #[test]
    fn a_cached_mapping_serves_smaller_requests_without_a_system_call() {
        let _serial = SERIAL.lock().unwrap();
        release_caches();
        // A live large block keeps the budget above the buffer's size once
        // it is freed (with nothing live it would go back at once).
        let (keep, _) = alloc(100 * 1024, OS_PAGE);
        let big = 3 * LARGE_MAX;
        let (a, zeroed) = alloc(big, OS_PAGE);
        assert!(zeroed);
        // SAFETY: `a` is a live block of `big` bytes.
        unsafe { a.write_bytes(0xA5, big) };
        let mapping = segment::find(a).unwrap().as_ptr() as usize;
        free_ok(a);
        let want = LARGE_MAX + 1;
        let (b, zeroed) = alloc(want, OS_PAGE);
        assert_eq!(b, a, "the cached mapping is taken as it is");
        assert!(!zeroed, "a reused mapping may hold old data");
        let cut = align_up(mapping + OS_PAGE + want, SEGMENT_SIZE).unwrap();
        // SAFETY: `b` is live.
        let usable = unsafe { usable_size(segment::find(b).unwrap(), b) }.unwrap();
        assert_eq!(usable, cut - b as usize, "the block ends where the surplus was cut");
        let (c, _) = alloc(want, OS_PAGE);
        assert_eq!(c as usize, cut + OS_PAGE, "the split-off surplus serves the next request");
        // SAFETY: both are live blocks of at least `want` bytes, written
        // before the frees: their pages never went back.
        unsafe {
            assert!((0..want).step_by(OS_PAGE).all(|i| *b.add(i) == 0xA5 && *c.add(i) == 0xA5));
            let usable = usable_size(segment::find(c).unwrap(), c).unwrap();
            assert!(usable >= want && (c as usize + usable).is_multiple_of(SEGMENT_SIZE));
        }
        // A request no cached mapping holds gets a new one.
        free_ok(c);
        let (d, zeroed) = alloc(big, OS_PAGE);
        assert!(zeroed && d != c);
        // A realloc that grows a block cut from a mapping moves it (its
        // neighbour holds the addresses after it) and keeps its bytes.
        let seg = segment::find(b).unwrap();
        // SAFETY: `b` is a live huge block in `seg`.
        let moved = unsafe { resize_huge(seg, b, 2 * big) };
        assert!(!moved.is_null());
        // SAFETY: `moved` holds the bytes of `b`.
        unsafe { assert!((0..want).step_by(OS_PAGE).all(|i| *moved.add(i) == 0xA5)) };
        [moved, d, keep].into_iter().for_each(free_ok);
        release_caches();
    }
}
