"""Tests of the SVG charts: well-formed XML with the expected elements."""
import unittest
import xml.etree.ElementTree as ET

import mb_svg

NS = "{http://www.w3.org/2000/svg}"


def parse(svg):
    return ET.fromstring(svg.encode())


class RatioBarChart(unittest.TestCase):
    def test_well_formed_with_one_bar_per_value(self):
        series = [("glibc", [1.0, 1.0, 1.0]), ("libmemory", [0.5, 2.0, None]),
                  ("jemalloc", [0.8, 1.2, 3.0])]
        svg = mb_svg.ratio_bar_chart("Time <ratios> & more", ["a", "b<c", "d"], series,
                                     subtitle="sub & title")
        root = parse(svg)
        self.assertEqual(root.tag, NS + "svg")
        bars = [r for r in root.iter(NS + "rect") if r.find(NS + "title") is not None]
        self.assertEqual(len(bars), 8)  # 9 values, one None
        texts = "".join(t.text or "" for t in root.iter(NS + "text"))
        self.assertIn("Time <ratios> & more", texts)  # escaped in the file, intact in XML
        self.assertIn("b<c", texts)
        for r in bars:
            self.assertGreater(float(r.get("height")), 0)

    def test_bar_direction_from_reference(self):
        svg = mb_svg.ratio_bar_chart("t", ["g"], [("up", [2.0]), ("down", [0.5])])
        root = parse(svg)
        bars = {r.find(NS + "title").text.split()[1]: r for r in root.iter(NS + "rect")
                if r.find(NS + "title") is not None}
        up, down = bars["up:"], bars["down:"]
        # log scale: 2x and 0.5x are the same height, one above and one below 1
        self.assertAlmostEqual(float(up.get("height")), float(down.get("height")), places=0)
        self.assertLess(float(up.get("y")), float(down.get("y")))

    def test_all_missing(self):
        parse(mb_svg.ratio_bar_chart("t", ["g"], [("x", [None])]))


class LineChart(unittest.TestCase):
    def test_well_formed_lines_and_points(self):
        svg = mb_svg.line_chart("Scaling", [1, 2, 4], [("glibc", [1.0, 1.8, 2.0]),
                                                      ("libmemory", [1.2, None, 2.5])],
                                ylabel="Mops/s")
        root = parse(svg)
        lines = list(root.iter(NS + "polyline"))
        self.assertEqual(len(lines), 2)
        self.assertEqual(len(lines[0].get("points").split()), 3)
        self.assertEqual(len(lines[1].get("points").split()), 2)
        self.assertEqual(len(list(root.iter(NS + "circle"))), 5)
        # higher throughput is drawn higher (smaller y)
        pts = [tuple(map(float, p.split(","))) for p in lines[0].get("points").split()]
        self.assertTrue(pts[0][1] > pts[1][1] > pts[2][1])
        self.assertTrue(pts[0][0] < pts[1][0] < pts[2][0])

    def test_empty(self):
        parse(mb_svg.line_chart("t", [], []))


if __name__ == "__main__":
    unittest.main()
