"""Tests of the run plan: interleaving order, thread counts, allocators."""
import os
import tempfile
import unittest

import mb_plan
import mb_runner


class Schedule(unittest.TestCase):
    def setUp(self):
        self.allocs = {64: [mb_plan.Allocator(n, None) for n in "ABCDE"],
                       32: [mb_plan.Allocator(n, None) for n in "AB"]}
        self.wls = [mb_plan.Workload("w1", ("x",), "d"),
                    mb_plan.Workload("w2", ("x",), "d", bits=(64,)),
                    mb_plan.Workload("slow", ("x",), "d", max_rounds=1)]

    def test_interleaved_allocators(self):
        order = mb_plan.schedule(self.wls, self.allocs, rounds=3)
        seq64 = [(j["round"], j["workload"].name, j["alloc"].name) for j in order
                 if j["bits"] == 64]
        # within a round and workload, the allocators come as A B C D E
        self.assertEqual([a for r, w, a in seq64[:10]], list("ABCDEABCDE"))
        self.assertEqual([w for r, w, a in seq64[:10]], ["w1"] * 5 + ["w2"] * 5)
        # rounds are outermost: every round of w1 is separated by the others
        rounds_w1 = [r for r, w, a in seq64 if w == "w1" and a == "A"]
        self.assertEqual(rounds_w1, [0, 1, 2])
        idx = [i for i, (r, w, a) in enumerate(seq64) if w == "w1" and a == "A"]
        self.assertTrue(all(b - a > 5 for a, b in zip(idx, idx[1:])))

    def test_counts_bits_and_caps(self):
        order = mb_plan.schedule(self.wls, self.allocs, rounds=3)
        # 64-bit: (w1 + w2) * 3 rounds * 5 + slow * 1 round * 5; 32-bit: w1 * 3 * 2 + slow * 2
        self.assertEqual(len(order), 2 * 3 * 5 + 5 + 3 * 2 + 2)
        self.assertFalse(any(j["workload"].name == "w2" and j["bits"] == 32 for j in order))
        self.assertEqual({j["round"] for j in order if j["workload"].name == "slow"}, {0})
        # 64-bit runs before 32-bit within a round
        first32 = next(i for i, j in enumerate(order) if j["bits"] == 32)
        self.assertTrue(all(j["bits"] == 64 for j in order[:first32]))
        self.assertEqual(order[first32]["round"], 0)


class ThreadCounts(unittest.TestCase):
    def test_powers_of_two_up_to_twice_nproc(self):
        self.assertEqual(mb_plan.thread_counts(2), [1, 2, 4])
        self.assertEqual(mb_plan.thread_counts(1), [1, 2])
        self.assertEqual(mb_plan.thread_counts(16), [1, 2, 4, 8, 16, 32])
        self.assertEqual(mb_plan.thread_counts(6), [1, 2, 4, 6, 8, 12])

    def test_workload_rows(self):
        wls = mb_plan.workloads(6, quick=True)
        names = [w.name for w in wls]
        for t in (1, 2, 4, 6, 8, 12):
            self.assertIn("threads_%d" % t, names)
        table = {w.name for w in wls if w.threads and w.table
                 and mb_plan.scaling_family(w.name) == "threads"}
        self.assertEqual(table, {"threads_1", "threads_2", "threads_6"})
        self.assertEqual(len(names), len(set(names)))


def arg(w, key):
    """The value of key=value in a workload's argv (None when absent)."""
    for a in w.argv:
        if a.startswith(key + "="):
            return a.split("=", 1)[1]
    return None


