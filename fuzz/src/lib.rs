//! The fuzzing interpreter: turns an arbitrary byte string into a sequence of
//! allocator operations, runs them against Mallocator's Rust API
//! (`mallocator::alloc`), and checks every result against a model of the live
//! blocks. Shared by the libFuzzer target (`fuzz_targets/ops.rs`) and the
//! stable driver (`src/bin/driver.rs`).
//!
//! Operations: allocations of every size kind (small classes, large regions,
//! huge mappings), with and without alignment, zeroed allocations, frees,
//! reallocs (growing, shrinking, across kinds, with alignment), frees from
//! another thread, a small block freed by two threads at once (one free takes
//! effect, one report), `usable_size`, and the bad frees the library must report
//! and ignore: double frees of freed blocks, foreign pointers (stack, static,
//! system heap), interior pointers of live blocks and wild pointers near our
//! memory.
//!
//! Checks (a failure panics, which the fuzzer reports as a crash):
//! - results are non-null, aligned as documented, at least as large as asked
//!   (`usable_size`), and never overlap another live block;
//! - every block keeps the pattern written into it until it is freed (checked
//!   before each free and realloc, and on `Op::VerifyAll`); a realloc keeps
//!   the old contents up to the smaller size; zeroed blocks read as zero;
//! - a bad free does not change any live block (the next verification would
//!   see it), and with a [`Hooks`] that watches stderr, each bad free prints
//!   exactly one `mallocator: ` line and each good operation none;
//! - when the input is done and everything is freed, the statistics say no
//!   small, large or huge bytes are live.
//!
//! The library must be linked without its `malloc` feature: then every block
//! of Mallocator in the process is one this model holds, which is what makes
//! a double free of a freed (and not reused) pointer, or a wild free that
//! misses every live block, a well-defined test instead of a real bug.

use mallocator::alloc::{alloc, alloc_zeroed, free, realloc, usable_size};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

/// The smallest alignment of every block.
const MIN_ALIGN: usize = 8;
/// The largest small class; blocks above are page aligned.
const MAX_SMALL: usize = 16 * 1024;
/// The segment size: 4 MiB on 64-bit, 2 MiB on 32-bit.
const SEGMENT: usize = if usize::BITS == 64 { 4 << 20 } else { 2 << 20 };
/// The largest block of the large pool (a quarter of an 8-segment large
/// segment: 8 MiB on 64-bit, 4 MiB on 32-bit); larger ones get a mapping.
const LARGE_MAX: usize = 2 * SEGMENT;
/// The largest alignment of a block with a mapping of its own (half a
/// segment: 2 MiB on 64-bit, 1 MiB on 32-bit).
const MAPPED_MAX_ALIGN: usize = SEGMENT / 2;

/// Whether the library refuses (returns null for) `size` bytes aligned to
/// `align`: the pool aligns up to `LARGE_MAX` blocks of up to `LARGE_MAX`,
/// mappings up to `MAPPED_MAX_ALIGN`.
fn alignment_refused(size: usize, align: usize) -> bool {
    let pooled = size <= LARGE_MAX && align <= LARGE_MAX;
    align > MAPPED_MAX_ALIGN && !pooled
}
/// Live bytes the model allows at once (huge blocks are refused above it):
/// keeps one input's memory bounded, on 32-bit too.
const LIVE_BUDGET: usize = if usize::BITS == 64 { 96 << 20 } else { 48 << 20 };
/// At most this many live blocks (further allocations free one first).
const MAX_LIVE: usize = 4096;
/// Freed addresses remembered for double frees and wild pointers.
const MAX_FREED: usize = 64;
/// Blocks up to this size are written and checked in full; larger ones at
/// sampled positions (see [`positions`]).
const FULL_CHECK: usize = 64 * 1024;

/// What kind of bad free was made (for the stderr check).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadFree {
    /// A block freed before (and not handed out since).
    Double,
    /// A stack, static or system-heap pointer.
    Foreign,
    /// A pointer into the middle of a live block.
    Interior,
    /// Any pointer near our memory that is not a live block.
    Wild,
}

/// Callbacks around the calls that must, or must not, print on stderr.
pub trait Hooks {
    /// Before a bad free.
    fn before_bad_free(&mut self) {}
    /// After it: the library must have printed exactly one line.
    fn after_bad_free(&mut self, _kind: BadFree, _p: usize) {}
    /// After the whole input: nothing else may have been printed.
    fn after_input(&mut self) {}
}

