//! The stable fuzz driver: runs the interpreter of `mallocator_fuzz` on
//! random inputs (a seeded xorshift generator) for a given time, or on input
//! files (a libFuzzer corpus or crash file), without libFuzzer. Builds with
//! the stable toolchain, for x86_64 and i686.
//!
//! ```text
//! driver [--seconds N] [--iters N] [--seed S] [--max-len L] [--quiet] [FILE|DIR ...]
//! ```
//!
//! With FILE/DIR arguments each file is run once (a directory: every file in
//! it) and no random inputs are made unless `--seconds`/`--iters` is given too.
//!
//! The library's messages go to stderr; the driver points file descriptor 2
//! at a log file (`$FUZZ_STDERR_LOG`, default `/tmp/mallocator-fuzz-<pid>.log`),
//! emptied before each input, and checks that every bad free printed exactly
//! one `mallocator: ` line (with the right keyword) and that nothing else was
//! printed. Its own output and the failure reports go to the original
//! stderr. A failed check (panic) or a crash (SIGSEGV, SIGBUS, SIGABRT from the
//! library, SIGILL, SIGFPE) prints the input's log and saves the input as
//! `crash-<pid>.bin` (in `$FUZZ_ARTIFACTS`, default the current directory),
//! and the exit status is non-zero. `FUZZ_SELFTEST=1` corrupts the model on
//! purpose: the driver must then fail.

use mallocator_fuzz::{BadFree, Config, Hooks, run_with};
use std::ffi::CString;
use std::io::Write;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// The original stderr (a duplicate), for the driver's own messages.
static OUT_FD: AtomicI32 = AtomicI32::new(2);
/// The log that fd 2 points at.
static LOG_FD: AtomicI32 = AtomicI32::new(-1);
/// The input being run (for the crash handler).
static CUR_PTR: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static CUR_LEN: AtomicUsize = AtomicUsize::new(0);
/// The crash file's path, NUL-terminated (leaked, so the handler can use it).
static CRASH_PATH: AtomicPtr<libc::c_char> = AtomicPtr::new(std::ptr::null_mut());
/// The random input being run: its generator seed and number (0 = a file),
/// for the replay hint.
static SEED: AtomicU64 = AtomicU64::new(0);
static ITER: AtomicU64 = AtomicU64::new(0);

fn out_if(cond: bool, msg: &str) {
    if cond {
        out(msg);
    }
}

fn out(msg: &str) {
    let fd = OUT_FD.load(SeqCst);
    let mut b = msg.as_bytes();
    while !b.is_empty() {
        // SAFETY: writes from a valid buffer.
        let n = unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
        if n <= 0 {
            break;
        }
        b = &b[n as usize..];
    }
}

/// Async-signal-safe: writes the current input to the crash file and copies
/// the log to the original stderr.
fn dump_crash_state() {
    let path = CRASH_PATH.load(SeqCst);
    let (p, n) = (CUR_PTR.load(SeqCst), CUR_LEN.load(SeqCst));
    let outfd = OUT_FD.load(SeqCst);
    // SAFETY: only async-signal-safe calls on valid buffers.
    unsafe {
        let log = LOG_FD.load(SeqCst);
        if log >= 0 {
            let head = b"---- library stderr for this input ----\n";
            libc::write(outfd, head.as_ptr().cast(), head.len());
            let mut buf = [0u8; 4096];
            let mut off: libc::off_t = 0;
            let mut total = 0;
            loop {
                let r = libc::pread(log, buf.as_mut_ptr().cast(), buf.len(), off);
                if r <= 0 || total > (64 << 10) {
                    break;
                }
                libc::write(outfd, buf.as_ptr().cast(), r as usize);
                off += r as libc::off_t;
                total += r as usize;
            }
            let tail = b"---- end of library stderr ----\n";
            libc::write(outfd, tail.as_ptr().cast(), tail.len());
        }
        let iter = ITER.load(SeqCst);
        if iter > 0 {
            // The whole random sequence up to this input replays it (the
            // allocator's state depends on the inputs before).
            let mut buf = [0u8; 128];
            let mut n = 0;
            let head = b"replay (same environment): driver --seed ";
            buf[..head.len()].copy_from_slice(head);
            n += head.len();
            n += fmt_u64(SEED.load(SeqCst), &mut buf[n..]);
            buf[n..n + 9].copy_from_slice(b" --iters ");
            n += 9;
            n += fmt_u64(iter, &mut buf[n..]);
            buf[n] = b'\n';
            n += 1;
            libc::write(outfd, buf.as_ptr().cast(), n);
        }
        if !path.is_null() && !p.is_null() {
            let fd = libc::open(path, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC, 0o644);
            if fd >= 0 {
                libc::write(fd, p.cast(), n);
                libc::close(fd);
                let msg = b"input saved to ";
                libc::write(outfd, msg.as_ptr().cast(), msg.len());
                libc::write(outfd, path.cast(), libc::strlen(path));
                libc::write(outfd, b"\n".as_ptr().cast(), 1);
            }
        }
    }
}

