#!/usr/bin/env python3
"""Mallocator benchmark harness: runs the workloads under glibc, libmemory
and the installed competitors (LD_PRELOAD), interleaved, several rounds, and
writes results/REPORT.md, results/results.json and SVG charts.

    python3 bench/harness/bench.py            # full suite (5 rounds)
    python3 bench/harness/bench.py --quick    # 2 rounds, small sizes (~1 minute)
    python3 bench/harness/bench.py --report-only   # re-render from results.json
    python3 bench/harness/bench.py --instructions  # instructions per op (callgrind)
    python3 bench/harness/bench.py --syscalls      # system calls per run (strace)

Exit status: 0 when every run of libmemory and glibc exited normally and
passed its self-checks (times never fail the suite), 1 otherwise, 2 when the
suite cannot start (missing library or workload binaries).
"""
import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mb_instr  # noqa: E402
import mb_output  # noqa: E402
import mb_plan  # noqa: E402
import mb_report  # noqa: E402
import mb_runner  # noqa: E402
import mb_syscalls  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   default=os.environ.get("QUICK", "") not in ("", "0"),
                   help="2 rounds and small workloads (also: QUICK=1 in the environment)")
    p.add_argument("--rounds", type=int, help="rounds (default 5, quick 2)")
    p.add_argument("--only", help="comma-separated workload names (prefix match)")
    p.add_argument("--bits", choices=("64", "32"), help="one width only")
    p.add_argument("--allocs", help="comma-separated allocators (glibc and libmemory always run)")
    p.add_argument("--out", default=os.path.join(mb_plan.BENCH_DIR, "build", "results"),
                   help="output directory (default bench/build/results; the committed report is "
                        "bench/results: --out bench/results, as make bench does)")
    p.add_argument("--build", default=os.path.join(mb_plan.BENCH_DIR, "build"),
                   help="directory of the built workloads (build/64, build/32)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    p.add_argument("--strict", action="store_true",
                   help="a competitor's crash or failed check also fails the suite")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite REPORT.md and the SVGs from OUT/results.json "
                        "(and OUT/instructions.json)")
    p.add_argument("--instructions", action="store_true",
                   help="instead of timing: run each workload once per allocator under "
                        "valgrind --tool=callgrind and report instructions per operation "
                        "(written to OUT/instructions.json and a section of REPORT.md)")
    p.add_argument("--syscalls", action="store_true",
                   help="instead of timing: run each workload once per allocator under "
                        "strace -f -c and count its system calls (mmap, munmap, mremap, "
                        "madvise, mincore, brk, futex, sched_yield), written to "
                        "OUT/syscalls.json and a section of REPORT.md")
    p.add_argument("--profiled", action="store_true",
                   help="also run libmemory with its heap profiler on (MALLOCATOR_PROFILE, default "
                        "rate), as the allocator %s: the profiler's cost" % mb_plan.PROFILED)
    p.add_argument("--also", action="append", default=[], metavar="NAME=REPO",
                   help="also run the libmemory.so built in another checkout REPO (its "
                        "target/<triple>/release/), as the allocator NAME: e.g. before=../old "
                        "to measure a change")
    return p.parse_args(argv)


def load_json(path):
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def write_report(out_dir, data=None, instr=None, sysc=None):
    """REPORT.md from the timing runs, the instruction counts and the
    system-call counts, each taken from OUT when not given (any may be
    missing)."""
    data = data or load_json(os.path.join(out_dir, "results.json"))
    instr = instr or load_json(os.path.join(out_dir, "instructions.json"))
    sysc = sysc or load_json(os.path.join(out_dir, "syscalls.json"))
    if data is None:
        other = instr or sysc
        if other is None:
            raise SystemExit("bench: nothing to report in %s" % out_dir)
        data = {"meta": other["meta"], "runs": []}
    return mb_report.write_report(data, out_dir, instr, sysc)