/// Hooks that check nothing (the libFuzzer target: stderr is libFuzzer's).
pub struct NoHooks;
impl Hooks for NoHooks {}

/// Options of a run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Config {
    /// Self-test: corrupt the model on purpose (a recorded pattern seed is
    /// changed after the first allocation), so that the next content check
    /// fails. `FUZZ_SELFTEST=1` sets it; a fuzzer that then does not fail is
    /// broken.
    pub selftest: bool,
    /// Print every operation on stdout (`FUZZ_TRACE=1`), to read what a
    /// failing input does.
    pub trace: bool,
}

impl Config {
    /// From the environment (`FUZZ_SELFTEST`).
    pub fn from_env() -> Self {
        let flag = |name| std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0");
        Config { selftest: flag("FUZZ_SELFTEST"), trace: flag("FUZZ_TRACE") }
    }
}

/// A live block as the model knows it.
#[derive(Clone, Copy, Debug)]
struct Block {
    size: usize,
    usable: usize,
    align: usize,
    seed: u32,
}

/// Reads the input as a stream of numbers; zeros once it runs out.
struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Input<'_> {
    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
}

/// The byte at offset `i` of a block filled with `seed`.
#[inline(always)]
fn pattern(seed: u32, i: usize) -> u8 {
    let x = (i as u32).wrapping_mul(0x9E37_79B1) ^ seed;
    (x ^ (x >> 13) ^ (x >> 24)) as u8
}

/// The offsets of a `size`-byte block that are written and checked: all of
/// them up to [`FULL_CHECK`]; above, the first and last 4 KiB and one byte
/// in every 4 KiB between (so each page is touched, and a block that is too
/// short, moved without its contents or overlapped is still seen).
fn positions(size: usize) -> impl Iterator<Item = usize> {
    let full = size <= FULL_CHECK;
    let head = if full { size } else { 4096 };
    let tail_start = if full { size } else { size - 4096 };
    let middle = if full { 0 } else { (tail_start - head).div_ceil(4096) };
    (0..head)
        .chain((0..middle).map(move |k| head + k * 4096 + (k * 61) % 4096).filter(move |&i| i < tail_start))
        .chain(tail_start..size)
}

fn fill(p: *mut u8, size: usize, seed: u32) {
    for i in positions(size) {
        // SAFETY: `p` is a live block of at least `size` bytes.
        unsafe { p.add(i).write_volatile(pattern(seed, i)) };
    }
}

/// Panics unless the first `len` bytes of the block at `p` (filled for
/// `size` bytes with `seed`) still hold the pattern.
fn check(p: *const u8, size: usize, len: usize, seed: u32, what: &str) {
    for i in positions(size).filter(|&i| i < len) {
        // SAFETY: `p` is a live block of at least `len` bytes.
        let got = unsafe { p.add(i).read_volatile() };
        let want = pattern(seed, i);
        assert!(
            got == want,
            "{what}: block {p:p} (size {size}) byte {i} is {got:#04x}, expected {want:#04x}: contents changed"
        );
    }
}

/// The alignment the library promises for `alloc(size, align)` (the C rules
/// of `memory.h`: at least 8, 16 for non-zero multiples of 16, 4096 above the
/// small classes) or, with `realloc`, for `realloc(p, size, align)`: a block
/// that stays in place keeps its class, so a multiple of 16 is not promised
/// 16 (the C `realloc` asks for 16-multiple classes itself).
fn promised_align(size: usize, align: usize, realloc: bool) -> usize {
    let mut a = align.max(MIN_ALIGN);
    if size > 0 && size.is_multiple_of(16) && !realloc {
        a = a.max(16);
    }
    if size > MAX_SMALL {
        a = a.max(4096);
    }
    a
}

/// Frees from another thread: one helper thread, kept for the process, that
/// frees the blocks sent to it and answers when done.
struct Remote {
    to: mpsc::Sender<usize>,
    back: mpsc::Receiver<()>,
}

