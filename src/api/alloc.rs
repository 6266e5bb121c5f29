//! The entry points: route each request to the thread heap (small blocks) or
//! the large-region allocator, and each free to the owner of its memory.

use crate::diag::error::{self, Misuse, Op};
use crate::diag::options;
use crate::large;
use crate::os::OS_PAGE;
use crate::segment::{self, Kind, SegmentHeader};
use crate::small::segment::SmallSegment;
use crate::small::size_class::{MAX_SMALL, TABLE_LIMIT, Table, class_of};
use crate::thread;
use crate::thread::heap::Heap;
use core::ptr::{NonNull, null_mut};
use core::sync::atomic::{AtomicU8, Ordering};

/// Every block is at least this aligned (all classes are multiples of 8).
pub const MIN_ALIGN: usize = 8;

const UNINIT: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;
static INIT: AtomicU8 = AtomicU8::new(UNINIT);

/// One-time set-up: the free-list secret, the options, the thread-exit key.
/// Runs from the library's constructor, or earlier from the first allocation
/// (ld.so and other constructors may allocate before ours runs). Nothing in
/// it allocates.
pub fn init() {
    if INIT.load(Ordering::Acquire) == DONE {
        return;
    }
    if INIT.compare_exchange(UNINIT, RUNNING, Ordering::Acquire, Ordering::Acquire).is_err() {
        while INIT.load(Ordering::Acquire) != DONE {
            // SAFETY: no preconditions.
            unsafe { libc::sched_yield() };
        }
        return;
    }
    crate::sys::random::init();
    options::init();
    crate::profiler::init();
    thread::init();
    INIT.store(DONE, Ordering::Release);
}

/// Allocates `size` bytes aligned to `align` (a power of two). Null with
/// `errno = ENOMEM` when memory cannot be had.
#[inline(always)]
pub fn alloc(size: usize, align: usize) -> *mut u8 {
    if align <= MIN_ALIGN && size <= TABLE_LIMIT {
        return thread::current().alloc(Table::Rust, size);
    }
    alloc_cold(size, align)
}

/// [`alloc`] for C callers: blocks above 8 bytes are 16-aligned (see
/// [`crate::api::malloc`]), from the heap's C table of pages by size.
#[inline(always)]
pub fn alloc_c(size: usize) -> *mut u8 {
    if size <= TABLE_LIMIT {
        return thread::current().alloc(Table::C, size);
    }
    alloc_cold(c_size(size), MIN_ALIGN)
}

/// A size whose class yields 16-aligned blocks (C's promise for requests
/// above 8 bytes; classes that are multiples of 16 are 16-aligned).
#[inline(always)]
pub fn c_size(size: usize) -> usize {
    if size > 8 && size <= MAX_SMALL { size.next_multiple_of(16) } else { size }
}

/// Everything but a request the heap's tables serve: aligned, above
/// `TABLE_LIMIT` and large requests. Out of line, so the fast path needs no
/// stack frame.
#[cold]
#[inline(never)]
fn alloc_cold(size: usize, align: usize) -> *mut u8 {
    if align <= MIN_ALIGN && size <= MAX_SMALL {
        return alloc_above_tables(size);
    }
    alloc_routed(size, align)
}

/// Above the size tables: the fast path by class (in `malloc` itself, its
/// registers cost the path below the tables three instructions on i686; in
/// `alloc_cold`, the stack frame of the rest of it). Classes above the
/// tables are multiples of 64: 16-aligned, as C wants.
#[inline(never)]
fn alloc_above_tables(size: usize) -> *mut u8 {
    thread::current().alloc_above_tables(Table::Rust, size)
}

/// Aligned and large requests.
#[inline(never)]
fn alloc_routed(size: usize, align: usize) -> *mut u8 {
    let p = match route(size, align) {
        Route::Small(rounded) => alloc_small(rounded, size),
        Route::Large => alloc_large(size, align).0,
    };
    if p.is_null() {
        crate::sys::errno::set_errno(libc::ENOMEM);
    }
    p
}

/// Like [`alloc`], with the block's first `size` bytes zeroed. Blocks known
/// to be fresh (large runs never used or purged, huge mappings) are not
/// written, so they stay out of the resident set until the program touches
/// them.
pub fn alloc_zeroed(size: usize, align: usize) -> *mut u8 {
    let (p, zeroed) = match route(size, align) {
        Route::Small(rounded) => (alloc_small(rounded, size), false),
        Route::Large => alloc_large(size, align),
    };
    if p.is_null() {
        crate::sys::errno::set_errno(libc::ENOMEM);
    } else if !zeroed {
        // SAFETY: the block is live and at least `size` bytes long.
        unsafe { p.write_bytes(0, size) };
    }
    p
}