class NewWorkloads(unittest.TestCase):
    def test_ring_points(self):
        for quick in (False, True):
            wls = {w.name: w for w in mb_plan.workloads(2, quick=quick)}
            totals = set()
            for t in (2, 4, 8, 16):
                w = wls["ring_%d" % t]
                self.assertEqual(w.threads, t)
                self.assertEqual(w.bits, (64, 32))
                self.assertEqual(mb_plan.scaling_family(w.name), "ring")
                self.assertEqual(arg(w, "threads"), str(t))
                self.assertEqual(arg(w, "batch"), "64")
                totals.add(int(arg(w, "iters")) * t)
            self.assertEqual(len(totals), 1)  # fixed total work, split over the threads
            # the time table shows the ring at 2 threads and at nproc
            self.assertEqual({n for n, w in wls.items() if n.startswith("ring_") and w.table},
                             {"ring_2"})

    def test_cold_larson_xmalloc(self):
        for nproc, cold_t in ((1, 2), (2, 2), (6, 6)):
            wls = {w.name: w for w in mb_plan.workloads(nproc)}
            for name, threads in (("cold_1", 1), ("cold_%d" % cold_t, cold_t)):
                w = wls[name]
                self.assertEqual(arg(w, "threads"), str(threads))
                self.assertGreaterEqual(int(arg(w, "live")), 20000)
                self.assertEqual(arg(w, "iters"), "2000000")
                self.assertIsNone(w.threads)  # not a scaling point
            self.assertIn("/larson", wls["larson"].argv[0])
            self.assertIn("/xmalloc", wls["xmalloc"].argv[0])
            self.assertGreaterEqual(int(arg(wls["xmalloc"], "pairs")), 2)
            for n in ("cold_1", "larson", "xmalloc", "ring_2"):
                self.assertEqual(wls[n].bits, (64, 32))

    def test_quick_sizes_smaller(self):
        full = {w.name: w for w in mb_plan.workloads(2)}
        quick = {w.name: w for w in mb_plan.workloads(2, quick=True)}
        for name, key in (("ring_2", "iters"), ("cold_1", "iters"), ("cold_2", "iters"),
                          ("larson", "gens"), ("xmalloc", "batches")):
            self.assertLessEqual(int(arg(quick[name], key)) * 10, int(arg(full[name], key)))

    def test_scaling_family(self):
        self.assertEqual(mb_plan.scaling_family("threads_12"), "threads")
        self.assertEqual(mb_plan.scaling_family("ring_4"), "ring")


class InstructionWorkloads(unittest.TestCase):
    def test_startup_first_then_marked_workloads(self):
        wls = mb_plan.instruction_workloads(2)
        names = [w.name for w in wls]
        self.assertEqual(names[0], "startup")
        self.assertEqual(arg(wls[0], "iters"), "0")
        for n in ("small_pairs", "workset_small", "threads_1", "threads_2", "ring_2", "ring_16",
                  "cold_1", "cold_2", "prodcons", "larson", "xmalloc"):
            self.assertIn(n, names)
        for n in ("exhaust", "memreturn", "python", "sqlite", "frag", "threads_4"):
            self.assertNotIn(n, names)
        self.assertEqual(len(names), len(set(names)))

    def test_sizes_at_most_quick(self):
        quick = {w.name: w for w in mb_plan.workloads(2, quick=True)}
        for w in mb_plan.instruction_workloads(2)[1:]:
            for key in ("iters", "items", "batches", "gens"):
                if arg(w, key) is not None:
                    self.assertLessEqual(int(arg(w, key)), int(arg(quick[w.name], key)), w.name)


class FindAllocators(unittest.TestCase):
    def test_order_and_missing(self):
        with tempfile.TemporaryDirectory() as d:
            for f in ("libmimalloc.so.2.0", "libjemalloc.so.2", "libtcmalloc_minimal_debug.so.4"):
                open(os.path.join(d, f), "w").close()
            found = mb_plan.find_allocators(64, repo="/repo", libdir=d)
            self.assertEqual([a.name for a in found], ["glibc", "libmemory", "jemalloc",
                                                       "mimalloc"])
            self.assertIsNone(found[0].preload)
            self.assertEqual(found[1].preload,
                             "/repo/target/x86_64-unknown-linux-gnu/release/libmemory.so")
            self.assertEqual(found[3].preload, os.path.join(d, "libmimalloc.so.2.0"))

    def test_profiled_keeps_its_environment_through_the_snapshot(self):
        with tempfile.TemporaryDirectory() as d:
            lib = os.path.join(d, "libmemory.so")
            with open(lib, "w") as f:
                f.write("not a library")
            ours = mb_plan.Allocator(mb_plan.OURS, lib)
            prof, _ = mb_plan.snapshot(mb_plan.profiled(ours, "/p"), os.path.join(d, "copy"))
            self.assertEqual(prof.name, mb_plan.PROFILED)
            self.assertEqual(prof.preload, os.path.join(d, "copy", "libmemory.so"))
            self.assertEqual(prof.env, (("MALLOCATOR_PROFILE", "/p/profile"),))
            env = mb_runner.child_env(prof.env)
            self.assertEqual(env["MALLOCATOR_PROFILE"], "/p/profile")


if __name__ == "__main__":
    unittest.main()
