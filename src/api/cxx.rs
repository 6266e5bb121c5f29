//! C++'s `operator new` and `operator delete` (plain, array, nothrow, sized
//! and aligned forms), so that a preloaded C++ program reaches the allocator
//! without going through libstdc++'s operators and their call to `malloc`
//! (as tcmalloc and mimalloc export them).
//!
//! A throwing `new` that finds no memory follows the standard: it calls the
//! installed new-handler (`std::get_new_handler`) and tries again, and with
//! no handler throws `std::bad_alloc`. Rust cannot throw a C++ exception,
//! and an exception must not unwind through Rust frames (this library is
//! built with `panic = "abort"`), so the throwing operators are naked
//! functions: they call into Rust for the block, and when there is none,
//! leave their own frame and *jump* to libstdc++'s `std::__throw_bad_alloc`,
//! so that the exception starts as if the program's own call to `new` had
//! thrown it. Both libstdc++ functions are looked up with `dlsym` when first
//! needed (a C++ program has libstdc++ loaded; without it there is no handler,
//! and a failed throwing `new` aborts with a report).
//!
//! Not supported: a new-handler that itself throws (the standard allows
//! `std::bad_alloc` from it) unwinds through Rust frames, which aborts the
//! process.
//!
//! Itanium C++ ABI names; `size_t` is `m` (unsigned long) on x86_64 and `j`
//! (unsigned int) on i686.

use crate::api::alloc;
use crate::api::malloc::{free, malloc};
use core::ffi::{CStr, c_void};
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// `operator new` and `operator new[]`: a block, or null once the
/// new-handler is out of ideas (then the caller throws).
extern "C" fn new_block(size: usize) -> *mut c_void {
    let p = malloc(size);
    if p.is_null() { retry(|| malloc(size)) } else { p }
}

/// The aligned forms (`std::align_val_t`): alignment of at least a word, as
/// `posix_memalign` wants.
extern "C" fn new_aligned(size: usize, align: usize) -> *mut c_void {
    let attempt = || alloc::alloc(size, align.max(size_of::<usize>())).cast::<c_void>();
    let p = attempt();
    if p.is_null() { retry(attempt) } else { p }
}

/// Calls the new-handler while there is one and `attempt` finds no memory.
#[cold]
fn retry(attempt: impl Fn() -> *mut c_void) -> *mut c_void {
    loop {
        let handler = new_handler();
        if handler == 0 {
            return core::ptr::null_mut();
        }
        // SAFETY: `handler` is the program's `std::new_handler`, a
        // `void (*)()`; it may free memory, install another handler, or not
        // return.
        unsafe { core::mem::transmute::<usize, extern "C" fn()>(handler)() };
        let p = attempt();
        if !p.is_null() {
            return p;
        }
    }
}

/// libstdc++'s functions, looked up once (0: not looked up, 1: absent).
static GET_NEW_HANDLER: AtomicUsize = AtomicUsize::new(0);
static THROW_BAD_ALLOC: AtomicUsize = AtomicUsize::new(0);

/// The address of a function of the program's libstdc++, or 0.
fn libstdcxx(cache: &AtomicUsize, name: &CStr) -> usize {
    let mut f = cache.load(Relaxed);
    if f == 0 {
        // SAFETY: `name` is a C string; RTLD_DEFAULT searches the process.
        f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) } as usize;
        f = f.max(1);
        cache.store(f, Relaxed);
    }
    if f == 1 { 0 } else { f }
}

/// The installed `std::new_handler`, or 0.
fn new_handler() -> usize {
    match libstdcxx(&GET_NEW_HANDLER, c"_ZSt15get_new_handlerv") {
        0 => 0,
        // SAFETY: `std::get_new_handler` takes nothing and returns the
        // handler (a function pointer, or null).
        get => unsafe { core::mem::transmute::<usize, extern "C" fn() -> usize>(get)() },
    }
}

/// Where a throwing `new` that got null jumps to: `std::__throw_bad_alloc`
/// (it never returns), or, without libstdc++, a report and abort.
extern "C" fn bad_alloc_thrower() -> usize {
    match libstdcxx(&THROW_BAD_ALLOC, c"_ZSt17__throw_bad_allocv") {
        0 => {
            crate::sys::errno::write_fd(
                2,
                b"mallocator: operator new: out of memory, and no std::bad_alloc to throw; aborting\n",
            );
            // SAFETY: abort never returns.
            unsafe { libc::abort() }
        }
        throw => throw,
    }
}

