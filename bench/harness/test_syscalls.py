"""Tests of the system-call pass: strace's summary parsed, start-up
subtracted, ratios against the peers, the strace and spawner wiring (with
stand-ins for both), the plan and the report section."""
import os
import stat
import tempfile
import textwrap
import unittest

import mb_plan
import mb_report
import mb_syscalls

SUMMARY = """\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 83.67    0.077850       15570         5         1 futex
 16.10    0.014984           1      7788           sched_yield
  0.19    0.000176           5        30           madvise
  0.00    0.000000           0        39           mmap
  0.00    0.000000           0         4           brk
------ ----------- ----------- --------- --------- ----------------
100.00    0.093047          11      7866         1 total
System call usage summary for 32 bit mode:
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 69.02    0.032306        2019        16           futex
 14.80    0.006930          45       152           madvise
  7.68    0.003594          21       167           mincore
  0.15    0.000070           6        11           munmap
  0.03    0.000015           0        21           mmap2
------ ----------- ----------- --------- --------- ----------------
100.00    0.046810          97       367           total
"""


class ParseSummary(unittest.TestCase):
    def test_both_widths_summed_and_mmap2_folded(self):
        c = mb_syscalls.parse_summary(SUMMARY)
        self.assertEqual(c["futex"], 5 + 16)
        self.assertEqual(c["madvise"], 30 + 152)
        self.assertEqual(c["mmap"], 39 + 21)
        self.assertEqual(c["sched_yield"], 7788)
        self.assertEqual(c["mincore"], 167)
        self.assertEqual(c["munmap"], 11)
        self.assertEqual(c["mremap"], 0, "calls never made count 0")
        self.assertEqual(set(c), set(mb_syscalls.CALLS), "no total row, no other name")

    def test_empty(self):
        self.assertEqual(mb_syscalls.total(mb_syscalls.parse_summary("")), 0)


class Counts(unittest.TestCase):
    def test_startup_subtracted_never_below_zero(self):
        run = dict.fromkeys(mb_syscalls.CALLS, 0) | {"mmap": 30, "brk": 1, "madvise": 5}
        start = {"mmap": 20, "brk": 3}
        net = mb_syscalls.net_counts(run, start)
        self.assertEqual(net["mmap"], 10)
        self.assertEqual(net["brk"], 0)
        self.assertEqual(net["madvise"], 5)
        self.assertIsNone(mb_syscalls.net_counts(None, start))
        self.assertEqual(mb_syscalls.net_counts(run, None)["mmap"], 30)

    def test_totals_by_group(self):
        c = {"mmap": 1, "munmap": 2, "futex": 4, "sched_yield": 8}
        self.assertEqual(mb_syscalls.total(c), 15)
        self.assertEqual(mb_syscalls.total(c, mb_syscalls.MEMORY_CALLS), 3)
        self.assertEqual(mb_syscalls.total(c, mb_syscalls.WAIT_CALLS), 12)
        self.assertIsNone(mb_syscalls.total(None))

    def test_against_the_fewest_peer(self):
        row = {"glibc": 1, "libmemory": 40, "jemalloc": 30, "tcmalloc": 10, "mimalloc": 20}
        self.assertEqual(mb_syscalls.fewest_of_peers(row), ("tcmalloc", 10))
        self.assertAlmostEqual(mb_syscalls.vs_peers(40, row), 4.0, msg="glibc is no peer")
        self.assertAlmostEqual(mb_syscalls.vs_peers(3, {"mimalloc": 0}), 3.0)
        self.assertEqual(mb_syscalls.vs_peers(0, {"mimalloc": 0}), 1.0)
        self.assertEqual(mb_syscalls.vs_peers(0, {"mimalloc": 5}), 0.0)
        self.assertIsNone(mb_syscalls.vs_peers(3, {"glibc": 1}))
        self.assertIsNone(mb_syscalls.vs_peers(None, row))


def write_script(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)


