//! Run-time options, read once from the environment at initialisation
//! (`getenv` only reads `environ`: no allocation). The README's option table
//! lists them.

use core::ffi::CStr;
use core::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// `MALLOCATOR_ON_ERROR=abort`: a bad free aborts the process instead of
/// being reported and ignored.
static ABORT_ON_ERROR: AtomicBool = AtomicBool::new(false);

pub fn init() {
    ABORT_ON_ERROR.store(env_is(c"MALLOCATOR_ON_ERROR", b"abort"), Relaxed);
}

pub fn abort_on_error() -> bool {
    ABORT_ON_ERROR.load(Relaxed)
}

fn env_is(name: &CStr, value: &[u8]) -> bool {
    // SAFETY: `name` is NUL-terminated; the result, if not null, is a
    // NUL-terminated string owned by the environment.
    unsafe {
        let v = libc::getenv(name.as_ptr());
        !v.is_null() && CStr::from_ptr(v).to_bytes() == value
    }
}
