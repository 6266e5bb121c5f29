#!/usr/bin/env python3
"""Checks what mallocator-prof, go tool pprof and the leak report say of a
profile (run.sh captures their outputs). Exits non-zero with the reason on
the first claim that does not hold.

  check.py shares FORMAT OUTPUT    the three sites hold 60/30/10 % (+-3 points)
                                   of the flat column; FORMAT is prof or go
  check.py inuse OUTPUT            mallocator-prof top of the exit profile:
                                   site_ten holds nearly all, the freed none
  check.py leaks STDERR COUNT SIZE RATE
                                   the leak report names site_ten first, with
                                   its COUNT blocks of SIZE bytes within the
                                   bound (below), and no freed site
  check.py flame SVG BYTES NAME... a well-formed SVG of BYTES (-20 %) in all,
                                   with a frame of each NAME
  check.py estimates FORMAT OUTPUT RATE TRUTH WHEN [COLUMN]
                                   each site of TRUTH (lines "function count
                                   size leaks|freed", or held|gone) is
                                   estimated within its bound (below) in the
                                   flat column (or cum) of `mallocator-prof
                                   top` or `go tool pprof -top -unit=B`:
                                   every site in a profile of WHEN=live; at
                                   any other WHEN (exit, peak) the leaking
                                   (held) ones, and the freed (gone) hold 0
  check.py totals PROF_TOP GO_TOP  go tool pprof read the profile whole: its
                                   total equals mallocator-prof's
  check.py timeline SVG NAME...     a well-formed SVG of one band per legend
                                   row, a band for each NAME (a function of
                                   its stack's label)
  check.py dumps PREFIX PID MIN MAX the numbered dumps PREFIX.PID.<seq>.pb.gz
                                   are numbered 1..n without a gap, MIN <= n
                                   <= MAX; prints their paths in order
  check.py leakreport STDERR RATE TRUTH
                                   the leak report names each leaking site
                                   of TRUTH with its bytes within the bound,
                                   and no freed one

The bound of an estimate. A block of s bytes is sampled with chance
p = 1 - e^(-s/RATE), independently of the others (the countdown between
samples is exponential, so memoryless), and counts as s/p bytes. Of a site's
n blocks (T = n s bytes) U go unsampled, U ~ Binomial(n, 1 - p), and the
estimate is off by (s/p) |U - n (1 - p)|. The check allows the deviation of
U that the exact binomial distribution exceeds with chance at most ALPHA =
6e-7 per estimate (about 1e-4 over the whole test), plus the rounding of the
file's integers. Exact, not 5 normal standard deviations: where n (1 - p) is
small (40 blocks of 100,000 bytes at a rate of 16,384 leave 0.09 unsampled
on average) U is far from normal, and two unsampled blocks, which happen
once in 250 runs, are already more than 5 of them. A path whose blocks are
never sampled, or sampled with the wrong weight, is off by far more.
"""
import glob
import math
import re
import sys
import xml.etree.ElementTree as ET

EXPECTED = {"site_sixty": 60.0, "site_thirty": 30.0, "site_ten": 10.0}
TOLERANCE = 3.0


def fail(why):
    sys.exit(f"check.py: {why}")


def flat_shares(text, fmt):
    """{function: flat %} from `mallocator-prof top` or `go tool pprof -top`.
    Both put flat, flat% first and the function name last."""
    shares = {}
    for line in text.splitlines():
        cols = line.split()
        if len(cols) >= 5 and cols[1].endswith("%") and cols[-1] in EXPECTED:
            shares[cols[-1]] = float(cols[1].rstrip("%"))
    if fmt == "go" and not re.search(r"^Showing nodes", text, re.M):
        fail("not go tool pprof -top output:\n" + text)
    return shares


def shares(fmt, path):
    text = open(path).read()
    got = flat_shares(text, fmt)
    for site, want in EXPECTED.items():
        if site not in got:
            fail(f"{fmt}: {site} missing from\n{text}")
        if abs(got[site] - want) > TOLERANCE:
            fail(f"{fmt}: {site} holds {got[site]} %, expected {want} +- {TOLERANCE}\n{text}")
    print(f"{fmt}: " + ", ".join(f"{s} {got[s]} %" for s in EXPECTED))