class Wiring(unittest.TestCase):
    """run_syscalls with stand-ins: a 'strace' that writes a summary to its
    -o file and runs the rest of its command line, and a 'spawn' that writes
    the spawner's report and runs the workload with LD_PRELOAD set."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        d = self.dir.name
        self.strace = os.path.join(d, "strace")
        self.spawn = os.path.join(d, "spawn")
        with open(os.path.join(d, "summary"), "w") as f:
            f.write(SUMMARY)
        write_script(self.strace, textwrap.dedent("""\
            #!/bin/sh
            out=""
            while [ $# -gt 0 ]; do
              case "$1" in
                -o) out="$2"; shift 2 ;;
                -e) [ "$2" = "trace=%s" ] || exit 9; shift 2 ;;
                -*) shift ;;
                *) break ;;
              esac
            done
            cp %s "$out"
            exec "$@"
            """ % (",".join(mb_syscalls.traced_names()), os.path.join(d, "summary"))))
        write_script(self.spawn, textwrap.dedent("""\
            #!/bin/sh
            report="$1"; preload="$2"; shift 3
            LD_PRELOAD="$preload" "$@"
            echo "rc=$? wall_s=0.25 maxrss_kb=100 utime_s=0 stime_s=0 timed_out=0" > "$report"
            """))

    def tearDown(self):
        self.dir.cleanup()

    def run_one(self, argv):
        w = mb_plan.Workload("w", argv, "d")
        a = mb_plan.Allocator("x", "/lib/x.so")
        return mb_syscalls.run_syscalls(w, a, 64, "/bin", 10, self.spawn, True, self.strace)

    def test_counts_result_and_status(self):
        run = self.run_one(("sh", "-c", 'echo "RESULT workload=w malloc_lib=$LD_PRELOAD check=7"'))
        self.assertEqual(run["rc"], 0)
        self.assertEqual(run["wall_s"], 0.25)
        self.assertEqual(run["calls"]["mmap"], 60)
        self.assertEqual(run["result"]["check"], 7)
        self.assertEqual(run["result"]["malloc_lib"], "/lib/x.so", "LD_PRELOAD reaches the workload")

    def test_exit_status_of_the_workload(self):
        run = self.run_one(("sh", "-c", "exit 3"))
        self.assertEqual(run["rc"], 3)
        self.assertIsNone(run["result"])


class Plan(unittest.TestCase):
    def test_startup_first_then_every_timed_workload(self):
        wls = mb_plan.syscall_workloads(2, quick=True)
        self.assertEqual(wls[0].name, "startup")
        names = [w.name for w in wls]
        self.assertEqual(names[1:], [w.name for w in mb_plan.workloads(2, quick=True)])
        for name in ("churn", "prodcons_deep", "big_buffers"):
            self.assertIn(name, names)

    def test_new_workloads_are_as_harsh_as_the_issue(self):
        full = {w.name: w.argv for w in mb_plan.workloads(2)}
        self.assertIn("total=400", full["churn"])
        self.assertIn("threads=2", full["churn"])
        self.assertIn("batch=4096", full["prodcons_deep"])
        self.assertIn("min=%d" % (5 << 20), full["big_buffers"])
        self.assertIn("max=%d" % (25 << 20), full["big_buffers"])


class Report(unittest.TestCase):
    def sysc(self):
        allocs = ["glibc", "libmemory", "jemalloc", "tcmalloc", "mimalloc"]
        counts = {"glibc": 5, "libmemory": 50, "jemalloc": 30, "tcmalloc": 20, "mimalloc": 10}
        runs = []
        for a in allocs:
            net = dict.fromkeys(mb_syscalls.CALLS, 0)
            net["madvise"] = counts[a]
            net["futex"] = 1
            runs.append({"bits": 64, "workload": "startup", "alloc": a, "ok": True,
                         "calls": {"mmap": 9}, "net": None})
            runs.append({"bits": 64, "workload": "churn", "alloc": a, "ok": True, "net": net})
        runs.append({"bits": 64, "workload": "churn", "alloc": "libmemory", "ok": False,
                     "problems": ["exit status 2"], "net": None})
        meta = {"quick": True, "rounds": 1, "machine": {},
                "allocators": {"64": [{"name": a, "preload": None} for a in allocs]},
                "workloads": [{"name": n, "bits": [64], "description": "d", "argv": ["x"]}
                              for n in ("startup", "churn")],
                "strace": {"seccomp_bpf": True}}
        return {"meta": meta, "runs": runs}

    def test_section(self):
        md = mb_report.syscalls_section(self.sysc())
        self.assertIn("--seccomp-bpf", md)
        # all calls: libmemory 51 against mimalloc's 11, above the bound of 2
        self.assertIn("| churn | 6 | 51 | 31 | 21 | 11 | 8.50 | **4.64** (mimalloc) |", md)
        # memory calls only
        self.assertIn("| churn | 5 | 50 | 30 | 20 | 10 | 10.00 | **5.00** (mimalloc) |", md)
        self.assertIn("| churn | madvise 5, futex 1 | madvise 50, futex 1 |", md)
        self.assertIn("Start-up calls subtracted (64-bit): glibc 9; libmemory 9", md)
        self.assertIn("- 64-bit churn libmemory: exit status 2", md)

    def test_written_into_the_report(self):
        with tempfile.TemporaryDirectory() as d:
            sysc = self.sysc()
            path = mb_report.write_report({"meta": sysc["meta"], "runs": []}, d, sysc=sysc)
            with open(path) as f:
                self.assertIn("## System calls per run (strace)", f.read())


if __name__ == "__main__":
    unittest.main()
