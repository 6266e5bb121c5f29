//! The operating-system layer: every byte the allocator hands out comes from a
//! private mapping of `/dev/zero`, and goes back with `munmap` (or, for pages
//! inside a mapping that stays, `madvise(MADV_DONTNEED)`).
//!
//! System calls are made with `libc::syscall` where the libc wrapper would be a
//! thread-cancellation point (`openat`, `close`): cancelling a thread inside
//! `malloc` must not leave a lock held.

use crate::diag::counters as stats;
use crate::diag::options;
use crate::diag::text::Line;
use crate::sys::errno::SavedErrno;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicU64, Ordering};

/// The hardware page: the unit of `mmap`, `munmap` and `madvise` on x86.
pub const OS_PAGE: usize = 4096;

/// Rounds `n` up to a multiple of the power of two `align`, or `None` on overflow.
pub const fn align_up(n: usize, align: usize) -> Option<usize> {
    match n.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// Maps `size` bytes of zero memory aligned to `align` (a power of two, at
/// least [`OS_PAGE`]). Returns null when the system refuses.
pub fn map_aligned(size: usize, align: usize) -> *mut u8 {
    let p = map_aligned_uncounted(size, align);
    if !p.is_null() {
        note_mapped(p, size);
    }
    p
}

fn note_mapped(p: *mut u8, size: usize) {
    stats::mapped(size);
    log(b"mapped ", p, size);
}

/// `MALLOCATOR_VERBOSE=1`: one line per mapping made or returned.
fn log(what: &[u8], p: *mut u8, size: usize) {
    if options::verbose() {
        Line::new()
            .push(b"mallocator: ")
            .push(what)
            .dec(size as u64)
            .push(b" bytes at 0x")
            .hex(p as usize)
            .newline()
            .write_to(2);
    }
}

fn map_aligned_uncounted(size: usize, align: usize) -> *mut u8 {
    debug_assert!(size.is_multiple_of(OS_PAGE) && align.is_power_of_two() && align >= OS_PAGE);
    if align == OS_PAGE {
        return map(size);
    }
    // Over-map by the alignment and trim both ends: the kernel gives no way to
    // ask for alignment directly.
    if let Some(padded) = size.checked_add(align - OS_PAGE) {
        let raw = map(padded);
        if !raw.is_null() {
            let start = align_up(raw as usize, align).unwrap_or(0);
            let front = start - raw as usize;
            let back = padded - front - size;
            // SAFETY: both trimmed ranges lie inside the mapping just made and
            // nothing else refers to them.
            unsafe {
                trim(raw, front);
                trim((start + size) as *mut u8, back);
            }
            return start as *mut u8;
        }
    }
    // Near exhaustion of the address space (or of `RLIMIT_AS`) the padded
    // request fails although a well-placed exact one could succeed: the
    // kernel's choice for an exact one shows a hole; take it if it happens
    // to be aligned, else try the aligned addresses on either side of it.
    let raw = map(size);
    if raw.is_null() || raw as usize & (align - 1) == 0 {
        return raw;
    }
    // SAFETY: `raw` is the mapping just made, unused.
    unsafe { trim(raw, size) };
    let below = raw as usize & !(align - 1);
    for at in [below + align, below] {
        if map_exact(at as *mut u8, size) {
            return at as *mut u8;
        }
    }
    null_mut()
}

/// Unmaps part of a mapping being made (not counted as returned memory).
///
/// # Safety
/// The range is unused memory of a mapping made here.
unsafe fn trim(p: *mut u8, size: usize) {
    if size != 0 && !p.is_null() {
        // SAFETY: per the contract.
        unsafe { libc::munmap(p.cast(), size) };
    }
}

/// Counts calls to `map`; the call numbered `FAIL_AT` fails (fault injection
/// for tests: `MALLOCATOR_FAIL_MMAP=n` or [`fail_nth_map`]).
static MAP_CALLS: AtomicU64 = AtomicU64::new(0);
static FAIL_AT: AtomicU64 = AtomicU64::new(0);

/// Makes the `n`-th mapping attempt from now fail as if the system refused
/// (`n = 0` cancels).
pub fn fail_nth_map(n: u64) {
    let at = if n == 0 { 0 } else { MAP_CALLS.load(Ordering::Relaxed) + n };
    FAIL_AT.store(at, Ordering::Relaxed);
}

/// Maps `size` bytes (a multiple of [`OS_PAGE`]) of zero memory.
fn map(size: usize) -> *mut u8 {
    map_raw(null_mut(), size, 0)
}

/// Maps `size` bytes of zero memory exactly at `p` (page-aligned), if no
/// mapping is there: false when one is (or the system refuses).
pub fn map_at(p: *mut u8, size: usize) -> bool {
    let mapped = map_exact(p, size);
    if mapped {
        note_mapped(p, size);
    }
    mapped
}

/// [`map_at`] without counting the mapping in the statistics.
fn map_exact(p: *mut u8, size: usize) -> bool {
    let q = map_raw(p, size, libc::MAP_FIXED_NOREPLACE);
    if q == p {
        return true;
    }
    // A kernel older than 4.17 takes the flag for a hint and maps
    // elsewhere.
    // SAFETY: `q`, if not null, is the mapping just made, unused.
    unsafe { trim(q, size) };
    false
}

/// One `mmap` of `/dev/zero` (see [`open_dev_zero`]), at `addr` if not null.
fn map_raw(addr: *mut u8, size: usize, extra_flags: libc::c_int) -> *mut u8 {
    let call = MAP_CALLS.fetch_add(1, Ordering::Relaxed) + 1;
    if size == 0 || call == FAIL_AT.load(Ordering::Relaxed) {
        return null_mut();
    }
    let fd = open_dev_zero();
    let flags = if fd >= 0 {
        libc::MAP_PRIVATE
    } else {
        // No descriptor left (EMFILE/ENFILE) or no /dev at all (a chroot): an
        // anonymous mapping is the same zero memory, so take it rather than fail.
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS
    };
    let flags = flags | libc::MAP_NORESERVE | extra_flags;
    // SAFETY: a fresh mapping at an address of the kernel's choosing, or at
    // `addr` only if nothing is mapped there (MAP_FIXED_NOREPLACE), touches
    // no existing memory; `fd` is ours (or -1 with MAP_ANONYMOUS).
    let p = unsafe { libc::mmap(addr.cast(), size, libc::PROT_READ | libc::PROT_WRITE, flags, fd, 0) };
    if fd >= 0 {
        // SAFETY: `fd` was opened above and is used by nobody else.
        unsafe { libc::syscall(libc::SYS_close, fd) };
    }
    if p == libc::MAP_FAILED { null_mut() } else { p.cast() }
}

/// Opens `/dev/zero` afresh for every mapping. A cached descriptor would break
/// when a daemon closes all its descriptors and a later `open` reuses the
/// number for a regular file: we would then map that file.
fn open_dev_zero() -> libc::c_int {
    // SAFETY: the path is a NUL-terminated static string; openat with these
    // flags has no effect on memory.
    let fd = unsafe {
        libc::syscall(libc::SYS_openat, libc::AT_FDCWD, c"/dev/zero".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC)
    };
    fd as libc::c_int
}

/// Returns a mapping (or part of one) to the system.
///
/// # Safety
/// `[p, p + size)` must be page-aligned memory mapped by [`map_aligned`] that
/// nothing will use again.
pub unsafe fn unmap(p: *mut u8, size: usize) {
    if size != 0 {
        let _errno = SavedErrno::new();
        // SAFETY: the caller gives up the range.
        unsafe { libc::munmap(p.cast(), size) };
        stats::unmapped(size);
        log(b"unmapped ", p, size);
    }
}

/// Gives the physical pages of a range back while keeping the addresses: the
/// next touch reads zeros.
///
/// # Safety
/// `[p, p + size)` must be page-aligned mapped memory whose contents nobody needs.
pub unsafe fn purge(p: *mut u8, size: usize) {
    if size != 0 {
        let _errno = SavedErrno::new();
        // SAFETY: the caller gives up the contents of the range.
        unsafe { libc::madvise(p.cast(), size, libc::MADV_DONTNEED) };
        stats::PURGED.add(size as u64);
    }
}

/// Marks in `out`, a byte per OS page (bit 0: resident), which pages of
/// `[p, p + len)` are in memory; false when the kernel refuses. For the
/// statistics only: it walks the page tables of the whole range.
pub fn residency(p: *const u8, len: usize, out: &mut [u8]) -> bool {
    assert!(out.len() >= len.div_ceil(OS_PAGE));
    let _errno = SavedErrno::new();
    // SAFETY: mincore writes one byte per page of the range into `out`,
    // which holds that many; it reads no memory of the range.
    unsafe { libc::mincore(p as *mut libc::c_void, len, out.as_mut_ptr()) == 0 }
}

/// Makes a page inaccessible (a guard page: touching it faults).
///
/// # Safety
/// `[p, p + size)` is page-aligned memory of a mapping made here, unused.
pub unsafe fn protect(p: *mut u8, size: usize) {
    // SAFETY: per the contract.
    unsafe { libc::mprotect(p.cast(), size, libc::PROT_NONE) };
}

/// Grows or shrinks a mapping in place; false when the neighbouring addresses
/// are taken.
///
/// # Safety
/// `[p, p + old)` must be a whole mapping made by this module.
pub unsafe fn remap_in_place(p: *mut u8, old: usize, new: usize) -> bool {
    let _errno = SavedErrno::new();
    // SAFETY: without MREMAP_MAYMOVE the mapping keeps its address, and the
    // caller owns it.
    unsafe { libc::mremap(p.cast(), old, new, 0) != libc::MAP_FAILED }
}

/// Moves a mapping's pages to `target` (replacing the mapping there) and
/// resizes it; the pages are moved, not copied.
///
/// # Safety
/// `[p, p + old)` must be a whole mapping and `[target, target + new)` a
/// mapping, both made by this module and owned by the caller.
pub unsafe fn remap_to(p: *mut u8, old: usize, new: usize, target: *mut u8) -> bool {
    let _errno = SavedErrno::new();
    // SAFETY: MREMAP_FIXED replaces only the caller's own target mapping.
    let r = unsafe { libc::mremap(p.cast(), old, new, libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED, target) };
    r != libc::MAP_FAILED
}