/// Writes `v` in decimal into `out`; returns the length (no allocation).
fn fmt_u64(mut v: u64, out: &mut [u8]) -> usize {
    let mut digits = [0u8; 20];
    let mut n = 0;
    loop {
        digits[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for i in 0..n {
        out[i] = digits[n - 1 - i];
    }
    n
}

extern "C" fn on_signal(sig: libc::c_int) {
    let msg = b"\nFUZZ FAILURE: fatal signal during an input\n";
    // SAFETY: async-signal-safe calls only; then die of the same signal.
    unsafe {
        libc::write(OUT_FD.load(SeqCst), msg.as_ptr().cast(), msg.len());
        dump_crash_state();
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

fn install_handlers() {
    for sig in [libc::SIGSEGV, libc::SIGBUS, libc::SIGABRT, libc::SIGILL, libc::SIGFPE] {
        // SAFETY: the handler only makes async-signal-safe calls. An
        // alternate stack lets it run after a stack overflow too.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_ONSTACK;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    std::panic::set_hook(Box::new(|info| {
        out(&format!("\nFUZZ FAILURE: {info}\n"));
        dump_crash_state();
    }));
}

/// Checks the library's stderr (fd 2, pointed at the log).
struct StderrCheck {
    log: RawFd,
    /// The log's length after the last check: anything past it is new.
    seen: u64,
    per_kind: [usize; 4],
}

impl StderrCheck {
    fn len(&self) -> u64 {
        // SAFETY: fstat into a zeroed struct.
        unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            assert!(libc::fstat(self.log, &mut st) == 0, "fstat of the stderr log");
            st.st_size as u64
        }
    }
    fn read_from(&self, from: u64, to: u64) -> String {
        let mut buf = vec![0u8; (to - from) as usize];
        // SAFETY: reads into our buffer.
        let n = unsafe { libc::pread(self.log, buf.as_mut_ptr().cast(), buf.len(), from as libc::off_t) };
        buf.truncate(n.max(0) as usize);
        String::from_utf8_lossy(&buf).into_owned()
    }
    fn nothing_new(&mut self, when: &str) {
        let len = self.len();
        if len != self.seen {
            let text = self.read_from(self.seen, len);
            panic!("unexpected output on stderr {when}: {text:?}");
        }
    }
    fn reset(&mut self) {
        // SAFETY: truncates our log (O_APPEND: writes continue at the end).
        unsafe { libc::ftruncate(self.log, 0) };
        self.seen = 0;
    }
}

impl Hooks for StderrCheck {
    fn before_bad_free(&mut self) {
        self.nothing_new("during good operations");
    }
    fn after_bad_free(&mut self, kind: BadFree, p: usize) {
        let len = self.len();
        let text = self.read_from(self.seen, len);
        self.seen = len;
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines.len() == 1 && lines[0].starts_with("mallocator: ") && text.ends_with('\n'),
            "{kind:?} free of {p:#x}: expected one 'mallocator: ' line on stderr, got {text:?}"
        );
        let lower = lines[0].to_ascii_lowercase();
        // Only foreign pointers have one right answer. A double free of a
        // block whose memory was unmapped or reused meanwhile is an invalid
        // free; an interior page of a live large block that covers an old
        // free run's tombstone is reported as a double free (src/large.rs).
        let ok = match kind {
            BadFree::Foreign => lower.contains("invalid free (foreign pointer)"),
            BadFree::Double | BadFree::Interior | BadFree::Wild => {
                lower.contains("invalid free") || lower.contains("double free")
            }
        };
        assert!(ok, "{kind:?} free of {p:#x}: unexpected report {:?}", lines[0]);
        assert!(lower.contains("ignored"), "{kind:?} free of {p:#x}: report does not say ignored: {:?}", lines[0]);
        self.per_kind[kind as usize] += 1;
    }
    fn after_input(&mut self) {
        self.nothing_new("after the input's last bad free");
    }
}

/// xorshift64*.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn usage() -> ! {
    eprintln!("usage: driver [--seconds N] [--iters N] [--seed S] [--max-len L] [--quiet] [FILE|DIR ...]");
    std::process::exit(2);
}

fn collect(path: &Path, files: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            collect(&e, files);
        }
    } else {
        files.push(path.to_path_buf());
    }
}

