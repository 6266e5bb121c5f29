//! The C ABI of `libmemory.so` (declared in `include/memory.h`) and the
//! library's initialisation and finalisation routines.

use crate::api::alloc;
use crate::api::stats::{self, MemoryStats};
use crate::diag::options;
use core::ffi::{CStr, c_char, c_int, c_void};

/// `void *allocate(unsigned int size)`: malloc semantics.
#[unsafe(no_mangle)]
pub extern "C" fn allocate(size: u32) -> *mut c_void {
    alloc::alloc(size as usize, alloc::MIN_ALIGN).cast()
}

/// `void deallocate(void *addr)`: free semantics; bad pointers are reported.
///
/// # Safety
/// Any pointer may be passed; a live block must not be used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn deallocate(addr: *mut c_void) {
    // SAFETY: the C caller gives the block up, as with free(3).
    unsafe { alloc::free(addr.cast()) };
}

/// `int memory_stats(struct memory_stats *out)`: fills `out` with a snapshot
/// of the allocator's counters; returns 0, or -1 if `out` is null.
///
/// # Safety
/// `out` is null or valid for writing a `struct memory_stats`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_stats(out: *mut MemoryStats) -> c_int {
    if out.is_null() {
        return -1;
    }
    // SAFETY: per the contract.
    unsafe { out.write(stats::snapshot()) };
    0
}

/// `void memory_stats_print(int fd)`: writes the statistics as a table.
#[unsafe(no_mangle)]
pub extern "C" fn memory_stats_print(fd: c_int) {
    stats::print(fd);
}

/// `int memory_profile_dump(const char *path)`: writes the heap profile;
/// 0, or -1 with `errno` set.
///
/// # Safety
/// `path` is null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_profile_dump(path: *const c_char) -> c_int {
    // SAFETY: per the contract.
    c_result(crate::api::profile::dump(unsafe { c_path(path) }))
}

/// `int memory_profile_dump_peak(const char *path)`: the profile at its
/// peak; as `memory_profile_dump`.
///
/// # Safety
/// `path` is null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memory_profile_dump_peak(path: *const c_char) -> c_int {
    // SAFETY: per the contract.
    c_result(crate::api::profile::dump_peak(unsafe { c_path(path) }))
}

/// # Safety
/// `path` is null or a NUL-terminated string that outlives the result.
unsafe fn c_path<'a>(path: *const c_char) -> Option<&'a CStr> {
    // SAFETY: per the contract.
    (!path.is_null()).then(|| unsafe { CStr::from_ptr(path) })
}

/// 0, or -1 with `errno` set.
fn c_result(r: Result<(), i32>) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => {
            crate::sys::errno::set_errno(e);
            -1
        }
    }
}

/// Runs when the library is loaded (also under `dlopen`).
extern "C" fn on_load() {
    alloc::init();
    crate::api::fork::register();
    crate::profiler::install_signal();
}

/// Runs when the library is unloaded (or the process exits): deletes the
/// thread-exit key (its destructor's code may be about to disappear) and
/// gives back the memory the calling thread keeps cached. Live blocks stay
/// valid: destructors that run after ours (other libraries', atexit handlers)
/// may still use them, and may even allocate again.
extern "C" fn on_unload() {
    crate::thread::fini();
    if options::print_stats() {
        stats::print(2);
    }
    crate::profiler::at_exit();
    let heap = crate::thread::heap_if_any();
    if !heap.is_null() {
        // SAFETY: the calling thread owns its heap.
        unsafe { (*heap).owner().trim() };
    }
}

#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = on_load;

#[used]
#[unsafe(link_section = ".fini_array")]
static FINI: extern "C" fn() = on_unload;
