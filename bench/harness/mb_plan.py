"""What the Mallocator benchmark runs: allocators, workloads, the order."""
import dataclasses
import glob
import os
from dataclasses import dataclass

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_DIR = os.path.dirname(BENCH_DIR)
OURS = "libmemory"
BASELINE = "glibc"
# libmemory with the heap profiler on at its default rate (--profiled): a
# column of its own, so that libmemory/libmemory+prof is the profiler's cost.
PROFILED = "libmemory+prof"

LIBDIRS = {64: "/usr/lib/x86_64-linux-gnu", 32: "/usr/lib/i386-linux-gnu"}
TRIPLES = {64: "x86_64-unknown-linux-gnu", 32: "i686-unknown-linux-gnu"}

# name -> file names tried in the multiarch lib directory, first found wins.
COMPETITORS = [
    ("jemalloc", ["libjemalloc.so.2", "libjemalloc.so*"]),
    ("tcmalloc", ["libtcmalloc_minimal.so.4", "libtcmalloc_minimal.so.4.*"]),
    ("mimalloc", ["libmimalloc.so.2.0", "libmimalloc.so.2", "libmimalloc.so*"]),
]


@dataclass(frozen=True)
class Allocator:
    name: str
    preload: object  # path of the library to LD_PRELOAD, None for glibc
    env: tuple = ()  # extra environment (key, value) pairs of its runs


def ours_path(bits, repo=REPO_DIR):
    return os.path.join(repo, "target", TRIPLES[bits], "release", "libmemory.so")


def find_allocators(bits, repo=REPO_DIR, libdir=None):
    """Allocators available for one width, in run order: glibc, ours, then
    the competitors that are installed. Ours is listed even when its library
    is missing (bench.py stops with an error then)."""
    libdir = libdir or LIBDIRS[bits]
    out = [Allocator(BASELINE, None), Allocator(OURS, ours_path(bits, repo))]
    for name, patterns in COMPETITORS:
        for pat in patterns:
            hits = sorted(p for p in glob.glob(os.path.join(libdir, pat))
                          if "debug" not in os.path.basename(p))
            if hits:
                out.append(Allocator(name, hits[0]))
                break
    return out


