//! The malloc family, so that `LD_PRELOAD=libmemory.so prog` (or linking with
//! `-lmemory`) routes every allocation of a program and its libraries here.
//! Semantics follow glibc's documentation; the README lists each edge case.
//!
//! Built with the `malloc` feature (on by default). Rust programs that want
//! only the `GlobalAlloc` can turn it off.

use crate::api::alloc::{self, MIN_ALIGN, c_size};
use crate::os::{self, OS_PAGE};
use core::ffi::{c_int, c_void};
use core::ptr::null_mut;

/// glibc guarantees 16-byte alignment to every request above 8 bytes, and
/// GCC's x86 code relies on it (aligned SSE moves on malloc'd memory):
/// [`alloc::alloc_c`] serves such requests from the 16-multiple classes,
/// which are 16-aligned.
#[unsafe(no_mangle)]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    alloc::alloc_c(size).cast()
}

/// # Safety
/// As free(3): `p` is null or a block of ours nobody uses afterwards; any
/// other pointer is reported and ignored. `errno` is preserved.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: per the contract.
    unsafe { alloc::free(p.cast()) }
}

#[unsafe(no_mangle)]
pub extern "C" fn calloc(count: usize, size: usize) -> *mut c_void {
    let Some(total) = count.checked_mul(size) else {
        crate::sys::errno::set_errno(libc::ENOMEM);
        return null_mut();
    };
    alloc::alloc_zeroed(c_size(total), MIN_ALIGN).cast()
}

/// # Safety
/// As realloc(3). `realloc(p, 0)` frees `p` and returns null, as glibc does.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    if size == 0 && !p.is_null() {
        // SAFETY: per the contract.
        unsafe { alloc::free(p.cast()) };
        return null_mut();
    }
    // SAFETY: per the contract.
    unsafe { alloc::realloc(p.cast(), c_size(size), MIN_ALIGN).cast() }
}

/// # Safety
/// As reallocarray(3).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, count: usize, size: usize) -> *mut c_void {
    match count.checked_mul(size) {
        // SAFETY: per the contract.
        Some(total) => unsafe { realloc(p, total) },
        None => {
            crate::sys::errno::set_errno(libc::ENOMEM);
            null_mut()
        }
    }
}

/// Aligned allocation shared by the memalign family.
fn aligned(align: usize, size: usize) -> *mut c_void {
    if align <= MIN_ALIGN {
        return malloc(size);
    }
    alloc::alloc(size, align).cast()
}

/// # Safety
/// `out` is valid for a write of a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || !align.is_multiple_of(size_of::<*mut c_void>()) {
        return libc::EINVAL;
    }
    let saved = crate::sys::errno::SavedErrno::new();
    let p = aligned(align, size);
    drop(saved);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: per the contract.
    unsafe { *out = p };
    0
}

/// C11: the alignment must be a power of two (glibc 2.38 also refuses others
/// with `EINVAL`); a size that is not a multiple of it is accepted.
#[unsafe(no_mangle)]
pub extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        crate::sys::errno::set_errno(libc::EINVAL);
        return null_mut();
    }
    aligned(align, size)
}

/// Obsolete; as glibc, an alignment that is not a power of two is rounded up
/// to the next one.
#[unsafe(no_mangle)]
pub extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    match align.checked_next_power_of_two() {
        Some(align) => aligned(align, size),
        None => {
            crate::sys::errno::set_errno(libc::EINVAL);
            null_mut()
        }
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    aligned(OS_PAGE, size)
}

/// A page-aligned block of whole pages (`pvalloc(0)` gives one page).
#[unsafe(no_mangle)]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    match os::align_up(size.max(1), OS_PAGE) {
        Some(size) => aligned(OS_PAGE, size),
        None => {
            crate::sys::errno::set_errno(libc::ENOMEM);
            null_mut()
        }
    }
}

/// # Safety
/// `p` is null or a live block of ours; any other pointer is reported and
/// gives 0.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    alloc::usable_size(p.cast())
}

/// C23. The size is the caller's promise; the block knows its own.
///
/// # Safety
/// As `free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free_sized(p: *mut c_void, _size: usize) {
    // SAFETY: per the contract.
    unsafe { alloc::free(p.cast()) }
}

/// C23.
///
/// # Safety
/// As `free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free_aligned_sized(p: *mut c_void, _align: usize, _size: usize) {
    // SAFETY: per the contract.
    unsafe { alloc::free(p.cast()) }
}

/// glibc's `malloc_trim`: gives free memory back to the system now; 1 if
/// any went back, else 0. Here: the calling thread's emptied small pages
/// and spare segment, those the heaps of exited threads keep for the
/// threads that adopt them, the pages of every free large run, every cached
/// huge mapping and entirely free large segment (running threads' heaps
/// are theirs to trim). `pad`, what glibc leaves at the top of its heap, has no
/// counterpart.
#[unsafe(no_mangle)]
pub extern "C" fn malloc_trim(_pad: usize) -> c_int {
    use crate::diag::counters::{PURGED, UNMAPPED};
    let before = PURGED.get() + UNMAPPED.get();
    let heap = crate::thread::heap_if_any();
    if !heap.is_null() {
        // SAFETY: the calling thread owns its heap.
        unsafe { (*heap).owner().trim() };
    }
    crate::thread::trim_abandoned();
    let large = crate::large::trim_all();
    c_int::from(large || PURGED.get() + UNMAPPED.get() != before)
}