def workload_meta(w):
    d = dataclasses.asdict(w)
    d["argv"] = list(w.argv)
    d["bits"] = list(w.bits)
    d["env"] = [list(e) for e in w.env]
    return d


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, "results.json")
    if args.report_only:
        print(write_report(args.out))
        return 0
    if args.instructions and mb_instr.valgrind_path() is None:
        print("bench: valgrind not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    if args.syscalls and mb_syscalls.strace_path() is None:
        print("bench: strace not installed (make -C bench setup)", file=sys.stderr)
        return 2

    rounds = args.rounds or (2 if args.quick else 5)
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    widths = [int(args.bits)] if args.bits else [64, 32]
    allocs_by_bits, missing, ours_info = {}, {}, {}
    wanted = set(args.allocs.split(",")) | {mb_plan.OURS, mb_plan.BASELINE} if args.allocs else None
    extra_names = {mb_plan.PROFILED}
    profiles = os.path.join(args.build, "profiles")
    if args.profiled:
        shutil.rmtree(profiles, ignore_errors=True)
        os.makedirs(profiles)
    for bits in widths:
        found = mb_plan.find_allocators(bits)
        if not os.path.isfile(found[1].preload):
            print("bench: %s missing: %s (run `cargo build --release` or `make build` at the "
                  "top level)" % (mb_plan.OURS, found[1].preload), file=sys.stderr)
            return 2
        # run a copy: others may rebuild target/ while the suite runs
        src = found[1].preload
        found[1], digest = mb_plan.snapshot(found[1], os.path.join(args.build, "lib", str(bits)))
        ours_info[str(bits)] = {"source": src, "sha256": digest,
                                "mtime": time.strftime("%Y-%m-%d %H:%M:%S",
                                                       time.localtime(os.path.getmtime(src)))}
        names = {a.name for a in found}
        missing[str(bits)] = [n for n, _ in mb_plan.COMPETITORS if n not in names]
        if args.profiled:
            found.insert(2, mb_plan.profiled(found[1], profiles))
        for name, repo in (a.split("=", 1) for a in args.also):
            other = mb_plan.Allocator(name, mb_plan.ours_path(bits, os.path.abspath(repo)))
            if not os.path.isfile(other.preload):
                print("bench: %s missing: %s" % (name, other.preload), file=sys.stderr)
                return 2
            other, _ = mb_plan.snapshot(other, os.path.join(args.build, "lib", name, str(bits)))
            found.insert(2, other)
            extra_names.add(name)
        allocs_by_bits[bits] = [a for a in found
                                if wanted is None or a.name in wanted or a.name in extra_names]
        for bits_dir in (os.path.join(args.build, str(bits)),):
            if not os.path.isfile(os.path.join(bits_dir, "workset")):
                print("bench: workloads not built in %s (run `make -C bench`)" % bits_dir,
                      file=sys.stderr)
                return 2

    spawn = os.path.join(args.build, "spawn")
    if not os.path.isfile(spawn):
        print("bench: %s not built (run `make -C bench`)" % spawn, file=sys.stderr)
        return 2
    sql_path = None
    if shutil.which("sqlite3"):
        rows = mb_plan.sqlite_rows(args.quick)
        sql_path = os.path.join(args.build, "sqlite_%d.sql" % rows)
        if not os.path.isfile(sql_path):
            with open(sql_path + ".tmp", "w") as f:
                subprocess.run([sys.executable, os.path.join(mb_plan.BENCH_DIR, "workloads",
                                                             "gen_sqlite.py"), str(rows)],
                               stdout=f, check=True)
            os.replace(sql_path + ".tmp", sql_path)
    if args.instructions:
        wls = mb_plan.instruction_workloads(nproc, args.build)
        rounds = 1
    elif args.syscalls:
        wls = mb_plan.syscall_workloads(nproc, args.quick, args.build, sql_path)
        rounds = 1
    else:
        wls = mb_plan.workloads(nproc, args.quick, args.build, sql_path)
    if sql_path is None:
        print("bench: sqlite3 not installed, sqlite workload skipped", file=sys.stderr)
        wls = [w for w in wls if w.name != "sqlite"]
    if args.only:
        pre = args.only.split(",")
        wls = [w for w in wls if w.name == "startup" or any(w.name.startswith(p) for p in pre)]
    order = mb_plan.schedule(wls, allocs_by_bits, rounds)

    meta = {
        "quick": args.quick, "rounds": rounds, "nproc": nproc,
        "mode": "instructions" if args.instructions else "syscalls" if args.syscalls else "time",
        "machine": mb_report.machine_info(),
        "allocators": {str(b): [dataclasses.asdict(a) for a in al]
                       for b, al in allocs_by_bits.items()},
        "missing": missing,
        "libmemory": ours_info,
        "workloads": [workload_meta(w) for w in wls],
    }
    print("bench: %d runs (%s mode, %d rounds), allocators: %s" % (
        len(order), "quick" if args.quick else "full", rounds,
        "; ".join("%d-bit %s" % (b, ",".join(a.name for a in al))
                  for b, al in allocs_by_bits.items())), file=sys.stderr)

    if args.instructions:
        return run_single_pass(args, order, meta, instructions_pass(args))
    if args.syscalls:
        return run_single_pass(args, order, meta, syscalls_pass(args, meta))

    runs, reference = [], {}
    t_start = time.time()
    for i, job in enumerate(order, 1):
        w, a, bits = job["workload"], job["alloc"], job["bits"]
        run = mb_runner.run_workload(w, a, bits, os.path.join(args.build, str(bits)),
                                     args.timeout, spawn)
        key = (bits, w.name)
        res = run.get("result") or {}
        problems = mb_output.check_run(run, a.preload, reference.get(key),
                                       expect_result=not w.result_from_stdout_hash)
        if not problems and "check" in res and key not in reference:
            reference[key] = res["check"]
        rec = {
            "round": job["round"], "bits": bits, "workload": w.name, "alloc": a.name,
            "threads": w.threads, "rc": run["rc"], "wall_s": round(run["wall_s"], 6),
            "maxrss_kb": run["maxrss_kb"], "result": run.get("result"),
            "ok": not problems, "problems": problems,
        }
        if problems:
            rec["stdout_tail"] = run["stdout"][-2000:]
            rec["stderr_tail"] = run["stderr"][-2000:]
        runs.append(rec)
        tval = run["wall_s"] if w.time_key == "wall_s" else res.get(w.time_key)
        print("[%d/%d] round=%d bits=%d workload=%s alloc=%s %s peak=%.1fMiB%s" % (
            i, len(order), job["round"] + 1, bits, w.name, a.name,
            ("%.3fs" % tval) if isinstance(tval, (int, float)) else "-",
            run["maxrss_kb"] / 1024.0, ("  FAILED: " + "; ".join(problems)) if problems else ""),
            file=sys.stderr, flush=True)

    data = {"meta": meta, "runs": runs}
    meta["elapsed_s"] = round(time.time() - t_start, 1)
    with open(json_path, "w") as f:
        json.dump(data, f, indent=1)
    report = write_report(args.out, data)
    print("bench: %d runs in %.0f s; report: %s" % (len(runs), meta["elapsed_s"], report),
          file=sys.stderr)

    return report_failures(runs, args.strict)


class SinglePass:
    """A mode that runs each job once and measures something other than
    time (instructions, system calls): how to run a job, which field of the
    run is the measure (None: none came back), the figures of a record, the
    file and the name its results go under."""

    def __init__(self, name, run, measure, missing, figures, describe):
        self.name, self.run, self.measure, self.missing = name, run, measure, missing
        self.figures, self.describe = figures, describe


def instructions_pass(args):
    def figures(w, run, startup_ir):
        ops = (run.get("result") or {}).get("ops")
        ipo = None if w.name == "startup" else mb_instr.per_op(run["ir"], startup_ir, ops)
        return {"ir": run["ir"], "startup_ir": startup_ir, "ops": ops, "ir_per_op": ipo}

    return SinglePass(
        "instructions",
        lambda w, a, bits, bin_dir: mb_instr.run_instructions(w, a, bits, bin_dir, args.timeout),
        "ir", "no instruction count from callgrind", figures,
        lambda rec: "Ir=%s %s" % (rec["ir"], ("%.1f Ir/op" % rec["ir_per_op"])
                                  if rec["ir_per_op"] is not None else ""))


def syscalls_pass(args, meta):
    seccomp = mb_syscalls.supports_seccomp()
    meta["strace"] = {"seccomp_bpf": seccomp, "calls": list(mb_syscalls.CALLS)}
    spawn = os.path.join(args.build, "spawn")

    def figures(w, run, startup_calls):
        net = None if w.name == "startup" else mb_syscalls.net_counts(run["calls"],
                                                                      startup_calls)
        return {"wall_s": run["wall_s"], "calls": run["calls"], "startup_calls": startup_calls,
                "net": net}

    def describe(rec):
        shown = rec["net"] if rec["net"] is not None else rec["calls"]
        return "calls=%s (%s)" % (mb_syscalls.total(shown), ", ".join(
            "%s %d" % (c, n) for c, n in (shown or {}).items() if n))

    return SinglePass(
        "syscalls",
        lambda w, a, bits, bin_dir: mb_syscalls.run_syscalls(w, a, bits, bin_dir, args.timeout,
                                                             spawn, seccomp),
        "calls", "no summary from strace", figures, describe)


def run_single_pass(args, order, meta, single):
    """Each job once; the startup runs come first in every width (schedule
    keeps the workload order), and each run's figures are derived with its
    allocator's startup measure. Results go to OUT/<name>.json and their
    section of REPORT.md."""
    runs, reference, startup = [], {}, {}
    t_start = time.time()
    for i, job in enumerate(order, 1):
        w, a, bits = job["workload"], job["alloc"], job["bits"]
        run = single.run(w, a, bits, os.path.join(args.build, str(bits)))
        key = (bits, w.name)
        res = run.get("result") or {}
        problems = mb_output.check_run(run, a.preload, reference.get(key),
                                       expect_result=not w.result_from_stdout_hash)
        if run[single.measure] is None:
            problems.append(single.missing)
        if not problems and "check" in res and key not in reference:
            reference[key] = res["check"]
        if w.name == "startup" and not problems:
            startup[(bits, a.name)] = run[single.measure]
        rec = {"round": 0, "bits": bits, "workload": w.name, "alloc": a.name,
               "threads": w.threads, "rc": run["rc"], "result": run.get("result"),
               "ok": not problems, "problems": problems}
        rec.update(single.figures(w, run, startup.get((bits, a.name))))
        if problems:
            rec["stdout_tail"] = run["stdout"][-2000:]
            rec["stderr_tail"] = run["stderr"][-2000:]
        runs.append(rec)
        print("[%d/%d] bits=%d workload=%s alloc=%s %s%s" % (
            i, len(order), bits, w.name, a.name, single.describe(rec),
            ("  FAILED: " + "; ".join(problems)) if problems else ""),
            file=sys.stderr, flush=True)
    meta["elapsed_s"] = round(time.time() - t_start, 1)
    out = {"meta": meta, "runs": runs}
    with open(os.path.join(args.out, single.name + ".json"), "w") as f:
        json.dump(out, f, indent=1)
    report = write_report(args.out, **{"instr" if single.name == "instructions" else "sysc": out})
    print("bench: %d %s runs in %.0f s; report: %s" % (len(runs), single.name,
                                                       meta["elapsed_s"], report),
          file=sys.stderr)
    return report_failures(runs, args.strict)


def report_failures(runs, strict):
    """Prints the failed runs; 1 when one of them fails the suite."""
    fatal = [r for r in runs if not r["ok"]
             and (strict or r["alloc"] in (mb_plan.OURS, mb_plan.BASELINE))]
    other = [r for r in runs if not r["ok"] and r not in fatal]
    for r in other:
        print("bench: note: %s failed %s (%d-bit): %s" % (r["alloc"], r["workload"], r["bits"],
                                                        "; ".join(r["problems"])),
              file=sys.stderr)
    for r in fatal:
        print("bench: FAILED: %s %s (%d-bit, round %d): %s" % (
            r["alloc"], r["workload"], r["bits"], r["round"] + 1, "; ".join(r["problems"])),
            file=sys.stderr)
    return 1 if fatal else 0


if __name__ == "__main__":
    sys.exit(main())
