//! `libmemory.so`: the `mallocator` crate as a C shared library.
//!
//! A package of its own because a shared library without Rust's std needs a
//! panic handler, and a panic handler in the `mallocator` rlib would clash
//! with std's in every Rust program that links it. Without std the library
//! carries no unwinder (no `libgcc_s`), no panic formatting and no backtrace
//! code: 35 KB of code instead of 263 KB, and about 0.3 MB less resident
//! memory in every process (`docs/performance.md`, step 18). The exported
//! functions (the malloc family, C++'s operators, `allocate`/`deallocate`,
//! `memory_stats`) and the `.init_array`/`.fini_array` routines come from the
//! crate itself.
// (`cargo clippy --all-targets` also builds a test harness of it, with std.)
#![cfg_attr(not(test), no_std)]

extern crate mallocator;

/// No panic is reachable on valid input; one that happens anyway (a broken
/// invariant) must not allocate on its way out, as std's hook would (it
/// formats the message and may take a backtrace while an allocator lock is
/// held). One fixed line, then abort.
#[cfg(not(test))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    const LINE: &[u8] = b"mallocator: internal error (a Rust panic); aborting\n";
    // SAFETY: writes a static buffer to stderr; abort never returns.
    unsafe {
        libc::write(2, LINE.as_ptr().cast(), LINE.len());
        libc::abort()
    }
}