/// A block of the class of `rounded` (the size that gives the alignment)
/// for a request of `size` bytes, the size the profile counts.
fn alloc_small(rounded: usize, size: usize) -> *mut u8 {
    let heap = thread::heap();
    if heap.is_null() {
        return null_mut();
    }
    // SAFETY: the calling thread owns its heap.
    unsafe { (*heap).owner().alloc_counted(class_of(rounded), size) }
}

/// A large block (and whether it reads as zeros), sampled for the heap
/// profile when the thread's countdown says so.
fn alloc_large(size: usize, align: usize) -> (*mut u8, bool) {
    sampled_if_due(size, || large::alloc(size, align))
}

/// Runs `alloc`, which serves `size` bytes outside the thread heap, and
/// records the block for the profiler if it is a sample.
fn sampled_if_due(size: usize, alloc: impl FnOnce() -> (*mut u8, bool)) -> (*mut u8, bool) {
    match sample_due(size) {
        Some(heap) => take_sample(heap, size, alloc),
        None => alloc(),
    }
}

/// Counts `size` requested bytes that the small fast path does not see down
/// the calling thread's sampling countdown; its heap if the request is to be
/// sampled. A thread without a heap gets one here: a thread that allocates
/// only large blocks is sampled like any other (a heap is a mapping of
/// some 70 KiB of address space, of which only the pages it touches become
/// resident, and its counters give the statistics the thread's requested bytes too).
fn sample_due(size: usize) -> Option<&'static Heap> {
    // SAFETY: a heap is never freed; null if none could be had.
    let heap = unsafe { thread::heap().as_ref()? };
    // SAFETY: the calling thread owns its heap and has no `Owner` of it
    // alive.
    unsafe { heap.owner() }.take_sample(size).then_some(heap)
}

/// Runs `alloc` with sampling off on `heap`, the calling thread's, and
/// records its block as a sample of `size` bytes.
fn take_sample(heap: &Heap, size: usize, alloc: impl FnOnce() -> (*mut u8, bool)) -> (*mut u8, bool) {
    // SAFETY: the calling thread owns `heap` (from `sample_due`); no `Owner`
    // of it is alive.
    unsafe {
        heap.sampling(|| {
            let r = alloc();
            if !r.0.is_null() {
                crate::profiler::record(r.0, size);
            }
            r
        })
    }
}

/// Where a request goes: a small class (with the size that gives the
/// alignment), or the large-region allocator.
enum Route {
    Small(usize),
    Large,
}

fn route(size: usize, align: usize) -> Route {
    if size <= MAX_SMALL {
        if align <= MIN_ALIGN {
            return Route::Small(size);
        }
        if align <= 16 {
            // Classes that are multiples of 16 yield 16-aligned blocks.
            return Route::Small(size.next_multiple_of(16).max(16));
        }
    }
    if align <= OS_PAGE {
        // A power-of-two class of at least `align` is aligned to it (pages
        // start on OS-page boundaries).
        if let Some(pow2) = size.max(align).checked_next_power_of_two().filter(|&p| p <= MAX_SMALL) {
            return Route::Small(pow2);
        }
    }
    Route::Large
}

/// Frees a block. Null is ignored; a pointer that is not a live block of ours
/// is reported (one line on stderr) and otherwise ignored.
///
/// # Safety
/// Any pointer may be passed, but if `p` is a live block, nothing may use it
/// afterwards.
#[inline(always)]
pub unsafe fn free(p: *mut u8) {
    // SAFETY: the calling thread's heap (or the empty one) frees only blocks
    // of its own pages; per the contract, nothing uses `p` afterwards.
    if !unsafe { thread::current().free(p) } {
        // SAFETY: as above.
        unsafe { free_slow(p) }
    }
}

/// Frees what is not a block of the calling thread's pages that its table
/// knows: another heap's blocks, large and huge blocks, null and foreign
/// pointers. Out of line, so the fast path needs no stack frame.
///
/// # Safety
/// As for [`free`].
#[inline(never)]
unsafe fn free_slow(p: *mut u8) {
    match segment::find_in_first_slot(p) {
        // SAFETY: `find` returned a live segment of ours that contains `p`.
        Some(seg) if unsafe { (*seg.as_ptr()).kind } == Kind::Small => free_small(p),
        // SAFETY: as above, or no segment.
        found => unsafe { free_other(found, p) },
    }
}