fn main() {
    let mut seconds: Option<f64> = None;
    let mut iters: Option<u64> = None;
    let mut seed: Option<u64> = None;
    let mut max_len = 2048usize;
    let mut quiet = false;
    let mut paths = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--seconds" => seconds = Some(val().parse().unwrap_or_else(|_| usage())),
            "--iters" => iters = Some(val().parse().unwrap_or_else(|_| usage())),
            "--seed" => seed = Some(val().parse().unwrap_or_else(|_| usage())),
            "--max-len" => max_len = val().parse().unwrap_or_else(|_| usage()),
            "--quiet" => quiet = true,
            "-h" | "--help" => usage(),
            s if s.starts_with('-') => usage(),
            _ => paths.push(PathBuf::from(a)),
        }
    }
    if std::env::var("MALLOCATOR_ON_ERROR").is_ok_and(|v| v == "abort") {
        eprintln!("driver: unset MALLOCATOR_ON_ERROR: the fuzzer makes bad frees on purpose");
        std::process::exit(2);
    }
    let random = seconds.is_some() || iters.is_some() || paths.is_empty();
    let seconds = seconds.unwrap_or(if iters.is_some() { f64::INFINITY } else { 10.0 });
    let seed = seed.unwrap_or_else(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        t.as_nanos() as u64 ^ ((std::process::id() as u64) << 32)
    });
    let cfg = Config::from_env();
    let bits = usize::BITS;
    let secure = std::env::var("MALLOCATOR_SECURE").unwrap_or_default();
    let pid = std::process::id();

    // The crash file, and stderr pointed at the log.
    let artifacts = PathBuf::from(std::env::var("FUZZ_ARTIFACTS").unwrap_or_else(|_| ".".into()));
    let crash = CString::new(artifacts.join(format!("crash-{pid}.bin")).to_string_lossy().into_owned()).unwrap();
    CRASH_PATH.store(crash.into_raw(), SeqCst);
    let log_path = std::env::var("FUZZ_STDERR_LOG").unwrap_or_else(|_| format!("/tmp/mallocator-fuzz-{pid}.log"));
    let log_c = CString::new(log_path.clone()).unwrap();
    // SAFETY: plain descriptor calls.
    let log = unsafe {
        let saved = libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 10);
        assert!(saved >= 0, "dup of stderr");
        OUT_FD.store(saved, SeqCst);
        let log = libc::open(log_c.as_ptr(), libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC | libc::O_APPEND, 0o644);
        assert!(log >= 0, "cannot open {log_path}");
        assert!(libc::dup2(log, 2) == 2, "dup2 onto stderr");
        LOG_FD.store(log, SeqCst);
        log
    };
    install_handlers();
    let mut hooks = StderrCheck { log, seen: 0, per_kind: [0; 4] };

    out(&format!(
        "driver: {bits}-bit, MALLOCATOR_SECURE={secure:?}, selftest {}, seed {seed}, max-len {max_len}, \
         {} s, library stderr -> {log_path}\n",
        cfg.selftest,
        if seconds.is_finite() { format!("{seconds}") } else { "unbounded".into() }
    ));

    let run_one = |data: &[u8], hooks: &mut StderrCheck| {
        CUR_PTR.store(data.as_ptr().cast_mut(), SeqCst);
        CUR_LEN.store(data.len(), SeqCst);
        hooks.reset();
        run_with(data, cfg, hooks);
    };

    let start = Instant::now();
    let mut runs = 0u64;
    let mut bytes = 0u64;

    // Files first (a corpus or a crash to reproduce).
    let mut files = Vec::new();
    for p in &paths {
        collect(p, &mut files);
    }
    for f in &files {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("reading {}: {e}", f.display()));
        out_if(files.len() <= 20, &format!("driver: {}\n", f.display()));
        run_one(&data, &mut hooks);
        runs += 1;
        bytes += data.len() as u64;
    }
    if !files.is_empty() {
        out(&format!("driver: {} input files ok\n", files.len()));
    }

    if random {
        SEED.store(seed, SeqCst);
        let mut rng = Rng(seed | 1);
        let limit = Duration::from_secs_f64(seconds.min(1e9));
        let mut data = Vec::with_capacity(max_len);
        let mut n = 0u64;
        let mut last_report = Instant::now();
        while start.elapsed() < limit && iters.is_none_or(|i| n < i) {
            // Mostly short inputs (many fresh starts), some long ones.
            let len = match rng.next() % 4 {
                0 => 1 + rng.next() as usize % 64,
                1 | 2 => 1 + rng.next() as usize % 512,
                _ => 1 + rng.next() as usize % max_len.max(1),
            };
            data.clear();
            while data.len() < len {
                data.extend_from_slice(&rng.next().to_le_bytes());
            }
            data.truncate(len);
            n += 1;
            ITER.store(n, SeqCst);
            run_one(&data, &mut hooks);
            runs += 1;
            bytes += len as u64;
            if !quiet && last_report.elapsed() >= Duration::from_secs(5) {
                last_report = Instant::now();
                out(&format!("driver: {:.0} s, {runs} inputs\n", start.elapsed().as_secs_f64()));
            }
        }
    }

    let s = mallocator::stats::snapshot();
    let k = hooks.per_kind;
    out(&format!(
        "driver: OK: {runs} inputs ({bytes} bytes) in {:.1} s ({bits}-bit, MALLOCATOR_SECURE={secure:?}); \
         bad frees reported: double {}, foreign {}, interior {}, wild {}; \
         small/large/huge allocations {}/{}/{}, remote frees {}, peak mapped {} MiB\n",
        start.elapsed().as_secs_f64(),
        k[0],
        k[1],
        k[2],
        k[3],
        s.small_allocations,
        s.large_allocations,
        s.huge_allocations,
        s.remote_frees,
        s.peak_mapped_bytes >> 20,
    ));
    let _ = std::io::stdout().flush();
    // Drop the log (it is only kept for a failing input).
    let _ = std::fs::remove_file(&log_path);
}
