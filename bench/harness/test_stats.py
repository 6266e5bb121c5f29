"""Tests of the statistics and ratios (mb_stats)."""
import unittest

import mb_stats


class Summarize(unittest.TestCase):
    def test_odd(self):
        s = mb_stats.summarize([5, 1, 3])
        self.assertEqual((s["n"], s["median"], s["min"], s["max"]), (3, 3, 1, 5))
        self.assertEqual((s["q1"], s["q3"]), (2, 4))

    def test_even_and_quartiles(self):
        s = mb_stats.summarize([4, 1, 2, 3])
        self.assertEqual(s["median"], 2.5)
        self.assertAlmostEqual(s["q1"], 1.75)
        self.assertAlmostEqual(s["q3"], 3.25)

    def test_single_and_none(self):
        s = mb_stats.summarize([None, 7.5])
        self.assertEqual((s["n"], s["median"], s["q1"], s["q3"]), (1, 7.5, 7.5, 7.5))
        self.assertIsNone(mb_stats.summarize([]))
        self.assertIsNone(mb_stats.summarize([None]))

    def test_median_resists_an_outlier(self):
        self.assertEqual(mb_stats.summarize([1.0, 1.1, 0.9, 1.0, 50.0])["median"], 1.0)


class Ratios(unittest.TestCase):
    def test_ratio(self):
        self.assertEqual(mb_stats.ratio(2.0, 4.0), 0.5)
        self.assertIsNone(mb_stats.ratio(None, 4.0))
        self.assertIsNone(mb_stats.ratio(1.0, 0))

    def test_row_ratios_lower_is_better(self):
        row = {"glibc": 2.0, "libmemory": 1.5, "jemalloc": 1.0, "tcmalloc": 3.0,
               "mimalloc": None}
        r = mb_stats.row_ratios(row, "libmemory")
        self.assertEqual(r["vs_baseline"], 0.75)
        self.assertEqual(r["best"], "jemalloc")
        self.assertEqual(r["vs_best"], 1.5)

    def test_row_ratios_higher_is_better(self):
        row = {"glibc": 100.0, "libmemory": 150.0, "jemalloc": 120.0}
        r = mb_stats.row_ratios(row, "libmemory", higher_is_better=True)
        self.assertEqual(r["best"], "jemalloc")
        self.assertAlmostEqual(r["vs_best"], 1.25)
        self.assertAlmostEqual(r["vs_baseline"], 1.5)

    def test_best_excludes_ours(self):
        # ours is the fastest; the best *other* is glibc
        r = mb_stats.row_ratios({"glibc": 2.0, "libmemory": 1.0}, "libmemory")
        self.assertEqual((r["best"], r["vs_best"]), ("glibc", 0.5))

    def test_missing_ours(self):
        r = mb_stats.row_ratios({"glibc": 2.0}, "libmemory")
        self.assertIsNone(r["vs_baseline"])
        self.assertIsNone(r["vs_best"])

    def test_geomean(self):
        self.assertAlmostEqual(mb_stats.geomean([2.0, 8.0]), 4.0)
        self.assertAlmostEqual(mb_stats.geomean([0.5, 2.0, None]), 1.0)
        self.assertIsNone(mb_stats.geomean([None]))


if __name__ == "__main__":
    unittest.main()
