"""Parsing and checking what a workload printed."""
import os
import re

_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")


def convert(value):
    """'12' -> 12, '0.5' -> 0.5, anything else stays a string."""
    if _INT.match(value):
        return int(value)
    if _FLOAT.match(value):
        return float(value)
    return value


def parse_result_line(text):
    """The fields of the last `RESULT key=value ...` line in text, as a dict
    (numbers converted), or None when there is no such line. A token without
    '=' is an error (ValueError): the format is strict so that typos in a
    workload show up."""
    found = None
    for line in text.splitlines():
        if line.startswith("RESULT ") or line == "RESULT":
            found = line
    if found is None:
        return None
    fields = {}
    for tok in found.split()[1:]:
        key, eq, value = tok.partition("=")
        if not eq or not key:
            raise ValueError("malformed token %r in RESULT line" % tok)
        fields[key] = convert(value)
    return fields


def failure_lines(text):
    """Lines a workload printed to report a failed self-check."""
    return [l for l in text.splitlines() if l.startswith("FAIL")]


def is_glibc_path(path):
    base = os.path.basename(str(path))
    return base.startswith("libc.so") or base.startswith("libc-")


def malloc_lib_matches(reported, preload):
    """Whether the malloc a workload reported is the allocator meant:
    libc for preload None, else the preloaded file (paths compared after
    resolving links)."""
    if reported is None:
        return False
    if preload is None:
        return is_glibc_path(reported)
    return os.path.realpath(str(reported)) == os.path.realpath(preload)


def check_run(run, preload, reference_check=None, expect_result=True):
    """Returns a list of problems with a finished run (empty when fine).

    run: dict with rc, stdout, stderr, result (parsed RESULT fields or None).
    preload: the library path the run was meant to use (None for glibc).
    reference_check: the `check` value the first allocator produced for the
    same workload (results must not depend on the allocator).
    """
    problems = []
    if run.get("timed_out"):
        problems.append("timed out")
    rc = run.get("rc")
    if rc != 0:
        sig = run.get("signal")
        problems.append("killed by signal %d" % sig if sig else "exit status %s" % rc)
    for line in failure_lines(run.get("stdout", "")):
        problems.append(line.strip())
    if "cannot be preloaded" in run.get("stderr", ""):
        problems.append("LD_PRELOAD failed: " + run["stderr"].strip().splitlines()[0])
    res = run.get("result")
    if expect_result:
        if res is None:
            problems.append("no RESULT line")
        elif "malloc_lib" in res and not malloc_lib_matches(res["malloc_lib"], preload):
            problems.append("malloc comes from %s, not %s"
                            % (res["malloc_lib"], preload or "libc"))
    if res is not None and reference_check is not None and "check" in res:
        if str(res["check"]) != str(reference_check):
            problems.append("check=%s differs from the reference %s"
                            % (res["check"], reference_check))
    return problems
