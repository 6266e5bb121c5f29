"""Runs one workload process and measures it (wall time, peak RSS via wait4,
both done by build/spawn, see workloads/spawn.c)."""
import hashlib
import os
import subprocess
import tempfile

import mb_output

SPAWN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                     "build", "spawn")

# Variables that would change which allocator runs, or how it behaves.
_SCRUB = ("LD_PRELOAD", "MALLOC_CONF", "TCMALLOC_RELEASE_RATE", "MIMALLOC_VERBOSE",
          "MALLOCATOR_ON_ERROR", "PYTHONMALLOC")


def child_env(extra=()):
    """The environment of a workload: ours minus allocator settings (also
    every MALLOCATOR_* option of libmemory), plus extra. LD_PRELOAD is set by
    the spawner in the workload process only."""
    env = {k: v for k, v in os.environ.items()
           if k not in _SCRUB and not k.startswith("MALLOCATOR_")}
    env.update(dict(extra))
    return env


def parse_spawn_report(text):
    """The fields of the spawner's report line (numbers converted)."""
    fields = mb_output.parse_result_line("RESULT " + text.strip().splitlines()[-1])
    for key in ("rc", "wall_s", "maxrss_kb", "timed_out"):
        if key not in fields:
            raise ValueError("spawn report lacks %s: %r" % (key, text))
    return fields


def run_process(argv, preload, env, stdin_path=None, timeout=600.0, spawn=None):
    """Runs argv with LD_PRELOAD=preload (None: no preload) through the
    spawner; returns rc, signal, timed_out, wall_s, maxrss_kb, stdout, stderr.
    The peak RSS is the workload's own ru_maxrss (wait4 in the spawner)."""
    spawn = spawn or SPAWN
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(mode="r", suffix=".spawn") as rep:
        stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
        try:
            proc = subprocess.Popen([spawn, rep.name, preload or "", "%g" % timeout] + list(argv),
                                    env=env, stdin=stdin, stdout=out, stderr=err)
            try:
                spawn_rc = proc.wait(timeout + 60)
            except subprocess.TimeoutExpired:
                proc.kill()
                spawn_rc = proc.wait()
        finally:
            if stdin_path:
                stdin.close()
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
        report = rep.read()
    if spawn_rc != 0 or not report.strip():
        raise RuntimeError("spawner failed (status %s): %s" % (spawn_rc, stderr.strip()))
    f = parse_spawn_report(report)
    rc = f["rc"]
    return {
        "rc": rc,
        "signal": -rc if rc < 0 else None,
        "timed_out": bool(f["timed_out"]),
        "wall_s": float(f["wall_s"]),
        "maxrss_kb": f["maxrss_kb"],
        "stdout": stdout,
        "stderr": stderr,
    }


def run_workload(workload, alloc, bits, bin_dir, timeout=600.0, spawn=None):
    """Runs one (workload, allocator, width) and returns the run record
    (without the pass/fail verdict, see mb_output.check_run)."""
    argv = [a.replace("{bin}", bin_dir) for a in workload.argv]
    env = child_env(workload.env + alloc.env)
    run = run_process(argv, alloc.preload, env, workload.stdin, timeout, spawn)
    add_result(workload, run)
    return run


def add_result(workload, run):
    """Sets run["result"]: the fields of the RESULT line the workload
    printed (None without one; a malformed line is noted in its stdout as a
    failure), or for programs that print none a hash of their output."""
    if workload.result_from_stdout_hash:
        run["result"] = {"check": hashlib.sha256(run["stdout"].encode()).hexdigest()[:16]}
        return
    try:
        run["result"] = mb_output.parse_result_line(run["stdout"])
    except ValueError as e:
        run["result"] = None
        run["stdout"] += "\nFAIL (harness): %s" % e