fn remote_free(p: *mut u8) {
    static REMOTE: OnceLock<Mutex<Remote>> = OnceLock::new();
    let remote = REMOTE.get_or_init(|| {
        let (to, rx) = mpsc::channel::<usize>();
        let (tx, back) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("remote-free".into())
            .spawn(move || {
                for p in rx {
                    // SAFETY: the model gave this live block up to us.
                    unsafe { free(p as *mut u8) };
                    if tx.send(()).is_err() {
                        break;
                    }
                }
            })
            .expect("spawning the remote-free thread");
        Mutex::new(Remote { to, back })
    });
    let r = remote.lock().unwrap_or_else(|e| e.into_inner());
    r.to.send(p as usize).expect("remote-free thread gone");
    r.back.recv().expect("remote-free thread gone");
}

/// Small blocks freed by the helper thread, ever (in the process).
static REMOTE_SMALL: AtomicU64 = AtomicU64::new(0);

static GLOBAL_BYTES: [u8; 64] = [0; 64];

/// The model of one run.
struct Model<'h> {
    live: BTreeMap<usize, Block>,
    live_bytes: usize,
    /// Recently freed addresses (most recent last).
    freed: Vec<usize>,
    next_seed: u32,
    cfg: Config,
    corrupted: bool,
    hooks: &'h mut dyn Hooks,
    bad_frees: usize,
}

