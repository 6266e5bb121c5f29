//! The walk of a stack by DWARF rules (x86): libgcc's unwinder finds and
//! interprets the call-frame information afresh for every frame of every
//! stack (13,500 instructions for a stack of 8 frames on `workset_mixed`);
//! here the rules [`cfi`] derives for a return address are kept in a small
//! table, so a stack through code sampled before costs a lookup and two or
//! three loads a frame. A frame those rules cannot follow (a signal frame,
//! a general DWARF expression, code without an FDE) leaves the whole stack
//! to libgcc ([`super::stack`]), so that both give the same frames.
//!
//! The table trusts what it learnt of an address for the life of the
//! process: a library `dlclose`d while profiling, and another mapped where
//! its code was, could be walked by stale rules (sampled stacks there would
//! be wrong, and a read could fault). Programs that unload code while
//! profiled should set a rate that samples little.

use super::cfi::{self, Base, Saved, Verdict};
use super::store::MAX_FRAMES;
use crate::sys::lock::SpinLock;

static RULES: SpinLock<Rules> = SpinLock::new(Rules::new());

/// Return addresses whose rules are kept (a table of at most 32 KiB,
/// touched only when profiling): the python stacks of the profile test
/// (`test/profile/flame.py`) pass through some 250 distinct ones (counted
/// in its profile's locations); a C workload's hot paths, a few dozen.
const RULE_SLOTS: usize = 1024;

const _: () = assert!(size_of::<(usize, Verdict)>() <= 32);

/// A two-way set-associative table of verdicts by return address (0: an
/// empty slot; no walk looks one up), the more recently used of a pair
/// first. Direct-mapped, two return addresses of every sampled stack that
/// fell on one slot derived their rules again at each sample: after a
/// change of code layout, 5,600 instead of 900 instructions a walk on
/// `large_blocks` (i686, callgrind).
struct Rules {
    slots: [(usize, Verdict); RULE_SLOTS],
}

impl Rules {
    const fn new() -> Rules {
        Rules { slots: [(0, Verdict::End); RULE_SLOTS] }
    }

    fn verdict(&mut self, ra: usize) -> Verdict {
        // Fibonacci hashing of the low 32 bits: code addresses differ there.
        let i = ((ra as u32).wrapping_mul(0x9e37_79b9) >> (32 - RULE_SLOTS.trailing_zeros())) as usize & !1;
        if self.slots[i].0 == ra {
            return self.slots[i].1;
        }
        if self.slots[i + 1].0 != ra {
            // The less recently used of the pair goes.
            self.slots[i + 1] = (ra, cfi::verdict(ra));
        }
        self.slots.swap(i, i + 1);
        self.slots[i].1
    }
}

/// The registers a walk follows, as they are in one frame (`bp: None`
/// once a frame's rules lost it).
#[derive(Clone, Copy)]
struct Regs {
    pc: usize,
    sp: usize,
    bp: Option<usize>,
}

/// A frame whose rule reads the frame pointer, which a frame below lost.
struct Lost;

