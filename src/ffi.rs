//! The C ABI of `libmemory.so` (declared in `include/memory.h`) and the
//! library's initialisation and finalisation routines.

use crate::alloc;
use core::ffi::c_void;

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

/// Runs when the library is loaded (also under `dlopen`).
extern "C" fn on_load() {
    alloc::init();
    crate::fork::register();
}

/// Runs when the library is unloaded (or the process exits): deletes the
/// thread-exit key (its destructor's code may be about to disappear) and
/// gives back the memory the calling thread keeps cached. Live blocks stay
/// valid: destructors that run after ours (other libraries', atexit handlers)
/// may still use them, and may even allocate again.
extern "C" fn on_unload() {
    crate::thread::fini();
    let heap = crate::thread::heap_if_any();
    if !heap.is_null() {
        // SAFETY: the calling thread owns its heap.
        unsafe { (*heap).collect() };
    }
}

#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = on_load;

#[used]
#[unsafe(link_section = ".fini_array")]
static FINI: extern "C" fn() = on_unload;
