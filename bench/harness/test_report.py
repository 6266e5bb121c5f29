"""Tests of the report: tables from run records, REPORT.md and SVG files."""
import os
import tempfile
import unittest
import xml.etree.ElementTree as ET

import mb_report


def fake_data():
    runs = []
    times = {"glibc": [1.0, 1.2, 1.1], "libmemory": [0.5, 0.6, 0.55],
             "jemalloc": [0.8, 0.8, 0.9]}
    for a, ts in times.items():
        for rnd, t in enumerate(ts):
            runs.append({"round": rnd, "bits": 64, "workload": "w", "alloc": a, "threads": None,
                         "ok": True, "problems": [], "wall_s": t + 0.1,
                         "maxrss_kb": {"glibc": 2048, "libmemory": 4096, "jemalloc": 1024}[a],
                         "result": {"seconds": t, "ops_per_sec": 1e6 / t}})
            for th in (1, 2):
                runs.append({"round": rnd, "bits": 64, "workload": "threads_%d" % th,
                             "alloc": a, "threads": th, "ok": True, "problems": [],
                             "wall_s": 1, "maxrss_kb": 1000,
                             "result": {"seconds": t, "ops_per_sec": th * 1e6 / t}})
    # a failed run must not enter the statistics
    runs.append({"round": 3, "bits": 64, "workload": "w", "alloc": "libmemory", "threads": None,
                 "ok": False, "problems": ["killed by signal 11"], "wall_s": 0.01,
                 "maxrss_kb": 10, "result": None})
    wl = lambda name, **kw: dict({"name": name, "bits": [64], "description": "d",
                                  "argv": ["{bin}/x"], "time_key": "seconds", "table": True,
                                  "threads": None}, **kw)
    meta = {"quick": True, "rounds": 3, "machine": {"cpu": "Test CPU", "nproc": 2},
            "allocators": {"64": [{"name": a, "preload": None if a == "glibc" else "/x/" + a}
                                  for a in times]},
            "missing": {"64": ["tcmalloc", "mimalloc"]},
            "workloads": [wl("w"), wl("threads_1", threads=1), wl("threads_2", threads=2)]}
    return {"meta": meta, "runs": runs}


class Tables(unittest.TestCase):
    def test_time_table_medians_and_ratios(self):
        data = fake_data()
        infos = {w["name"]: w for w in data["meta"]["workloads"]}
        t = mb_report.build_table(data["runs"], 64, ["glibc", "libmemory", "jemalloc"],
                                  [("w", "w", mb_report._time)], infos)
        self.assertEqual(len(t), 1)
        row = t[0]
        self.assertEqual(row["cells"]["libmemory"]["n"], 3)  # the failed run is left out
        self.assertAlmostEqual(row["medians"]["glibc"], 1.1)
        self.assertAlmostEqual(row["medians"]["libmemory"], 0.55)
        self.assertAlmostEqual(row["ratios"]["vs_baseline"], 0.5)
        self.assertEqual(row["ratios"]["best"], "jemalloc")
        self.assertAlmostEqual(row["ratios"]["vs_best"], 0.55 / 0.8)

    def test_peak_rss_in_mib(self):
        data = fake_data()
        infos = {w["name"]: w for w in data["meta"]["workloads"]}
        t = mb_report.build_table(data["runs"], 64, ["glibc", "libmemory", "jemalloc"],
                                  [("w", "w", mb_report._peak_rss)], infos)
        self.assertEqual(t[0]["medians"]["libmemory"], 4.0)
        self.assertEqual(t[0]["ratios"]["vs_best"], 4.0)  # jemalloc 1 MiB

    def test_cell_format(self):
        self.assertEqual(mb_report.fmt_cell({"n": 3, "median": 1.5, "min": 1.25, "max": 2.0}),
                         "1.50 (1.25–2.00)")
        self.assertEqual(mb_report.fmt_num(1234.5), "1234")
        self.assertEqual(mb_report.fmt_num(0.01234), "0.0123")
        self.assertEqual(mb_report.fmt_cell(None), "–")


class Report(unittest.TestCase):
    def test_report_and_svgs(self):
        with tempfile.TemporaryDirectory() as d:
            path = mb_report.write_report(fake_data(), d)
            with open(path) as f:
                text = f.read()
            self.assertIn("Test CPU", text)
            self.assertIn("| w | 1.10 (1.00–1.20) | 0.550 (0.500–0.600) | 0.800 (0.800–0.900) |", text)
            self.assertIn("0.50", text)
            self.assertIn("killed by signal 11", text)
            self.assertIn("not installed, left out: tcmalloc, mimalloc", text)
            for name in ("time_ratios_64.svg", "peak_rss_ratios_64.svg",
                         "thread_scaling_64.svg"):
                self.assertIn(name, text)
                ET.parse(os.path.join(d, name))  # well-formed XML
            self.assertFalse(os.path.exists(os.path.join(d, "time_ratios_32.svg")))