impl Regs {
    /// The calling function's, at this point of it (inlined, so the rules
    /// found for `pc` describe `sp` and `bp`).
    #[inline(always)]
    fn here() -> Regs {
        let (pc, sp, bp): (usize, usize, usize);
        // SAFETY: reads three registers; writes only the outputs.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            core::arch::asm!(
                "lea {pc}, [rip]",
                "mov {sp}, rsp",
                "mov {bp}, rbp",
                pc = out(reg) pc, sp = out(reg) sp, bp = out(reg) bp,
                options(nomem, nostack, preserves_flags),
            );
        }
        // SAFETY: as above; the call pushes and the pop takes back one word
        // (i386 has no pc-relative `lea`).
        #[cfg(target_arch = "x86")]
        unsafe {
            core::arch::asm!(
                "call 2f",
                "2: pop {pc}",
                "mov {sp}, esp",
                "mov {bp}, ebp",
                pc = out(reg) pc, sp = out(reg) sp, bp = out(reg) bp,
                options(preserves_flags),
            );
        }
        Regs { pc, sp, bp: Some(bp) }
    }

    /// The caller's registers by `rule`, or `None` where the walk ends:
    /// the CFA does not climb the stack (which grows down), or there is no
    /// return address.
    ///
    /// # Safety
    /// `rule` is the rule of the code at `self.pc`, whose frame is live
    /// with these register values: the words it names lie in that frame.
    unsafe fn caller(&self, rule: cfi::Rule) -> Result<Option<Regs>, Lost> {
        let read = |at: usize| {
            // SAFETY: per the contract, the rule names words of the live
            // stack (or, for a deref CFA, of its frame).
            unsafe { (at as *const usize).read_unaligned() }
        };
        let base = |b: Base, cfa: usize| match b {
            Base::Sp => Ok(self.sp),
            Base::Bp => self.bp.ok_or(Lost),
            Base::Cfa => Ok(cfa),
        };
        let at = |b: Base, off: i32, cfa: usize| Ok(read(base(b, cfa)?.wrapping_add_signed(off as isize)));
        let mut cfa = base(rule.cfa.base, 0)?.wrapping_add_signed(rule.cfa.offset as isize);
        if rule.cfa.deref {
            cfa = read(cfa);
        }
        if cfa <= self.sp {
            return Ok(None);
        }
        let pc = match rule.ra {
            Saved::At(b, off) => at(b, off, cfa)?,
            Saved::Same | Saved::Undefined => 0,
        };
        let bp = match rule.bp {
            Saved::Same => self.bp,
            Saved::Undefined => None,
            Saved::At(b, off) => Some(at(b, off, cfa)?),
        };
        Ok((pc != 0).then_some(Regs { pc, sp: cfa, bp }))
    }
}

/// The walk by kept rules; `None` if a frame needs libgcc.
#[inline(never)]
pub fn by_rules(out: &mut [usize; MAX_FRAMES]) -> Option<usize> {
    let mut regs = Regs::here();
    let mut rules = RULES.lock();
    out[0] = regs.pc;
    let mut n = 1;
    while n < MAX_FRAMES {
        let rule = match rules.verdict(regs.pc) {
            Verdict::Frame(rule) => rule,
            Verdict::End => break,
            Verdict::Unsupported => return None,
        };
        // SAFETY: `rule` is the rule of `regs.pc`, the code of the frame
        // these registers are of (the first, by `Regs::here`; each next,
        // by the rule of the one before).
        match unsafe { regs.caller(rule) } {
            Ok(Some(next)) => regs = next,
            Ok(None) => break,
            Err(Lost) => return None,
        }
        out[n] = regs.pc;
        n += 1;
    }
    Some(n)
}

/// Holds the table's lock across `fork` (see [`crate::api::fork`]).
pub fn lock_for_fork() {
    RULES.lock_forever();
}

