"""Tests of the instructions mode: callgrind output parsing, per-op counts."""
import os
import tempfile
import unittest

import mb_instr
import mb_plan

CALLGRIND_OUT = """# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 4242
cmd:  /x/build/64/ring threads=2
part: 1

positions: line
events: Ir Dr
summary: 1234 99

ob=(1) /x/build/64/ring
fl=(1) ???
fn=(1) main
0 10 2
cfn=(2) malloc
calls=1 0
0 500 7

totals: 1234 99
"""


class ParseCallgrind(unittest.TestCase):
    def test_totals_line_at_ir_position(self):
        self.assertEqual(mb_instr.parse_callgrind_ir(CALLGRIND_OUT), 1234)
        swapped = CALLGRIND_OUT.replace("events: Ir Dr", "events: Dr Ir")
        self.assertEqual(mb_instr.parse_callgrind_ir(swapped), 99)

    def test_summary_when_no_totals(self):
        text = CALLGRIND_OUT.replace("totals: 1234 99", "")
        self.assertEqual(mb_instr.parse_callgrind_ir(text), 1234)

    def test_nothing(self):
        self.assertIsNone(mb_instr.parse_callgrind_ir("events: Ir\n"))
        self.assertIsNone(mb_instr.parse_callgrind_ir(""))

    def test_collected_from_stderr(self):
        err = "==1== Events    : Ir\n==1== Collected : 78149416\n==1==\n"
        self.assertEqual(mb_instr.parse_collected(err), 78149416)
        self.assertIsNone(mb_instr.parse_collected("nothing"))


class PerOp(unittest.TestCase):
    def test_startup_subtracted(self):
        self.assertAlmostEqual(mb_instr.per_op(1200, 200, 10), 100.0)

    def test_missing(self):
        self.assertIsNone(mb_instr.per_op(None, 200, 10))
        self.assertIsNone(mb_instr.per_op(1200, None, 10))
        self.assertIsNone(mb_instr.per_op(1200, 200, 0))
        self.assertIsNone(mb_instr.per_op(1200, 200, None))


class Command(unittest.TestCase):
    def test_argv(self):
        argv = mb_instr.callgrind_argv("/tmp/o", ["/b/ring", "threads=2"])
        self.assertEqual(argv[0], "valgrind")
        self.assertIn("--tool=callgrind", argv)
        self.assertIn("--callgrind-out-file=/tmp/o", argv)
        self.assertEqual(argv[-2:], ["/b/ring", "threads=2"])

    def test_loader_noise_only_wrong_class(self):
        self.assertTrue(mb_instr.loader_noise(
            "ERROR: ld.so: object '/x/libmemory.so' from LD_PRELOAD cannot be preloaded "
            "(wrong ELF class: ELFCLASS32): ignored."))
        self.assertFalse(mb_instr.loader_noise(
            "ERROR: ld.so: object '/x/libmemory.so' from LD_PRELOAD cannot be preloaded "
            "(cannot open shared object file): ignored."))


class Environment(unittest.TestCase):
    def test_the_allocators_environment_reaches_the_workload(self):
        # libmemory+prof differs from libmemory by its environment alone: a
        # stand-in for valgrind shows what the workload would get.
        with tempfile.TemporaryDirectory() as d:
            fake = os.path.join(d, "valgrind")
            with open(fake, "w") as f:
                f.write('#!/bin/sh\necho "profile=$MALLOCATOR_PROFILE"\n')
            os.chmod(fake, 0o755)
            w = mb_plan.Workload("small_pairs", ("{bin}/small_pairs",), "d")
            prof = mb_plan.Allocator("libmemory+prof", None, (("MALLOCATOR_PROFILE", "/p/x"),))
            run = mb_instr.run_instructions(w, prof, 64, d, 30, valgrind=fake)
        self.assertIn("profile=/p/x", run["stdout"])


@unittest.skipUnless(mb_instr.valgrind_path() and os.path.isfile(
    os.path.join(mb_plan.BENCH_DIR, "build", "64", "small_pairs")), "valgrind or build missing")
class RealRun(unittest.TestCase):
    def test_small_pairs_under_callgrind(self):
        w = mb_plan.Workload("small_pairs", ("{bin}/small_pairs", "iters=1000"), "d")
        run = mb_instr.run_instructions(w, mb_plan.Allocator("glibc", None), 64,
                                        os.path.join(mb_plan.BENCH_DIR, "build", "64"), 120)
        self.assertEqual(run["rc"], 0)
        self.assertEqual(run["result"]["ops"], 1000)
        self.assertGreater(run["ir"], 1000 * 10)


if __name__ == "__main__":
    unittest.main()