def with_ring(data):
    """fake_data plus ring_2 / ring_4 scaling points."""
    for a in ("glibc", "libmemory", "jemalloc"):
        for th in (2, 4):
            data["runs"].append({"round": 0, "bits": 64, "workload": "ring_%d" % th, "alloc": a,
                                 "threads": th, "ok": True, "problems": [], "wall_s": 1,
                                 "maxrss_kb": 1000,
                                 "result": {"seconds": 1.0, "ops_per_sec": th * 2e6}})
    for th in (2, 4):
        data["meta"]["workloads"].append({"name": "ring_%d" % th, "bits": [64],
                                          "description": "d", "argv": ["{bin}/ring"],
                                          "time_key": "seconds", "table": th == 2,
                                          "threads": th})
    return data


def fake_instr():
    meta = {"mode": "instructions", "machine": {"date": "2026-01-01"},
            "libmemory": {"64": {"sha256": "ab" * 32, "source": "/x/libmemory.so",
                                 "mtime": "2026-01-01 00:00:00"}},
            "allocators": {"64": [{"name": a, "preload": None} for a in
                                  ("glibc", "libmemory", "jemalloc")]},
            "workloads": [{"name": "startup", "bits": [64], "description": "s",
                           "argv": ["{bin}/small_pairs", "iters=0"]},
                          {"name": "ring_2", "bits": [64], "description": "r",
                           "argv": ["{bin}/ring"]}]}
    runs = []
    for a, start, per in (("glibc", 2e5, 200.0), ("libmemory", 1e5, 150.0),
                          ("jemalloc", 2e6, 160.0)):
        runs.append({"bits": 64, "workload": "startup", "alloc": a, "ok": True, "ir": start})
        runs.append({"bits": 64, "workload": "ring_2", "alloc": a, "ok": True,
                     "ir": start + per * 1000, "ops": 1000, "ir_per_op": per})
    runs.append({"bits": 64, "workload": "ring_2", "alloc": "libmemory", "ok": False,
                 "ir": 1, "ir_per_op": 0.001, "problems": ["exit status 2"]})
    return {"meta": meta, "runs": runs}


class Scaling(unittest.TestCase):
    def test_ring_has_its_own_table_and_chart(self):
        with tempfile.TemporaryDirectory() as d:
            with open(mb_report.write_report(with_ring(fake_data()), d)) as f:
                text = f.read()
            self.assertIn("### Thread scaling (64-bit)", text)
            self.assertIn("### Ring scaling (cross-thread frees) (64-bit)", text)
            ring = text.split("### Ring scaling")[1].split("###")[0]
            self.assertIn("| 4 | 8.00 | 8.00 | 8.00 |", ring)
            threads = text.split("### Thread scaling")[1].split("###")[0]
            self.assertNotIn("| 4 |", threads)  # ring points stay out of the threads table
            root = ET.parse(os.path.join(d, "ring_scaling_64.svg")).getroot()
            self.assertTrue(any("ring" in (t.text or "").lower() for t in root.iter()))
            self.assertTrue(os.path.exists(os.path.join(d, "thread_scaling_64.svg")))


class Instructions(unittest.TestCase):
    def test_section(self):
        text = mb_report.instructions_section(fake_instr())
        self.assertIn("### Instructions per op (64-bit)", text)
        self.assertIn("| ring_2 | 200 | 150 | 160 | 0.75 | 0.94 (jemalloc) |", text)
        self.assertIn("| start-up (million Ir, subtracted) | 0.200 | 0.100 | 2.00 |", text)
        self.assertIn("exit status 2", text)  # failed run listed, not counted
        self.assertIn("`{bin}/small_pairs iters=0`", text)

    def test_report_with_instructions_only(self):
        instr = fake_instr()
        with tempfile.TemporaryDirectory() as d:
            data = {"meta": dict(instr["meta"], rounds=1, missing={}), "runs": []}
            with open(mb_report.write_report(data, d, instr)) as f:
                text = f.read()
            self.assertIn("## Instructions per operation (callgrind)", text)
            self.assertNotIn("## 64-bit", text)


if __name__ == "__main__":
    unittest.main()