def inuse(path):
    text = open(path).read()
    got = flat_shares(text, "prof")
    # The freed sites' samples were all forgotten when freed: exactly zero.
    # What else is live at exit (stdio's buffer, say) is small.
    if got.get("site_ten", 0.0) < 90.0:
        fail(f"site_ten holds {got.get('site_ten')} % of the exit profile, expected >= 90\n{text}")
    for freed in ("site_sixty", "site_thirty"):
        if got.get(freed, 0.0) != 0.0:
            fail(f"{freed} was freed but holds {got[freed]} %\n{text}")
    print(f"exit profile: site_ten {got['site_ten']} % in use, freed sites 0 %")


def leaks(path, count, size, rate):
    text = open(path).read()
    true_bytes, b = count * size, bound(count, size, rate)
    m = re.search(r"^mallocator: leak 1: (\d+) bytes in (\d+) blocks allocated at\n"
                  r"mallocator:     #0 (\S+)", text, re.M)
    if not m:
        fail("no leak 1 in the report:\n" + text)
    est, site = int(m.group(1)), m.group(3)
    if not site.startswith("site_ten+"):
        fail(f"leak 1 is at {site}, expected site_ten\n{text}")
    if abs(est - true_bytes) > b:
        fail(f"leak 1 estimated {est} bytes, true {true_bytes} +- {b:.0f}\n{text}")
    if re.search(r"site_sixty|site_thirty", text):
        fail("a freed site is reported as leaking:\n" + text)
    print(f"leak report: site_ten, {est} bytes estimated of {true_bytes}")


def flame(path, true_bytes, names):
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        fail(f"{path} is not well-formed XML: {e}")
    if not root.tag.endswith("svg"):
        fail(f"{path}: root element {root.tag}, not svg")
    titles = [t.text or "" for t in root.iter() if t.tag.endswith("title")]
    if len(titles) <= len(names):
        fail(f"{path}: only {len(titles)} frames")
    for name in names:
        if not any(name in t for t in titles):
            fail(f"{path}: no frame named {name} among {len(titles)}")
    # Each title ends "(1,234 bytes, 5.6%)"; the widest is the whole.
    total = max(int(m.group(1).replace(",", "")) for t in titles
                if (m := re.search(r"\(([\d,]+) bytes, [\d.]+%\)$", t)))
    if total < 0.8 * true_bytes:
        fail(f"{path}: {total} bytes in all, expected at least 80 % of {true_bytes}")
    print(f"flame graph: {len(titles)} frames, {total} bytes, with {', '.join(names)}")


ALPHA = 6e-7


def bound(count, size, rate):
    """The largest error of the estimate of `count` blocks of `size` bytes
    that a correct profile makes with chance above ALPHA, and the integer
    rounding (half a byte per value written)."""
    p = -math.expm1(-size / rate)
    q = 1.0 - p
    rounding = 2 + 1e-6 * count * size
    if q <= 0.0:
        return rounding
    mean = count * q
    log_q, log_p = math.log(q), math.log1p(-q)
    pmf = [math.exp(math.lgamma(count + 1) - math.lgamma(u + 1) - math.lgamma(count - u + 1)
                    + u * log_q + (count - u) * log_p) for u in range(count + 1)]

    def tail(k):
        """P(|U - mean| > k)."""
        return sum(x for u, x in enumerate(pmf) if abs(u - mean) > k)

    # The smallest deviation k (a whole number of blocks past the mean's
    # fraction) whose tail is within ALPHA, by bisection.
    lo, hi = 0.0, float(count)
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if tail(mid) <= ALPHA else (mid, hi)
    return size / p * hi + rounding


def read_truth(path):
    sites = []
    for line in open(path):
        name, count, size, fate = line.split()
        sites.append((name, int(count), int(size), fate in ("leaks", "held")))
    return sites


def column_bytes(text, fmt, column):
    """{function: bytes} of the flat (or cum) column. mallocator-prof: raw
    integers; go tool pprof -unit=B: integers with a B, 0 bare."""
    index = {"flat": 0, "cum": 2 if fmt == "prof" else 3}[column]
    if fmt == "go" and not re.search(r"^Showing nodes", text, re.M):
        fail("not go tool pprof -top output:\n" + text)
    got = {}
    for line in text.splitlines():
        cols = line.split()
        if len(cols) >= 6 and cols[1].endswith("%") and re.fullmatch(r"\d+B?", cols[index]):
            # A Rust function is named with its path.
            name = cols[-1].rsplit("::", 1)[-1]
            got[name] = got.get(name, 0) + int(cols[index].rstrip("B"))
    return got


