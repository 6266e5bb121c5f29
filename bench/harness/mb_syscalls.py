"""The system-call pass: each workload once per allocator under
`strace -f -c`, counting the calls an allocator makes to get, resize, give
back or wait for memory: mmap (and i686's mmap2), munmap, mremap, madvise,
mincore, brk, and the ones of waiting threads, futex and sched_yield.

The workload runs through the spawner, as in the timed runs, so LD_PRELOAD
reaches the workload only. Counts are per process, every thread included;
the counts of the `startup` run (the same program start with no work,
under the same allocator) are subtracted, so what remains is what the
workload's work cost: the allocator's calls, plus the workload's own
(condition variables of the hand-off workloads, prodcons's yields), the
same program under every allocator.

strace's `--seccomp-bpf` stops the program only at the counted calls (the
others run at full speed); each counted call still costs a stop, which
slows the threads that make many and can change how often threads wait on
each other: the counts of futex and sched_yield depend on timing and move
from run to run, those of the memory calls much less.
"""
import os
import re
import shutil
import subprocess
import tempfile

import mb_runner

STRACE = "strace"

# What the table counts, in this order; i686's mmap2 is counted as mmap.
CALLS = ("mmap", "munmap", "mremap", "madvise", "mincore", "brk", "futex", "sched_yield")
ALIASES = {"mmap2": "mmap"}
MEMORY_CALLS = ("mmap", "munmap", "mremap", "madvise", "mincore", "brk")
WAIT_CALLS = ("futex", "sched_yield")

# The competitors the target compares with (glibc is left out:
# it has no thread caches and no purging of its own to speak of).
PEERS = ("jemalloc", "tcmalloc", "mimalloc")

# A row of strace's summary table: % time, seconds, usecs/call, calls,
# errors (may be blank), syscall.
_ROW = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?([a-z_0-9]+)\s*$")


def strace_path():
    """The strace executable, or None when it is not installed."""
    return shutil.which(STRACE)


def traced_names():
    return sorted(set(CALLS) | set(ALIASES))


def strace_argv(out_file, argv, seccomp=True, strace=STRACE):
    """strace counting the calls of CALLS in argv and all its threads and
    children, the summary written to out_file."""
    return ([strace, "-f", "-c", "-o", out_file] + (["--seccomp-bpf"] if seccomp else [])
            + ["-e", "trace=" + ",".join(traced_names())] + list(argv))


def parse_summary(text):
    """{call: count} from strace -c output. A 32-bit program's calls come in
    a second table ("System call usage summary for 32 bit mode"); both are
    summed, aliases folded in, the total rows skipped. Calls of CALLS that
    were never made count 0."""
    counts = {c: 0 for c in CALLS}
    for line in text.splitlines():
        m = _ROW.match(line)
        if not m or m.group(2) == "total":
            continue
        name = ALIASES.get(m.group(2), m.group(2))
        if name in counts:
            counts[name] += int(m.group(1))
    return counts


def net_counts(counts, startup):
    """The counts less those of the start-up run (never below 0: a workload
    whose start needs fewer calls than small_pairs' counts 0 there)."""
    if counts is None:
        return None
    startup = startup or {}
    return {c: max(0, counts.get(c, 0) - startup.get(c, 0)) for c in CALLS}


def total(counts, calls=CALLS):
    return None if counts is None else sum(counts.get(c, 0) for c in calls)


def supports_seccomp(strace=STRACE):
    """Whether this strace filters with seccomp-bpf (strace >= 5.3 on a
    kernel with seccomp): without it every system call stops the program."""
    try:
        p = subprocess.run([strace, "-f", "-c", "-o", os.devnull, "--seccomp-bpf", "-e",
                            "trace=mmap", "true"], capture_output=True, timeout=30)
        return p.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def run_syscalls(workload, alloc, bits, bin_dir, timeout=600.0, spawn=None, seccomp=True,
                 strace=STRACE):
    """Runs one workload under strace with the allocator preloaded (through
    the spawner). Returns a run record like mb_runner's (rc, stdout, stderr,
    result, wall_s) plus calls ({call: count} of the whole process, None
    when strace wrote no summary)."""
    with tempfile.TemporaryDirectory(prefix="mb_strace_") as d:
        out_file = os.path.join(d, "summary.txt")
        argv = [a.replace("{bin}", bin_dir) for a in workload.argv]
        env = mb_runner.child_env(workload.env + alloc.env)
        spawned = [spawn or mb_runner.SPAWN, os.path.join(d, "spawn.txt"),
                   alloc.preload or "", "%g" % timeout] + argv
        stdin = open(workload.stdin, "rb") if workload.stdin else subprocess.DEVNULL
        try:
            p = subprocess.run(strace_argv(out_file, spawned, seccomp, strace), env=env,
                               stdin=stdin, capture_output=True, timeout=timeout + 120)
            stdout = p.stdout.decode("utf-8", "replace")
            stderr = p.stderr.decode("utf-8", "replace")
            spawn_rc = p.returncode
        except subprocess.TimeoutExpired as e:
            stdout = (e.stdout or b"").decode("utf-8", "replace")
            stderr = (e.stderr or b"").decode("utf-8", "replace")
            spawn_rc = None
        finally:
            if workload.stdin:
                stdin.close()
        calls = None
        if os.path.isfile(out_file):
            with open(out_file) as f:
                calls = parse_summary(f.read())
        report = ""
        if os.path.isfile(os.path.join(d, "spawn.txt")):
            with open(os.path.join(d, "spawn.txt")) as f:
                report = f.read()
    run = {"rc": None, "signal": None, "timed_out": spawn_rc is None, "wall_s": None,
           "stdout": stdout, "stderr": stderr, "calls": calls}
    if report.strip():
        f = mb_runner.parse_spawn_report(report)
        run.update(rc=f["rc"], signal=-f["rc"] if f["rc"] < 0 else None,
                   timed_out=bool(f["timed_out"]), wall_s=float(f["wall_s"]))
    elif spawn_rc is not None:
        run["rc"] = spawn_rc if spawn_rc != 0 else -1
    mb_runner.add_result(workload, run)
    return run


def fewest_of_peers(row):
    """(name, count) of the peer with the fewest calls in a {alloc: count}
    row, None when no peer ran."""
    have = [(a, row[a]) for a in PEERS if row.get(a) is not None]
    return min(have, key=lambda kv: kv[1]) if have else None


def vs_peers(ours, row):
    """ours / the fewest of the peers; a peer with 0 calls counts as 1 (a
    ratio to nothing says nothing), and 0 against 0 is 1.0."""
    best = fewest_of_peers(row)
    if ours is None or best is None:
        return None
    return ours / float(max(best[1], 1)) if ours else (0.0 if best[1] else 1.0)