/// A throwing `operator new` whose block comes from `$block` called with
/// the same arguments (the size, and for the aligned forms the alignment).
macro_rules! throwing_new {
    ($name:ident = $symbol:expr, $block:ident, $($arg:ident),+) => {
        #[unsafe(export_name = $symbol)]
        #[unsafe(naked)]
        pub extern "C" fn $name($($arg: usize),+) -> *mut c_void {
            // The CFI directives give the function its unwind table entry
            // (rustc writes none for a naked function): the heap profiler's
            // stack walk, debuggers and exceptions unwind through it to the
            // program's call of `new`.
            #[cfg(target_arch = "x86_64")]
            core::arch::naked_asm!(
                ".cfi_startproc",
                // The arguments are in registers; the push keeps the stack
                // 16-aligned for the call.
                "push rdi",
                ".cfi_adjust_cfa_offset 8",
                "call {block}",
                "pop rdi",
                ".cfi_adjust_cfa_offset -8",
                "test rax, rax",
                "jz 2f",
                "ret",
                "2:",
                "push rdi",
                ".cfi_adjust_cfa_offset 8",
                "call {thrower}",
                "pop rdi",
                ".cfi_adjust_cfa_offset -8",
                "jmp rax",
                ".cfi_endproc",
                block = sym $block,
                thrower = sym bad_alloc_thrower,
            );
            #[cfg(target_arch = "x86")]
            core::arch::naked_asm!(
                ".cfi_startproc",
                // At entry esp is 12 mod 16: padding and the copied
                // arguments make it 0 at the call. After the padding the
                // last argument is at esp + 12, and after each push the one
                // before it.
                "sub esp, {pad}",
                ".cfi_adjust_cfa_offset {pad}",
                $(concat!("push dword ptr [esp + 12] # ", stringify!($arg)), ".cfi_adjust_cfa_offset 4",)+
                "call {block}",
                "add esp, 12",
                ".cfi_adjust_cfa_offset -12",
                "test eax, eax",
                "jz 2f",
                "ret",
                "2:",
                "sub esp, 12",
                ".cfi_adjust_cfa_offset 12",
                "call {thrower}",
                "add esp, 12",
                ".cfi_adjust_cfa_offset -12",
                "jmp eax",
                ".cfi_endproc",
                pad = const 12 - 4 * [$(stringify!($arg)),+].len(),
                block = sym $block,
                thrower = sym bad_alloc_thrower,
            );
        }
    };
}

/// The nothrow forms: null instead of `std::bad_alloc`.
macro_rules! nothrow_new {
    ($name:ident = $symbol:expr, $block:ident, $($arg:ident),+) => {
        #[unsafe(export_name = $symbol)]
        pub extern "C" fn $name($($arg: usize,)+ _nothrow: *const c_void) -> *mut c_void {
            $block($($arg),+)
        }
    };
}

/// `operator delete` in all its forms: the size and alignment a sized or
/// aligned `delete` passes are not needed (a block's page knows both).
macro_rules! delete {
    ($name:ident = $symbol:expr $(, $extra:ident: $ty:ty)*) => {
        /// # Safety
        /// As `free`: `p` is null or a block of ours that nobody uses
        /// afterwards.
        #[unsafe(export_name = $symbol)]
        pub unsafe extern "C" fn $name(p: *mut c_void $(, $extra: $ty)*) {
            $(let _ = $extra;)*
            // SAFETY: per the contract.
            unsafe { free(p) }
        }
    };
}

/// `size_t` in the Itanium mangling: `unsigned long` on x86_64, `unsigned
/// int` on i686.
#[cfg(target_pointer_width = "64")]
macro_rules! size_t {
    () => {
        "m"
    };
}
#[cfg(target_pointer_width = "32")]
macro_rules! size_t {
    () => {
        "j"
    };
}

throwing_new!(new = concat!("_Znw", size_t!()), new_block, size);
throwing_new!(new_array = concat!("_Zna", size_t!()), new_block, size);
throwing_new!(new_with_alignment = concat!("_Znw", size_t!(), "St11align_val_t"), new_aligned, size, align);
throwing_new!(new_array_aligned = concat!("_Zna", size_t!(), "St11align_val_t"), new_aligned, size, align);
nothrow_new!(new_nothrow = concat!("_Znw", size_t!(), "RKSt9nothrow_t"), new_block, size);
nothrow_new!(new_array_nothrow = concat!("_Zna", size_t!(), "RKSt9nothrow_t"), new_block, size);
nothrow_new!(
    new_aligned_nothrow = concat!("_Znw", size_t!(), "St11align_val_tRKSt9nothrow_t"),
    new_aligned,
    size,
    align
);
nothrow_new!(
    new_array_aligned_nothrow = concat!("_Zna", size_t!(), "St11align_val_tRKSt9nothrow_t"),
    new_aligned,
    size,
    align
);
delete!(delete = "_ZdlPv");
delete!(delete_array = "_ZdaPv");
delete!(delete_nothrow = "_ZdlPvRKSt9nothrow_t", nothrow: *const c_void);
delete!(delete_array_nothrow = "_ZdaPvRKSt9nothrow_t", nothrow: *const c_void);
delete!(delete_sized = concat!("_ZdlPv", size_t!()), size: usize);
delete!(delete_array_sized = concat!("_ZdaPv", size_t!()), size: usize);
delete!(delete_aligned = "_ZdlPvSt11align_val_t", align: usize);
delete!(delete_array_aligned = "_ZdaPvSt11align_val_t", align: usize);
delete!(delete_sized_aligned = concat!("_ZdlPv", size_t!(), "St11align_val_t"), size: usize, align: usize);
delete!(delete_array_sized_aligned = concat!("_ZdaPv", size_t!(), "St11align_val_t"), size: usize, align: usize);
delete!(delete_aligned_nothrow = "_ZdlPvSt11align_val_tRKSt9nothrow_t", align: usize, nothrow: *const c_void);
delete!(delete_array_aligned_nothrow = "_ZdaPvSt11align_val_tRKSt9nothrow_t", align: usize, nothrow: *const c_void);