impl Model<'_> {
    fn seed(&mut self) -> u32 {
        self.next_seed = self.next_seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        self.next_seed
    }

    /// The live block containing address `a`, if any.
    fn containing(&self, a: usize) -> Option<(usize, Block)> {
        let (&start, &b) = self.live.range(..=a).next_back()?;
        (a < start + b.usable.max(1)).then_some((start, b))
    }

    /// Checks a new block (non-null, aligned, large enough, overlapping no
    /// live block), fills it and records it.
    fn add(&mut self, p: *mut u8, size: usize, align: usize, zeroed: bool, what: &str) {
        assert!(!p.is_null(), "{what}({size}, align {align}) returned null");
        let a = p as usize;
        let want = promised_align(size, align, what == "realloc");
        assert!(a.is_multiple_of(want), "{what}({size}, align {align}) = {p:p}: not {want}-aligned");
        let usable = usable_size(p);
        assert!(usable >= size, "{what}({size}, align {align}) = {p:p}: usable_size {usable} < {size}");
        assert!(usable >= size.max(1), "{what}({size}, align {align}) = {p:p}: usable_size 0");
        let end = a.checked_add(usable).expect("block wraps the address space");
        if let Some((&s, &b)) = self.live.range(..=a).next_back() {
            assert!(
                s + b.usable <= a,
                "{what}({size}, align {align}) = {p:p} overlaps live block {s:#x} (usable {})",
                b.usable
            );
        }
        if let Some((&s, &b)) = self.live.range(a..).next() {
            assert!(
                end <= s,
                "{what}({size}, align {align}) = {p:p}..{end:#x} overlaps live block {s:#x} (size {})",
                b.size
            );
        }
        if zeroed {
            for i in positions(size) {
                // SAFETY: a live block of at least `size` bytes.
                let got = unsafe { p.add(i).read_volatile() };
                assert!(got == 0, "{what}({size}) = {p:p}: byte {i} is {got:#04x}, not zero");
            }
        }
        let seed = self.seed();
        fill(p, size, seed);
        self.freed.retain(|&f| !(a..end).contains(&f));
        if self.cfg.trace {
            println!("{what}({size}, align {align}) = {p:p} (usable {usable})");
        }
        self.live.insert(a, Block { size, usable, align, seed });
        self.live_bytes += usable;
        if self.cfg.selftest && !self.corrupted && size > 0 {
            // Deliberately wrong model: the next check of this block fails.
            self.live.get_mut(&a).unwrap().seed ^= 0x5A5A_5A5A;
            self.corrupted = true;
        }
    }

    fn forget(&mut self, a: usize) -> Block {
        let b = self.live.remove(&a).expect("model: no such block");
        self.live_bytes -= b.usable;
        if self.freed.len() == MAX_FREED {
            self.freed.remove(0);
        }
        self.freed.push(a);
        b
    }

    /// The `k`-th live block (wrapping), if any.
    fn pick(&self, k: u32) -> Option<(usize, Block)> {
        if self.live.is_empty() {
            return None;
        }
        let i = k as usize % self.live.len();
        // Nearby keys are cheap to reach; for large maps, walk from the end
        // that is closer.
        let it = if i < self.live.len() / 2 {
            self.live.iter().nth(i)
        } else {
            self.live.iter().nth_back(self.live.len() - 1 - i)
        };
        it.map(|(&a, &b)| (a, b))
    }

    /// Makes room for one more block of `size` bytes; false if it cannot fit
    /// the budget even then.
    fn room(&mut self, size: usize, k: u32) -> bool {
        if size > LIVE_BUDGET / 2 {
            return false;
        }
        while self.live.len() >= MAX_LIVE || self.live_bytes + size > LIVE_BUDGET {
            let Some((a, _)) = self.pick(k) else { return false };
            self.free_block(a, false);
        }
        true
    }

    fn do_alloc(&mut self, size: usize, align: usize, zeroed: bool, k: u32) {
        if !self.room(size, k) {
            return;
        }
        let p = if zeroed { alloc_zeroed(size, align) } else { alloc(size, align) };
        if alignment_refused(size, align) {
            // Refused by design (a huge block must start in the first
            // segment-sized slot of its mapping).
            assert!(p.is_null(), "alloc({size}, align {align}) above the largest alignment returned {p:p}");
            return;
        }
        self.add(p, size, align, zeroed, if zeroed { "alloc_zeroed" } else { "alloc" });
    }

    fn free_block(&mut self, a: usize, remote: bool) {
        let b = self.live[&a];
        check(a as *const u8, b.size, b.size, b.seed, "before free");
        self.forget(a);
        if self.cfg.trace {
            println!("free({a:#x}){}", if remote { " from another thread" } else { "" });
        }
        if remote {
            // Large and huge blocks are freed at once (counted in the
            // global counters); small ones go on the owner's remote list.
            let other = |s: &mallocator::stats::MemoryStats| s.large_frees + s.huge_frees;
            let before = other(&mallocator::stats::snapshot());
            remote_free(a as *mut u8);
            if other(&mallocator::stats::snapshot()) == before {
                REMOTE_SMALL.fetch_add(1, Relaxed);
            }
        } else {
            // SAFETY: a live block the model owns.
            unsafe { free(a as *mut u8) };
        }
    }

    /// Two threads (neither of them the block's owner) free the small block
    /// `a` at once: one free takes effect, the other must print exactly one
    /// double-free line. (Large and huge blocks stay out: the second free
    /// could read a header the first one's release unmapped, a race the
    /// README lists as not guaranteed.)
    fn free_from_two_threads(&mut self, a: usize) {
        let b = self.live[&a];
        check(a as *const u8, b.size, b.size, b.seed, "before free");
        self.forget(a);
        if self.cfg.trace {
            println!("free({a:#x}) from two threads at once");
        }
        self.hooks.before_bad_free();
        let barrier = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    barrier.wait();
                    // SAFETY: the model gave the block up; the second free is
                    // the misuse under test and must only be reported.
                    unsafe { free(a as *mut u8) };
                });
            }
        });
        self.hooks.after_bad_free(BadFree::Double, a);
        self.bad_frees += 1;
        REMOTE_SMALL.fetch_add(1, Relaxed);
    }

    fn do_realloc(&mut self, a: usize, new_size: usize, align: usize) {
        let b = self.live[&a];
        check(a as *const u8, b.size, b.size, b.seed, "before realloc");
        // Room for the new size (the old block may be copied first).
        if self.live_bytes + new_size > LIVE_BUDGET || new_size > LIVE_BUDGET / 2 {
            return;
        }
        // SAFETY: a live block the model owns.
        let q = unsafe { realloc(a as *mut u8, new_size, align) };
        if self.cfg.trace {
            println!("realloc({a:#x} (size {}), {new_size}, align {align}) = {q:p}", b.size);
        }
        if alignment_refused(new_size, align) && q.is_null() {
            // Refused by design, the block unchanged (it stays live); a
            // block that already has the size may stay in place.
            check(a as *const u8, b.size, b.size, b.seed, "after a refused realloc");
            return;
        }
        assert!(!q.is_null(), "realloc({a:#x}, {new_size}, align {align}) returned null");
        // The old block is gone (or is `q`); then `q` is checked as new.
        self.live.remove(&a);
        self.live_bytes -= b.usable;
        if q as usize != a {
            if self.freed.len() == MAX_FREED {
                self.freed.remove(0);
            }
            self.freed.push(a);
        }
        check(q, b.size, b.size.min(new_size), b.seed, "after realloc");
        self.add(q, new_size, align, false, "realloc");
    }

    /// A bad free: the library must report it (one line) and change nothing.
    fn bad_free(&mut self, p: *mut u8, kind: BadFree) {
        if self.cfg.trace {
            println!("bad free ({kind:?}) of {p:p}");
        }
        self.hooks.before_bad_free();
        // SAFETY: `p` is not a live block (the callers make sure): the call
        // must only report it.
        unsafe { free(p) };
        self.hooks.after_bad_free(kind, p as usize);
        self.bad_frees += 1;
    }

    fn verify_all(&self) {
        for (&a, b) in &self.live {
            check(a as *const u8, b.size, b.size, b.seed, "verify");
            let u = usable_size(a as *const u8);
            assert!(u == b.usable, "usable_size({a:#x}) changed from {} to {u}", b.usable);
        }
    }

    fn free_all(&mut self) {
        let all: Vec<usize> = self.live.keys().copied().collect();
        for a in all {
            self.free_block(a, false);
        }
    }
}