/// Frees what is not a small block: null, foreign pointers, large and huge
/// blocks.
///
/// # Safety
/// `seg` is `segment::find_in_first_slot(p)`.
unsafe fn free_other(seg: Option<NonNull<SegmentHeader>>, p: *mut u8) {
    let Some(seg) = seg.or_else(|| segment::find_past_first_slot(p)) else {
        if !p.is_null() {
            error::report(Misuse::Foreign, Op::Free, p, None);
        }
        return;
    };
    // A sampled block is forgotten before its memory can be reused.
    crate::profiler::forget(p);
    // SAFETY: per the contract, a live segment containing `p`.
    let result = unsafe {
        match (*seg.as_ptr()).kind {
            Kind::Large => large::free(seg, p),
            _ => large::free_huge(seg, p),
        }
    };
    if let Err(bad) = result {
        error::report_bad(bad, Op::Free, p, None);
    }
}

/// A small block the calling thread's table did not know: of its own heap
/// (a page whose slot another page took), or of another heap (or any, from
/// a thread that has none).
fn free_small(p: *mut u8) {
    // SAFETY: `p` lies in a live small segment (checked by the caller), and a
    // page descriptor of a live (or retired: a tombstone) segment is
    // readable; a segment's heap is immortal, and null only in a tombstone,
    // whose pages are all free (the claim fails before it is used). The
    // calling thread's heap is the empty heap if it has none, which is no
    // segment's: a thread without a heap never takes the owner's path (a
    // null compared with a null would).
    unsafe {
        let (seg, page) = SmallSegment::page_of(p);
        let heap = (*seg).heap;
        let mine = thread::current();
        if core::ptr::eq(heap, mine) {
            mine.owner().free_found(&*page, p);
        } else {
            thread::remote::free_remote(heap, &*page, p);
        }
    }
}

/// A validated live block: its segment's kind and its usable size.
struct Live {
    seg: NonNull<SegmentHeader>,
    kind: Kind,
    usable: usize,
}

/// Checks that `p` is a live block of ours, reporting it (as given to `op`)
/// if not.
fn live_block(p: *const u8, op: Op) -> Option<Live> {
    let Some(seg) = segment::find(p) else {
        error::report(Misuse::Foreign, op, p, None);
        return None;
    };
    // SAFETY: `find` returned a live segment containing `p`.
    let kind = unsafe { (*seg.as_ptr()).kind };
    let usable = match kind {
        // SAFETY: as above; page descriptors of a live segment are readable.
        Kind::Small => unsafe {
            let page = SmallSegment::page_of(p).1;
            (*page).check_live(p.cast_mut()).map(|_| (*page).block_size())
        },
        // SAFETY: as above.
        Kind::Large | Kind::Huge => unsafe { large::usable_size(seg, p) },
    };
    match usable {
        Ok(usable) => Some(Live { seg, kind, usable }),
        Err(bad) => {
            error::report_bad(bad, op, p, None);
            None
        }
    }
}

/// The usable size of the block at `p` (at least what was asked for); 0 for
/// null, or (reported) for a pointer that is not a live block of ours.
pub fn usable_size(p: *const u8) -> usize {
    if p.is_null() {
        return 0;
    }
    live_block(p, Op::UsableSize).map_or(0, |b| b.usable)
}

