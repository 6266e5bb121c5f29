"""Tests of parsing and checking workload output (mb_output)."""
import os
import tempfile
import unittest

import mb_output


class ParseResultLine(unittest.TestCase):
    def test_fields_and_types(self):
        text = ("some progress\n"
                "RESULT workload=workset bits=64 malloc_lib=/lib/x/libc.so.6 ops=1000 "
                "seconds=0.250000 ops_per_sec=4000 check=b93b6008\n")
        r = mb_output.parse_result_line(text)
        self.assertEqual(r["workload"], "workset")
        self.assertEqual(r["bits"], 64)
        self.assertIsInstance(r["ops"], int)
        self.assertEqual(r["ops"], 1000)
        self.assertIsInstance(r["seconds"], float)
        self.assertAlmostEqual(r["seconds"], 0.25)
        self.assertEqual(r["malloc_lib"], "/lib/x/libc.so.6")
        self.assertEqual(r["check"], "b93b6008")  # hex stays a string

    def test_last_result_line_wins(self):
        text = "RESULT a=1\nnoise\nRESULT a=2 b=x\n"
        self.assertEqual(mb_output.parse_result_line(text), {"a": 2, "b": "x"})

    def test_no_result_line(self):
        self.assertIsNone(mb_output.parse_result_line("hello\nRESULTS a=1\n"))
        self.assertIsNone(mb_output.parse_result_line(""))

    def test_malformed_token_is_an_error(self):
        with self.assertRaises(ValueError):
            mb_output.parse_result_line("RESULT ops=1 garbage\n")

    def test_convert(self):
        self.assertEqual(mb_output.convert("-3"), -3)
        self.assertEqual(mb_output.convert("1e3"), 1000.0)
        self.assertEqual(mb_output.convert("12.5"), 12.5)
        self.assertEqual(mb_output.convert("1.2.3"), "1.2.3")
        self.assertEqual(mb_output.convert("0x10"), "0x10")


class CheckRun(unittest.TestCase):
    def run_rec(self, **kw):
        rec = {"rc": 0, "stdout": "RESULT workload=w malloc_lib=/lib/libc.so.6 check=7\n",
               "stderr": "", "timed_out": False}
        rec.update(kw)
        rec.setdefault("result", mb_output.parse_result_line(rec["stdout"]))
        return rec

    def test_clean_glibc_run(self):
        self.assertEqual(mb_output.check_run(self.run_rec(), None, 7), [])

    def test_crash_and_fail_lines(self):
        probs = mb_output.check_run(self.run_rec(rc=-11, signal=11), None)
        self.assertIn("killed by signal 11", probs)
        out = "FAIL: workset: block lost its contents\n"
        probs = mb_output.check_run(self.run_rec(rc=2, stdout=out, result=None), None)
        self.assertIn("exit status 2", probs)
        self.assertIn("FAIL: workset: block lost its contents", probs)
        self.assertIn("no RESULT line", probs)

    def test_wrong_allocator_is_caught(self):
        with tempfile.TemporaryDirectory() as d:
            lib = os.path.join(d, "libfoo.so")
            open(lib, "w").close()
            link = os.path.join(d, "libfoo.so.1")
            os.symlink(lib, link)
            # glibc served malloc although libfoo was meant
            probs = mb_output.check_run(self.run_rec(), lib)
            self.assertTrue(any("not " + lib in p for p in probs), probs)
            # a link to the same file is the same allocator
            out = "RESULT malloc_lib=%s\n" % link
            self.assertEqual(mb_output.check_run(self.run_rec(stdout=out), lib), [])
            # glibc expected, libfoo reported
            probs = mb_output.check_run(self.run_rec(stdout=out), None)
            self.assertEqual(len(probs), 1)

    def test_preload_error_and_check_mismatch(self):
        err = "ERROR: ld.so: object '/x.so' from LD_PRELOAD cannot be preloaded: ignored.\n"
        probs = mb_output.check_run(self.run_rec(stderr=err), None)
        self.assertTrue(any("LD_PRELOAD failed" in p for p in probs))
        probs = mb_output.check_run(self.run_rec(), None, reference_check=8)
        self.assertTrue(any("differs" in p for p in probs))

    def test_timeout(self):
        self.assertIn("timed out", mb_output.check_run(self.run_rec(timed_out=True), None))


if __name__ == "__main__":
    unittest.main()