/// A size for an allocation, by kind: small (skewed to the common sizes),
/// large, or huge.
fn size_of_kind(kind: u8, x: u32) -> usize {
    let x = x as usize;
    match kind % 8 {
        0 | 1 => x % 129,                                 // tiny, incl. 0
        2 | 3 => x % 1025,                                // fine classes
        4 => x % (MAX_SMALL + 1),                         // any small class
        5 => MAX_SMALL - 64 + x % 128,                    // around the small/large edge
        6 => MAX_SMALL + 1 + x % (LARGE_MAX + 65536),     // large, and past LARGE_MAX
        _ => (SEGMENT / 4) + x % (LARGE_MAX + (8 << 20)), // 1 MiB/512 KiB .. LARGE_MAX + 8 MiB
    }
}

/// Runs the operations of `data` with hooks, then frees everything and
/// checks the statistics. Panics on any failed check.
pub fn run_with(data: &[u8], cfg: Config, hooks: &mut dyn Hooks) {
    let mut input = Input { data, pos: 0 };
    let mut m = Model {
        live: BTreeMap::new(),
        live_bytes: 0,
        freed: Vec::new(),
        next_seed: 0x1234_5678 ^ data.len() as u32,
        cfg,
        corrupted: false,
        hooks,
        bad_frees: 0,
    };
    let mut ops = 0usize;
    while !input.done() && ops < 2000 {
        ops += 1;
        let op = input.u8();
        match op % 20 {
            // Plain allocations, weighted to small blocks.
            0..=4 => {
                let kind = input.u8();
                let size = size_of_kind(if op % 20 < 3 { kind % 5 } else { kind }, input.u32());
                m.do_alloc(size, MIN_ALIGN, false, input.u16() as u32);
            }
            // Aligned allocation: 1 .. 4 MiB alignment.
            5 => {
                let kind = input.u8();
                let size = size_of_kind(kind, input.u32());
                let align = 1usize << (input.u8() % 25);
                m.do_alloc(size, align, false, input.u16() as u32);
            }
            // Zeroed allocation.
            6 => {
                let kind = input.u8();
                let size = size_of_kind(kind, input.u32());
                let align = if input.u8() & 1 == 0 { MIN_ALIGN } else { 1usize << (input.u8() % 17) };
                m.do_alloc(size, align, true, input.u16() as u32);
            }
            // Free.
            7..=10 => {
                if let Some((a, _)) = m.pick(input.u16() as u32) {
                    m.free_block(a, false);
                }
            }
            // Realloc: grow or shrink, sometimes to another kind or alignment.
            11 | 12 => {
                let k = input.u16() as u32;
                let how = input.u8();
                let x = input.u32();
                if let Some((a, b)) = m.pick(k) {
                    let new_size = match how % 4 {
                        0 => b.size + (x as usize % 256),                         // grow a little
                        1 => b.size / (1 + (x as usize % 4)),                     // shrink
                        2 => b.size.saturating_mul(2).max(1) + (x as usize % 64), // double
                        _ => size_of_kind(how >> 2, x),                           // anything
                    };
                    let align = if how & 0x80 != 0 { 1usize << (x % 14) } else { b.align };
                    m.do_realloc(a, new_size, align);
                }
            }
            // Realloc of null allocates.
            13 => {
                let kind = input.u8();
                let size = size_of_kind(kind, input.u32());
                if m.room(size, input.u16() as u32) {
                    // SAFETY: null is always allowed.
                    let p = unsafe { realloc(core::ptr::null_mut(), size, MIN_ALIGN) };
                    m.add(p, size, MIN_ALIGN, false, "realloc(null)");
                }
            }
            // Free from another thread; or a small block freed by two other
            // threads at the same moment (exactly one free may take effect,
            // the other is reported as a double free).
            14 => {
                let twice = input.u8() & 1 != 0;
                if let Some((a, b)) = m.pick(input.u16() as u32) {
                    if twice && b.size <= MAX_SMALL && b.align <= MIN_ALIGN {
                        m.free_from_two_threads(a);
                    } else {
                        m.free_block(a, true);
                    }
                }
            }
            // Double free of a freed block that has not been handed out since.
            15 => {
                let k = input.u8() as usize;
                if !m.freed.is_empty() {
                    let f = m.freed[m.freed.len() - 1 - k % m.freed.len()];
                    if m.containing(f).is_none() {
                        m.bad_free(f as *mut u8, BadFree::Double);
                    }
                }
            }
            // Foreign pointers: stack, static, system heap.
            16 => {
                let which = input.u8();
                let local = [0xC3u8; 32];
                let boxed = Box::new([0x3Cu8; 32]);
                let p: *const u8 = match which % 3 {
                    0 => local.as_ptr(),
                    1 => GLOBAL_BYTES.as_ptr(),
                    _ => boxed.as_ptr(),
                };
                let off = (which as usize >> 2) % 32;
                m.bad_free(p.wrapping_add(off).cast_mut(), BadFree::Foreign);
                assert!(std::hint::black_box(&local).iter().all(|&b| b == 0xC3), "stack variable changed by free");
                assert!(boxed.iter().all(|&b| b == 0x3C), "system heap block changed by free");
                assert!(GLOBAL_BYTES.iter().all(|&b| b == 0), "static changed by free");
            }
            // Interior pointer of a live block.
            17 => {
                let k = input.u16() as u32;
                let off = input.u32() as usize;
                if let Some((a, b)) = m.pick(k)
                    && b.usable > 1
                {
                    let off = 1 + off % (b.usable - 1);
                    m.bad_free((a + off) as *mut u8, BadFree::Interior);
                }
            }
            // Wild pointer near our memory (segment headers, guard pages,
            // never-used blocks, unmapped gaps), missing every live block.
            18 => {
                let k = input.u16() as u32;
                let off = input.u32() as i32 as isize % (2 * SEGMENT as isize);
                let base = if input.u8() & 1 == 0 || m.freed.is_empty() {
                    m.pick(k).map(|(a, _)| a)
                } else {
                    Some(m.freed[k as usize % m.freed.len()])
                };
                if let Some(base) = base {
                    let w = base.wrapping_add_signed(off);
                    if w != 0 && m.containing(w).is_none() {
                        m.bad_free(w as *mut u8, BadFree::Wild);
                    }
                }
            }
            // usable_size and a full verification.
            _ => {
                if let Some((a, b)) = m.pick(input.u16() as u32) {
                    let u = usable_size(a as *const u8);
                    assert!(
                        u == b.usable && u >= b.size,
                        "usable_size({a:#x}) = {u}, block of {} / {}",
                        b.size,
                        b.usable
                    );
                }
                if input.u8().is_multiple_of(8) {
                    m.verify_all();
                }
            }
        }
    }
    m.verify_all();
    m.free_all();
    m.hooks.after_input();

    // Everything the model held is freed: nothing may be live, except small
    // blocks freed from the helper thread that are still on the owner heap's
    // remote list (they count as freed when the owner drains the list, on
    // its next allocation slow path; `remote_frees` counts the drained ones).
    let s = mallocator::stats::snapshot();
    let live_small: u64 = s.classes[..s.classes_used as usize].iter().map(|c| c.live_blocks).sum();
    let pending = REMOTE_SMALL.load(Relaxed).wrapping_sub(s.remote_frees);
    assert!(
        live_small == pending && s.large_live_bytes == 0 && s.huge_live_bytes == 0,
        "after freeing everything: {live_small} small blocks ({} bytes) live, {pending} of them expected \
         (freed from another thread, not yet drained); large {} bytes, huge {} bytes live",
        s.small_live_bytes,
        s.large_live_bytes,
        s.huge_live_bytes
    );
}

/// [`run_with`] without stderr checks, configured from the environment.
pub fn run(data: &[u8]) {
    static CFG: OnceLock<Config> = OnceLock::new();
    run_with(data, *CFG.get_or_init(Config::from_env), &mut NoHooks);
}