/// Resizes the block at `p` to `new_size` bytes aligned to `align`, in place
/// where its class or its neighbours allow (small blocks within their class,
/// large runs into a free neighbour, huge mappings with `mremap`), else by
/// moving it. Null `p` allocates. Null result: out of memory (`errno =
/// ENOMEM`, the block is untouched), or `p` is not a live block (reported,
/// `errno = EINVAL`).
///
/// For the heap profile, a resized block is the same allocation: a sample
/// stays one (its record follows it), and a block that is not one does not
/// get a second chance for its old bytes. The bytes it grows by beyond the
/// old block count as allocated, as a request's would: they may make it a
/// sample, and a sample that grew is weighed as a block of its new size
/// (its chance of being one, `1 - e^(-size/rate)`, when the old request
/// filled its block; see `docs/design.md`, "Heap profiler").
///
/// # Safety
/// If `p` is a live block, the caller owns it, and after a non-null result
/// uses only the returned pointer.
pub unsafe fn realloc(p: *mut u8, new_size: usize, align: usize) -> *mut u8 {
    if p.is_null() {
        return alloc(new_size, align);
    }
    let Some(block) = live_block(p, Op::Realloc) else {
        crate::sys::errno::set_errno(libc::EINVAL);
        return null_mut();
    };
    let fits = new_size <= block.usable && (p as usize).is_multiple_of(align);
    let growth = Growth::of(&block, new_size);
    // SAFETY: `block` is the caller's live block.
    let in_place = unsafe {
        match block.kind {
            // Stay unless the block would be less than half used.
            Kind::Small => fits && new_size >= block.usable / 2,
            Kind::Large if new_size > MAX_SMALL && align <= OS_PAGE => {
                match large::resize_in_place(block.seg, p, new_size) {
                    Ok(done) => done,
                    Err(bad) => {
                        // Freed by another thread since `live_block`.
                        error::report_bad(bad, Op::Realloc, p, None);
                        crate::sys::errno::set_errno(libc::EINVAL);
                        return null_mut();
                    }
                }
            }
            Kind::Large => false,
            Kind::Huge if fits && new_size >= block.usable / 2 => true,
            Kind::Huge if new_size > large::MAPPED_GROWTH_MIN && align <= OS_PAGE => {
                return remap_huge(block.seg, p, new_size, &growth);
            }
            Kind::Huge => false,
        }
    };
    if in_place {
        if block.kind != Kind::Small {
            growth.follow(p, p, new_size);
        }
        return p;
    }
    // A sample stays one where it moves: in the large allocator.
    let sample = growth.due.is_some() || (block.kind != Kind::Small && growth.is_sample(p));
    let mut q = null_mut();
    if block.kind != Kind::Small && new_size > large::MAPPED_GROWTH_MIN && align <= OS_PAGE {
        q = large::alloc_mapped(new_size);
    }
    if q.is_null() {
        q = if sample { large::alloc(new_size, align).0 } else { unsampled(|| alloc(new_size, align)) };
    }
    if q.is_null() {
        crate::sys::errno::set_errno(libc::ENOMEM);
        return q;
    }
    // SAFETY: both blocks are live and distinct; the copy stays within both.
    unsafe { core::ptr::copy_nonoverlapping(p, q, block.usable.min(new_size)) };
    if sample {
        growth.follow(p, q, new_size);
    }
    // SAFETY: the caller gives `p` up; its record, if any, has moved.
    unsafe { free(p) };
    q
}

/// What a `realloc` does to the profile (nothing with profiling off):
/// whether the block grows beyond its old size, and if the bytes it grows
/// by make it a sample, the calling thread's heap that counted them.
struct Growth {
    profiling: bool,
    grows: bool,
    due: Option<&'static Heap>,
}

impl Growth {
    fn of(block: &Live, new_size: usize) -> Growth {
        let profiling = crate::profiler::enabled();
        let grows = new_size > block.usable;
        let due = if profiling && grows { sample_due(new_size - block.usable) } else { None };
        Growth { profiling, grows, due }
    }

    /// Whether the block at `p`, not of a small page, is a sample.
    fn is_sample(&self, p: *mut u8) -> bool {
        self.profiling && crate::profiler::is_sample(p)
    }

    /// The block at `p`, resized to `size` bytes, is now at `q` (or still at
    /// `p`): its record follows it, or it becomes a sample.
    fn follow(&self, p: *mut u8, q: *mut u8, size: usize) {
        if self.profiling
            && !crate::profiler::resized(p, q, size, self.grows)
            && let Some(heap) = self.due
        {
            take_sample(heap, size, || (q, false));
        }
    }
}

/// Runs `alloc` with sampling off on the calling thread: a block `realloc`
/// moves is not sampled again.
fn unsampled(alloc: impl FnOnce() -> *mut u8) -> *mut u8 {
    // SAFETY: a heap is never freed; null if none could be had.
    match unsafe { thread::heap().as_ref() } {
        // SAFETY: the calling thread owns its heap and has no `Owner` of it
        // alive.
        Some(heap) => unsafe { heap.sampling(alloc) },
        None => alloc(),
    }
}

/// `realloc` of a huge block to `new_size` (above the growth threshold) by
/// `mremap`; null with `errno = ENOMEM` if it cannot (the block unchanged).
fn remap_huge(seg: NonNull<SegmentHeader>, p: *mut u8, new_size: usize, growth: &Growth) -> *mut u8 {
    // Out of the store before `mremap` can unmap the old address (another
    // thread's block may be recorded there next).
    let record = crate::profiler::detach(p);
    // SAFETY: `seg` is the huge segment of `p`, the caller's live block.
    let q = unsafe { large::resize_huge(seg, p, new_size) };
    if q.is_null() {
        crate::profiler::attach(p, record, None);
        crate::sys::errno::set_errno(libc::ENOMEM);
        return q;
    }
    if record.is_some() {
        crate::profiler::attach(q, record, Some((new_size, growth.grows)));
    } else if let Some(heap) = growth.due {
        take_sample(heap, new_size, || (q, false));
    }
    q
}
