//! Call stacks: captured when a block is sampled, and trimmed of the
//! allocator's own frames before they are stored, so that one call site is
//! one stack however the allocator reached the sample (its fast path, the
//! first request of a thread, the large path).
//!
//! Programs built without frame pointers (Debian's default) unwind only by
//! their DWARF call-frame information. On x86 the walk is [`walk`]'s, by
//! rules kept per return address; a stack it cannot follow, and every
//! stack elsewhere, goes to glibc's `backtrace` (libgcc's unwinder, as
//! jemalloc's `prof-libgcc`). Its first call loads `libgcc_s` (and
//! allocates); the sampler runs with sampling off on the calling thread
//! (`thread::heap`), so those allocations are served but never sampled,
//! and no lock of ours is held meanwhile.

use super::maps::Maps;
use super::store::MAX_FRAMES;
use crate::sys::lock::SpinLock;
use core::ffi::{c_int, c_void};

unsafe extern "C" {
    /// glibc's `execinfo.h`: return addresses, innermost first.
    fn backtrace(buffer: *mut *mut c_void, size: c_int) -> c_int;
}

/// Frames of the calling thread's stack, innermost first (the first few are
/// the allocator's, trimmed later by [`Own::trim`]).
#[inline(never)]
pub fn capture(out: &mut [usize; MAX_FRAMES]) -> usize {
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    if let Some(n) = super::walk::by_rules(out) {
        return n;
    }
    by_libgcc(out)
}

#[inline(never)]
pub(super) fn by_libgcc(out: &mut [usize; MAX_FRAMES]) -> usize {
    // SAFETY: `out` has room for MAX_FRAMES pointer-sized entries.
    let n = unsafe { backtrace(out.as_mut_ptr().cast(), MAX_FRAMES as c_int) };
    n.max(0) as usize
}

/// Where the allocator's own code lies, when it is a library of its own
/// (`libmemory.so`). Linked into a Rust program, its frames cannot be told
/// from the program's by address and stay in the stacks.
#[derive(Clone, Copy)]
pub struct Own {
    ranges: [(usize, usize); OWN_RANGES],
    n: usize,
}

/// A shared library has one executable mapping (two with a split text).
const OWN_RANGES: usize = 4;

/// [`Own`], found at the first sample: the library's code stays where it
/// was mapped (unloaded, it takes this with it).
static OWN: SpinLock<Option<Own>> = SpinLock::new(None);

impl Own {
    /// The allocator's code ranges (none if `/proc/self/maps` cannot be
    /// read; kept only once read, so that a failure, say no descriptor left
    /// for a moment, is tried again at the next sample).
    pub fn get() -> Own {
        let mut own = OWN.lock();
        if own.is_none() {
            *own = Maps::read().map(|maps| Own::find(&maps));
        }
        own.unwrap_or(Own { ranges: [(0, 0); OWN_RANGES], n: 0 })
    }

    /// Holds the lock of [`Own::get`] across `fork` (with the profile's).
    pub fn lock_for_fork() {
        OWN.lock_forever();
    }

    /// # Safety
    /// After [`Own::lock_for_fork`], in the parent or the child.
    pub unsafe fn unlock_after_fork() {
        // SAFETY: per the contract.
        unsafe { OWN.force_unlock() };
    }

    fn find(maps: &Maps) -> Own {
        let mut own = Own { ranges: [(0, 0); OWN_RANGES], n: 0 };
        let here = Own::find as fn(&Maps) -> Own as usize;
        let Some((_, mine)) = maps.find(here) else { return own };
        let mut exe = [0u8; 4096];
        // SAFETY: the buffer is valid for its length; readlink does not
        // NUL-terminate, so its length is the result.
        let n = unsafe { libc::readlink(c"/proc/self/exe".as_ptr(), exe.as_mut_ptr().cast(), exe.len()) };
        if n > 0 && exe[..n as usize] == *mine.path {
            return own;
        }
        for m in maps.code().filter(|m| m.path == mine.path) {
            if own.n < OWN_RANGES {
                own.ranges[own.n] = (m.start, m.end);
                own.n += 1;
            }
        }
        own
    }

    /// `frames` without the allocator's innermost frames (kept whole if
    /// nothing else is left).
    pub fn trim<'f>(&self, frames: &'f [usize]) -> &'f [usize] {
        let ours = |&f: &usize| self.ranges[..self.n].iter().any(|&(s, e)| (s..e).contains(&f));
        let skip = frames.iter().take_while(|f| ours(f)).count();
        if skip == frames.len() { frames } else { &frames[skip..] }
    }
}

/// The address to symbolize for a return address: inside the call
/// instruction, whose line and inlining are the caller's.
pub fn call_site(ret: usize) -> usize {
    ret.saturating_sub(1)
}
