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


if __name__ == "__main__":
    unittest.main()