def snapshot(alloc, dest_dir):
    """Copies the allocator's library into dest_dir and returns the
    Allocator that preloads the copy, and the sha256 of the file. The build
    tree may be rebuilt while the suite runs; every run must use the same
    library."""
    import hashlib
    import shutil
    os.makedirs(dest_dir, exist_ok=True)
    dest = os.path.join(dest_dir, os.path.basename(alloc.preload))
    tmp = dest + ".tmp"
    shutil.copyfile(alloc.preload, tmp)
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)
    with open(dest, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return dataclasses.replace(alloc, preload=dest), digest


def profiled(ours, profile_dir):
    """Ours with MALLOCATOR_PROFILE on: each run writes its profile (the
    cost of writing it included) under profile_dir."""
    return Allocator(PROFILED, ours.preload,
                     (("MALLOCATOR_PROFILE", os.path.join(profile_dir, "profile")),))


def thread_counts(nproc):
    """1, 2, 4, ... up to 2*nproc, plus nproc and 2*nproc themselves."""
    counts = {nproc, 2 * nproc}
    t = 1
    while t <= 2 * nproc:
        counts.add(t)
        t *= 2
    return sorted(counts)


@dataclass(frozen=True)
class Workload:
    name: str
    argv: tuple             # "{bin}" is replaced by the build directory of the width
    description: str
    bits: tuple = (64, 32)
    time_key: str = "seconds"   # RESULT field that is the time; "wall_s" = whole process
    env: tuple = ()             # extra environment (key, value) pairs
    stdin: object = None        # file fed to stdin
    threads: object = None      # thread count of a scaling point
    max_rounds: object = None   # cap on rounds (slow, deterministic measures)
    result_from_stdout_hash: bool = False  # programs that print no RESULT line
    table: bool = True          # row in the time / peak RSS tables
    instr: bool = False         # also run in the instructions mode (callgrind)


# Ring sizes: fixed total work, split over the threads of the ring.
RING_THREADS = (2, 4, 8, 16)


def scaling_family(name):
    """The scaling chart a thread-count workload belongs to: its name
    without the count ("threads_4" -> "threads", "ring_16" -> "ring")."""
    return name.rsplit("_", 1)[0]


def workloads(nproc, quick=False, build_dir=None, sql_path=None, instructions=False):
    """The workload list. quick: smaller sizes (about a tenth).
    instructions: the sizes of the instructions mode (callgrind runs about
    50 times slower: a few hundred thousand operations each); only the
    entries with instr=True are meant to run in that mode."""
    def q(full, small, tiny=None):
        if instructions and tiny is not None:
            return tiny
        return small if quick or instructions else full
    b = "{bin}"
    wl = [
        Workload("small_pairs", (b + "/small_pairs",
                                 "iters=%d" % q(20000000, 2000000, 500000)),
                 "malloc+free pairs, 16..128 B, one thread", instr=True),
        Workload("workset_small", (b + "/workset", "live=10000",
                                   "iters=%d" % q(5000000, 500000, 200000), "min=8", "max=256"),
                 "10000 live blocks 8..256 B, random replacement", instr=True),
        Workload("workset_medium", (b + "/workset", "live=10000",
                                    "iters=%d" % q(3000000, 300000, 200000), "min=256",
                                    "max=4096"),
                 "10000 live blocks 256..4096 B, random replacement", instr=True),
        Workload("workset_mixed", (b + "/workset", "live=10000",
                                   "iters=%d" % q(2000000, 200000, 200000), "min=8",
                                   "max=32768"),
                 "10000 live blocks 8..32768 B, random replacement", instr=True),
    ]
    for t in thread_counts(nproc):
        wl.append(Workload(
            "threads_%d" % t,
            (b + "/threads", "threads=%d" % t, "live=2000",
             "iters=%d" % q(3000000, 300000, 100000), "min=8", "max=1024"),
            "%d thread(s), each its own working set of 2000 blocks 8..1024 B" % t,
            time_key="seconds", threads=t, table=t in (1, 2, nproc), instr=t in (1, nproc)))
    # ring: fixed total work (batches of 64 blocks), split over the threads
    ring_batches = q(64000, 6400, 4000)
    for t in RING_THREADS:
        wl.append(Workload(
            "ring_%d" % t,
            (b + "/ring", "threads=%d" % t, "iters=%d" % (ring_batches // t), "batch=64",
             "min=8", "max=512"),
            "%d threads in a ring, each frees the batches of 64 blocks 8..512 B its "
            "predecessor allocated: every free cross-thread; %d batches in all"
            % (t, ring_batches // t * t),
            threads=t, table=t in (2, nproc), instr=True))
    cold_t = max(2, nproc)
    for t in (1, cold_t):
        wl.append(Workload(
            "cold_%d" % t,
            (b + "/threads", "threads=%d" % t, "live=20000",
             "iters=%d" % q(2000000, 200000, 100000), "min=8", "max=520"),
            "cold working set: %d thread(s), each 20000 live blocks 8..520 B, random "
            "replacement" % t, instr=True))
    pairs = max(1, nproc // 2)
    larson_t = max(2, nproc)
    xpairs = max(2, nproc // 2)
    churn_t = max(2, nproc)
    wl += [
        Workload("prodcons", (b + "/prodcons", "pairs=%d" % pairs,
                              "items=%d" % q(2000000, 200000, 200000), "min=16", "max=1024"),
                 "%d producer(s) -> %d consumer(s), every free remote" % (pairs, pairs),
                 instr=True),
        Workload("larson", (b + "/larson", "threads=%d" % larson_t, "gens=%d" % q(100, 10, 5),
                            "iters=20000", "live=1000", "min=8", "max=512"),
                 "larson-like server: %d slots of 1000 live blocks 8..512 B, random "
                 "replacement; every 20000 replacements the thread hands its blocks to a new "
                 "thread and exits (%d threads per slot)" % (larson_t, q(100, 10, 5)),
                 instr=True),
        Workload("xmalloc", (b + "/xmalloc", "pairs=%d" % xpairs,
                             "batches=%d" % q(40000, 4000, 2000), "batch=64", "min=8",
                             "max=512"),
                 "xmalloc-like: %d producers -> one shared queue of batches of 64 blocks "
                 "8..512 B -> %d consumers, every free remote" % (xpairs, xpairs),
                 instr=True),
        Workload("churn", (b + "/churn", "threads=%d" % churn_t, "total=%d" % q(400, 40),
                           "iters=20000", "live=500", "slots=4096"),
                 "thread churn: %d threads at a time, %d created in all, each replacing "
                 "20000 times one of its 500 blocks (powers of two 16 B..1 KiB, 1 %% of them "
                 "64 times that, 0.1 %% 1024 times), one step in 4 swapping it with a table "
                 "shared by all threads; at exit half its blocks freed, half left in the "
                 "table" % (churn_t, q(400, 40))),
        Workload("prodcons_deep", (b + "/xmalloc", "pairs=%d" % xpairs,
                                   "batches=%d" % q(500, 50), "batch=4096", "queue=2",
                                   "min=16", "max=256"),
                 "%d producers -> one shared queue of 2 batches of 4096 blocks 16..256 B "
                 "(over 8000 blocks in flight; each batch's array of pointers a 32 or 64 KiB "
                 "block) -> %d consumers, every free remote" % (xpairs, xpairs)),
        Workload("large_blocks", (b + "/large", "mode=blocks", "live=32",
                                  "iters=%d" % q(4000, 400), "min=4096", "max=4194304"),
                 "32 live blocks 4 KiB..4 MiB, every page written"),
        Workload("big_buffers", (b + "/large", "mode=blocks", "live=4",
                                 "iters=%d" % q(1000, 100), "min=%d" % (5 << 20),
                                 "max=%d" % (25 << 20)),
                 "4 live buffers of 5..25 MiB, a random one replaced per step, every page "
                 "written"),
        Workload("realloc_grow", (b + "/large", "mode=realloc", "bufs=4", "reps=%d" % q(4, 1),
                                  "step=4096", "max=%d" % q(8 << 20, 4 << 20)),
                 "4 buffers grown side by side by realloc in 4 KiB steps to %d MiB"
                 % q(8, 4)),
        Workload("frag", (b + "/frag", "n=%d" % q(100000, 20000), "rounds=4"),
                 "mixed sizes, scattered half freed, other sizes allocated; 4 rounds"),
        Workload("exhaust", (b + "/exhaust",) + (("limit_mb=512",) if quick else ()),
                 "test 6: sizes 1..256 until NULL (%s)"
                 % ("RLIMIT_AS 512 MiB (quick)" if quick
                    else "64-bit RLIMIT_AS 1 GiB, 32-bit the whole address space"),
                 max_rounds=q(2, 1)),
        Workload("memreturn", (b + "/memreturn", "mb=%d" % q(256, 64)),
                 "%d MiB mixed, written, all freed: RSS after the frees" % q(256, 64)),
        Workload("python", ("python3", os.path.join(BENCH_DIR, "workloads", "app_python.py"),
                            "scale=%d" % q(2, 1)),
                 "python3: dicts/lists/strings/json, PYTHONMALLOC=malloc",
                 bits=(64,), time_key="wall_s", env=(("PYTHONMALLOC", "malloc"),)),
        Workload("python_pymalloc", ("python3",
                                     os.path.join(BENCH_DIR, "workloads", "app_python.py"),
                                     "scale=%d" % q(2, 1)),
                 "the same with Python's default pymalloc (small objects bypass malloc)",
                 bits=(64,), time_key="wall_s"),
        Workload("sqlite", ("sqlite3", ":memory:"),
                 "sqlite3 CLI: %d rows inserted in a transaction, 2 indexes, queries"
                 % q(100000, 20000),
                 bits=(64,), time_key="wall_s", stdin=sql_path,
                 result_from_stdout_hash=True),
    ]
    return wl


def instruction_workloads(nproc, build_dir=None):
    """The instructions mode: the workloads marked instr, at its sizes,
    preceded by "startup" (the same program start with no work), whose
    count is subtracted from the others'."""
    return [startup_workload()] + [w for w in workloads(nproc, build_dir=build_dir, instructions=True)
                        if w.instr]


def syscall_workloads(nproc, quick=False, build_dir=None, sql_path=None):
    """The system-call pass: every workload of the timed runs, at their
    sizes, preceded by "startup" (as in the instructions mode), whose counts
    are subtracted from the others'."""
    return [startup_workload()] + workloads(nproc, quick, build_dir, sql_path)


def startup_workload():
    return Workload("startup", ("{bin}/small_pairs", "iters=0"),
                    "process start-up and exit, no work (subtracted from the others)",
                    table=False)


def sqlite_rows(quick):
    return 20000 if quick else 100000


def schedule(wls, allocs_by_bits, rounds):
    """The run order: round by round, workload by workload, every allocator
    in turn (A B C D E A B C D E ...), so that slow drifts of the machine hit
    all allocators alike. Yields dicts with round, bits, workload, alloc."""
    order = []
    for rnd in range(rounds):
        for bits in sorted(allocs_by_bits, reverse=True):
            for w in wls:
                if bits not in w.bits:
                    continue
                if w.max_rounds is not None and rnd >= w.max_rounds:
                    continue
                for a in allocs_by_bits[bits]:
                    order.append({"round": rnd, "bits": bits, "workload": w, "alloc": a})
    return order
