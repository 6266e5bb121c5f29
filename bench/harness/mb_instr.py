"""The instructions mode: runs workloads under `valgrind --tool=callgrind`
and counts the instructions they execute (Ir), a figure that does not move
with the load of the machine. Instructions per operation = (Ir of the run
- Ir of the "startup" run of the same allocator and width) / ops the
workload reported.

valgrind runs the threads of a program one at a time; ring, larson and
xmalloc wait on condition variables (no spin loops), so their counts vary by
well under 1 % from run to run; prodcons's rings spin briefly (64 pauses,
then yield) when empty or full, and that waiting is counted.
"""
import os
import re
import shutil
import subprocess
import tempfile

import mb_output
import mb_runner

VALGRIND = "valgrind"

_COLLECTED = re.compile(r"^==\d+== Collected : (\d+)", re.M)


def valgrind_path():
    """The valgrind executable, or None when it is not installed."""
    return shutil.which(VALGRIND)


def callgrind_argv(out_file, argv, valgrind=VALGRIND):
    return [valgrind, "--tool=callgrind", "--callgrind-out-file=" + out_file,
            "--trace-children=no"] + list(argv)


def parse_callgrind_ir(text):
    """Total Ir of a callgrind output file's text: the `totals:` line (or
    `summary:`), at the position of Ir in the `events:` line. None when the
    file has neither line."""
    events, total = None, None
    for line in text.splitlines():
        if line.startswith("events:"):
            events = line.split(":", 1)[1].split()
        elif line.startswith("totals:") or (total is None and line.startswith("summary:")):
            total = line.split(":", 1)[1].split()
    if total is None:
        return None
    idx = events.index("Ir") if events and "Ir" in events else 0
    return int(total[idx])


def parse_collected(stderr):
    """The `Collected : N` count valgrind prints at exit (a fallback)."""
    found = _COLLECTED.findall(stderr)
    return int(found[-1]) if found else None


def loader_noise(line):
    """The valgrind launcher is a 64-bit program: with a 32-bit library in
    LD_PRELOAD its own loader complains (the workload's loader does load
    it; the workload's malloc_lib check proves which malloc ran)."""
    return "from LD_PRELOAD cannot be preloaded (wrong ELF class" in line


def run_instructions(workload, alloc, bits, bin_dir, timeout=600.0, valgrind=VALGRIND):
    """Runs one workload under callgrind with the allocator preloaded.
    Returns a run record like mb_runner's (rc, stdout, stderr, result) plus
    ir (total instructions, None when unknown)."""
    argv = [a.replace("{bin}", bin_dir) for a in workload.argv]
    env = mb_runner.child_env(workload.env + alloc.env)
    if alloc.preload:
        env["LD_PRELOAD"] = alloc.preload
    with tempfile.TemporaryDirectory(prefix="mb_callgrind_") as d:
        out_file = os.path.join(d, "callgrind.out")
        try:
            p = subprocess.run(callgrind_argv(out_file, argv, valgrind), env=env,
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
            rc, timed_out = p.returncode, False
            stdout = p.stdout.decode("utf-8", "replace")
            stderr = p.stderr.decode("utf-8", "replace")
        except subprocess.TimeoutExpired as e:
            rc, timed_out = -9, True
            stdout = (e.stdout or b"").decode("utf-8", "replace")
            stderr = (e.stderr or b"").decode("utf-8", "replace")
        ir = None
        if os.path.isfile(out_file):
            with open(out_file) as f:
                ir = parse_callgrind_ir(f.read())
    if ir is None:
        ir = parse_collected(stderr)
    stderr = "\n".join(l for l in stderr.splitlines() if not loader_noise(l))
    run = {"rc": rc, "signal": -rc if rc < 0 else None, "timed_out": timed_out,
           "stdout": stdout, "stderr": stderr, "ir": ir}
    try:
        run["result"] = mb_output.parse_result_line(stdout)
    except ValueError as e:
        run["result"] = None
        run["stdout"] += "\nFAIL (harness): %s" % e
    return run


def per_op(ir, startup_ir, ops):
    """Instructions per operation, start-up subtracted; None when a count
    is missing or there were no operations."""
    if ir is None or startup_ir is None or not ops:
        return None
    return (ir - startup_ir) / float(ops)