/// # Safety
/// After [`lock_for_fork`], in the parent or the child.
pub unsafe fn unlock_after_fork() {
    // SAFETY: per the contract.
    unsafe { RULES.force_unlock() };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiler::stack::{by_libgcc, capture};
    use core::ffi::c_int;
    use core::sync::atomic::{AtomicPtr, Ordering};
    use std::hint::black_box;

    /// How many outermost frames two stacks share.
    fn common_tail(a: &[usize], b: &[usize]) -> usize {
        a.iter().rev().zip(b.iter().rev()).take_while(|(x, y)| x == y).count()
    }

    /// libgcc's walk has at most one frame more than ours before the
    /// caller's: an interposed `backtrace` (ThreadSanitizer has one).
    const INTERPOSED: usize = 1;

    /// Both walks from one function: past their first two frames (each in
    /// its own function, then the call here), the same addresses. Returns
    /// their number.
    #[inline(never)]
    fn same_as_libgcc() -> usize {
        let (mut a, mut b) = ([0; MAX_FRAMES], [0; MAX_FRAMES]);
        let n = by_rules(&mut a).expect("the walk by rules goes through");
        let m = by_libgcc(&mut b);
        let (ours, theirs) = (&a[2..n], &b[..m]);
        let shared = common_tail(ours, theirs);
        assert!(shared == ours.len() && m - shared <= 2 + INTERPOSED, "our frames {ours:x?}, libgcc's {theirs:x?}");
        shared
    }

    #[inline(never)]
    fn deep(depth: u32, f: &mut dyn FnMut()) {
        if depth == 0 {
            f();
        } else {
            deep(depth - 1, f);
        }
        black_box(depth);
    }

    /// A frame that realigns the stack (its CFA from the frame pointer).
    #[inline(never)]
    fn realigned(f: &mut dyn FnMut()) {
        #[repr(align(256))]
        struct Aligned([u8; 256]);
        let a = Aligned([1; 256]);
        black_box(&a.0);
        f();
        black_box(&a.0);
    }

    #[test]
    fn stacks_walked_by_rules_match_libgccs() {
        let mut frames = 0;
        deep(5, &mut || frames = same_as_libgcc());
        let mut deeper = 0;
        deep(5, &mut || realigned(&mut || deep(3, &mut || deeper = same_as_libgcc())));
        assert!(deeper >= frames + 4, "{deeper} frames through the realigned one, {frames} without");
        // Again, from the kept rules.
        deep(5, &mut || assert_eq!(same_as_libgcc(), frames));
        let on_thread = std::thread::spawn(|| {
            let mut n = 0;
            deep(2, &mut || n = same_as_libgcc());
            n
        });
        assert!(on_thread.join().unwrap() >= 3);
    }

    #[test]
    fn a_signal_frame_is_left_to_libgcc() {
        /// What the handler saw: whether the walk by rules went through,
        /// then `capture`'s frames and libgcc's, with their counts.
        struct Seen {
            by_rules: bool,
            ours: [usize; MAX_FRAMES],
            n: usize,
            theirs: [usize; MAX_FRAMES],
            m: usize,
        }
        static SEEN: AtomicPtr<Seen> = AtomicPtr::new(core::ptr::null_mut());
        // Neither allocates nor locks (ThreadSanitizer reports a malloc in
        // a signal handler): the handler writes into the test's frame.
        extern "C" fn handler(_: c_int) {
            // SAFETY: the test stores a pointer to its own `Seen`, alive
            // until the signal it raises has been handled.
            let seen = unsafe { &mut *SEEN.load(Ordering::Acquire) };
            seen.by_rules = by_rules(&mut seen.ours).is_some();
            seen.n = capture(&mut seen.ours);
            seen.m = by_libgcc(&mut seen.theirs);
        }
        let mut seen = Seen { by_rules: true, ours: [0; MAX_FRAMES], n: 0, theirs: [0; MAX_FRAMES], m: 0 };
        SEEN.store(&mut seen, Ordering::Release);
        // libgcc's first walk loads libgcc_s, which allocates: not in the
        // handler.
        by_libgcc(&mut [0; MAX_FRAMES]);
        // SAFETY: a handler for a signal only this thread raises, restored
        // after.
        unsafe {
            let mut act: libc::sigaction = core::mem::zeroed();
            act.sa_sigaction = handler as extern "C" fn(c_int) as usize;
            let mut old: libc::sigaction = core::mem::zeroed();
            assert_eq!(libc::sigaction(libc::SIGUSR2, &act, &mut old), 0);
            assert_eq!(libc::raise(libc::SIGUSR2), 0);
            libc::sigaction(libc::SIGUSR2, &old, core::ptr::null_mut());
        }
        SEEN.store(core::ptr::null_mut(), Ordering::Release);
        assert!(!seen.by_rules, "the walk by rules stops at the signal frame");
        let (ours, theirs) = (&seen.ours[..seen.n], &seen.theirs[..seen.m]);
        // Past the handler's frame, `capture` gives libgcc's frames.
        let shared = common_tail(ours, theirs);
        assert!(shared + 2 + INTERPOSED >= theirs.len(), "capture {ours:x?}, libgcc {theirs:x?}");
        assert!(shared > 4, "the walk crosses the signal frame");
    }
}
