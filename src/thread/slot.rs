//! The thread-local slot that holds the calling thread's heap pointer. Its
//! initial value, in every thread, is the empty heap (see `heap.rs`), so that
//! the fast paths read it without a null test.

use super::heap::Heap;

// The slot itself, one pointer in the static TLS block, initialised to the
// empty heap (the dynamic linker relocates the TLS template before any
// thread copies it). Global but hidden: other objects of a build that links
// the rlib without LTO must resolve it; the shared library does not export
// it.
macro_rules! slot {
    ($word:literal) => {
        core::arch::global_asm!(
            ".pushsection .tdata,\"awT\",@progbits",
            ".balign {size}",
            ".globl mallocator_thread_heap",
            ".hidden mallocator_thread_heap",
            ".type mallocator_thread_heap, @object",
            ".size mallocator_thread_heap, {size}",
            "mallocator_thread_heap:",
            concat!($word, " {empty}"),
            ".popsection",
            size = const size_of::<usize>(),
            empty = sym super::heap::EMPTY_HEAP,
        );
    };
}
#[cfg(target_arch = "x86_64")]
slot!(".quad");
#[cfg(target_arch = "x86")]
slot!(".long");

/// The calling thread's heap pointer.
///
/// On x86_64 it is a TLS slot declared in assembly and reached with the
/// initial-exec model: one `mov` from `fs`. Rust's `thread_local!` in a shared
/// library uses the general-dynamic model, a call to `__tls_get_addr` on every
/// access (about a fifth of a malloc+free pair: `docs/performance.md`,
/// step 2).
/// Initial-exec needs the slot in the static TLS block, which a library loaded
/// at start-up (linked or `LD_PRELOAD`) always gets, and a `dlopen`ed one gets
/// from glibc's surplus reserved for this (8 bytes here).
#[cfg(target_arch = "x86_64")]
mod imp {
    use super::Heap;

    #[inline(always)]
    pub fn get() -> *mut Heap {
        let heap: *mut Heap;
        // SAFETY: reads this thread's slot: GOTTPOFF gives its offset from
        // the thread pointer, which `fs` holds.
        unsafe {
            core::arch::asm!(
                "mov {heap}, qword ptr [rip + mallocator_thread_heap@GOTTPOFF]",
                "mov {heap}, qword ptr fs:[{heap}]",
                heap = out(reg) heap,
                options(nostack, readonly, preserves_flags, pure),
            );
        }
        heap
    }

    #[inline(always)]
    pub fn set(heap: *mut Heap) {
        // SAFETY: writes this thread's slot, as in `get`.
        unsafe {
            core::arch::asm!(
                "mov {offset}, qword ptr [rip + mallocator_thread_heap@GOTTPOFF]",
                "mov qword ptr fs:[{offset}], {heap}",
                offset = out(reg) _,
                heap = in(reg) heap,
                options(nostack, preserves_flags),
            );
        }
    }
}

/// On i686 the same slot, reached the same way; position-independent code
/// there has no `rip`-relative addressing, so the slot's offset is read
/// relative to the GOT's address, which the compiler keeps in a register for
/// its own accesses anyway (an own `call`/`pop` to find it cost two
/// instructions more: `docs/performance.md`, step 17).
#[cfg(target_arch = "x86")]
mod imp {
    use super::Heap;

    unsafe extern "C" {
        /// Defined by the linker at the start of the GOT.
        static _GLOBAL_OFFSET_TABLE_: u8;
    }

    #[inline(always)]
    pub fn get() -> *mut Heap {
        let heap: *mut Heap;
        // SAFETY: reads this thread's slot: GOTNTPOFF gives its offset from
        // the thread pointer, which `gs` holds.
        unsafe {
            core::arch::asm!(
                "movl mallocator_thread_heap@GOTNTPOFF({got}), {heap}",
                "movl %gs:({heap}), {heap}",
                got = in(reg) &raw const _GLOBAL_OFFSET_TABLE_,
                heap = out(reg) heap,
                options(att_syntax, nostack, readonly, preserves_flags, pure),
            );
        }
        heap
    }

    #[inline(always)]
    pub fn set(heap: *mut Heap) {
        // SAFETY: writes this thread's slot, as in `get`.
        unsafe {
            core::arch::asm!(
                "movl mallocator_thread_heap@GOTNTPOFF({got}), {offset}",
                "movl {heap}, %gs:({offset})",
                got = in(reg) &raw const _GLOBAL_OFFSET_TABLE_,
                offset = out(reg) _,
                heap = in(reg) heap,
                options(att_syntax, nostack, preserves_flags),
            );
        }
    }
}

/// Elsewhere, Rust's `thread_local!` (a `const` initialiser of a type without
/// Drop compiles to a plain TLS slot: no destructor registration, which would
/// call malloc).
#[cfg(not(any(target_arch = "x86_64", target_arch = "x86")))]
mod imp {
    use super::Heap;
    use core::cell::Cell;
    std::thread_local! {
        static HEAP: Cell<*mut Heap> = Cell::new(&super::super::heap::EMPTY_HEAP.0 as *const Heap as *mut Heap);
    }

    #[inline(always)]
    pub fn get() -> *mut Heap {
        HEAP.with(Cell::get)
    }

    #[inline(always)]
    pub fn set(heap: *mut Heap) {
        HEAP.with(|h| h.set(heap));
    }
}

pub use imp::{get, set};