def estimates(fmt, path, rate, truth, when, column="flat"):
    text = open(path).read()
    got = column_bytes(text, fmt, column)
    rate = int(rate)
    for name, count, size, leaks in read_truth(truth):
        est = got.get(name, 0)
        if when != "live" and not leaks:
            if est != 0:
                fail(f"{fmt} {column}: {name} is gone but holds {est} bytes\n{text}")
            continue
        true_bytes, b = count * size, bound(count, size, rate)
        if abs(est - true_bytes) > b:
            fail(f"{fmt} {column}: {name} estimated {est} bytes, true {true_bytes} +- {b:.0f}\n{text}")
        print(f"{fmt} {when} {column}: {name} {est} of {true_bytes} (+- {b / true_bytes:.1%})")


def totals(prof_path, go_path):
    prof_text, go_text = open(prof_path).read(), open(go_path).read()
    mine = re.search(r"^Total: (\d+) in-use bytes", prof_text, re.M)
    theirs = re.search(r"^Showing nodes accounting for \d+B?, [\d.]+% of (\d+)B? total", go_text, re.M)
    if not mine or not theirs:
        fail(f"no total in\n{prof_text}\n{go_text}")
    if int(mine.group(1)) != int(theirs.group(1)):
        fail(f"in-use totals differ: mallocator-prof {mine.group(1)}, go tool pprof {theirs.group(1)}")
    print(f"go tool pprof reads the same total: {mine.group(1)} bytes")


def timeline(path, names):
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        fail(f"{path} is not well-formed XML: {e}")
    bands = [p for p in root.iter() if p.tag.endswith("polygon") and p.get("class") == "band"]
    legend = ["".join(t.itertext()) for t in root.iter() if t.tag.endswith("text") and t.get("class") == "legend"]
    if not bands or len(bands) != len(legend):
        fail(f"{path}: {len(bands)} bands for {len(legend)} legend rows")
    for name in names:
        if not any(name in row.split(" (at most")[0] for row in legend):
            fail(f"{path}: no band of {name} among {legend}")
    print(f"timeline: {len(bands)} bands, with {', '.join(names)}")


def dumps(prefix, pid, least, most):
    pattern = re.compile(re.escape(f"{prefix}.{pid}.") + r"(\d+)\.pb\.gz$")
    seqs = sorted(int(m.group(1)) for f in glob.glob(f"{glob.escape(prefix)}.{pid}.*.pb.gz")
                  if (m := pattern.match(f)))
    if seqs != list(range(1, len(seqs) + 1)):
        fail(f"dumps of {prefix}.{pid} are not numbered 1..n: {seqs}")
    if not int(least) <= len(seqs) <= int(most):
        fail(f"{len(seqs)} dumps of {prefix}.{pid}, expected {least}..{most}")
    for seq in seqs:
        print(f"{prefix}.{pid}.{seq:04d}.pb.gz")


def leakreport(path, rate, truth):
    text = open(path).read()
    found = {}
    for m in re.finditer(
            r"^mallocator: leak \d+: (\d+) bytes in \d+ blocks allocated at\nmallocator:     #0 (\S+)", text, re.M):
        # Several stacks may end in one function: its bytes are their sum.
        name = m.group(2).split("+")[0]
        found[name] = found.get(name, 0) + int(m.group(1))
    for name, count, size, leaks in read_truth(truth):
        if not leaks:
            if name in found:
                fail(f"{name} was freed but the leak report names it\n{text}")
            continue
        if name not in found:
            fail(f"the leak report does not name {name}\n{text}")
        true_bytes, b = count * size, bound(count, size, int(rate))
        if abs(found[name] - true_bytes) > b:
            fail(f"leak report: {name} holds {found[name]} bytes, true {true_bytes} +- {b:.0f}\n{text}")
        print(f"leak report: {name} {found[name]} of {true_bytes} (+- {b / true_bytes:.1%})")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "shares":
        shares(*args)
    elif cmd == "inuse":
        inuse(*args)
    elif cmd == "leaks":
        leaks(args[0], *map(int, args[1:]))
    elif cmd == "estimates":
        estimates(*args)
    elif cmd == "totals":
        totals(*args)
    elif cmd == "timeline":
        timeline(args[0], args[1:])
    elif cmd == "dumps":
        dumps(*args)
    elif cmd == "leakreport":
        leakreport(*args)
    elif cmd == "flame":
        flame(args[0], int(args[1]), args[2:])
    else:
        fail(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
