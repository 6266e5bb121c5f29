"""Tables, REPORT.md and SVG charts from the run records."""
import datetime
import os
import platform
import shutil
import subprocess

import mb_stats
import mb_svg
import mb_syscalls
from mb_plan import BASELINE, OURS, REPO_DIR, scaling_family

KIB_PER_MIB = 1024.0


# ---------------------------------------------------------------- measures

def _time(run, wl):
    key = wl.get("time_key", "seconds")
    if key == "wall_s":
        return run.get("wall_s")
    return (run.get("result") or {}).get(key)


def _field(name, scale=1.0):
    def get(run, wl):
        v = (run.get("result") or {}).get(name)
        return None if v is None or isinstance(v, str) else v * scale
    return get


def _peak_rss(run, wl):
    v = run.get("maxrss_kb")
    return None if v is None else v / KIB_PER_MIB


def _mops(run, wl):
    v = (run.get("result") or {}).get("ops_per_sec")
    return None if v is None else v / 1e6


def values(runs, bits, workload, alloc, getter, wl_info):
    return [getter(r, wl_info) for r in runs
            if r["bits"] == bits and r["workload"] == workload and r["alloc"] == alloc
            and r.get("ok")]


def build_table(runs, bits, allocs, rows, wl_infos, higher_is_better=False):
    """rows: list of (label, workload name, getter). Returns a list of
    {label, workload, cells {alloc: summary or None}, medians, ratios}."""
    table = []
    for label, wname, getter in rows:
        info = wl_infos.get(wname, {})
        cells = {a: mb_stats.summarize(values(runs, bits, wname, a, getter, info))
                 for a in allocs}
        if all(c is None for c in cells.values()):
            continue
        medians = {a: (c["median"] if c else None) for a, c in cells.items()}
        table.append({
            "label": label, "workload": wname, "cells": cells, "medians": medians,
            "ratios": mb_stats.row_ratios(medians, OURS, BASELINE, higher_is_better),
        })
    return table


# --------------------------------------------------------------- rendering

def fmt_num(v):
    """Three significant digits, no exponent for ordinary magnitudes."""
    if v is None:
        return "–"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 100:
        return "%.0f" % v
    for limit, fmt in ((10, "%.1f"), (1, "%.2f"), (0.1, "%.3f"), (0.01, "%.4f")):
        if a >= limit:
            return fmt % v
    return "%.3g" % v


def fmt_cell(summary):
    if summary is None:
        return "–"
    if summary["n"] == 1 or summary["min"] == summary["max"]:
        return fmt_num(summary["median"])
    return "%s (%s–%s)" % (fmt_num(summary["median"]), fmt_num(summary["min"]),
                           fmt_num(summary["max"]))


def fmt_ratio(r):
    return "–" if r is None else "%.2f" % r


def markdown_table(table, allocs, label_header="workload"):
    head = [label_header] + list(allocs) + ["%s/%s" % (OURS, BASELINE), "%s/best other" % OURS]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] + ["--:"] * (len(head) - 1)) + "|"]
    for row in table:
        best = row["ratios"]["best"]
        vs_best = fmt_ratio(row["ratios"]["vs_best"])
        if best and row["ratios"]["vs_best"] is not None:
            vs_best += " (%s)" % best
        cells = [row["label"]] + [fmt_cell(row["cells"][a]) for a in allocs]
        cells += [fmt_ratio(row["ratios"]["vs_baseline"]), vs_best]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratio_matrix(table, allocs):
    """{label: {competitor: ours/competitor}} from a table's medians."""
    out = {}
    for row in table:
        m = row["medians"]
        out[row["label"]] = {a: mb_stats.ratio(m.get(OURS), m.get(a))
                             for a in allocs if a != OURS}
    return out


def headline_table(time_table, rss_table, allocs):
    comps = [a for a in allocs if a != OURS]
    tm, rm = ratio_matrix(time_table, allocs), ratio_matrix(rss_table, allocs)
    head = ["workload"] + ["time vs %s" % c for c in comps] + ["peak RSS vs %s" % c for c in comps]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] + ["--:"] * (len(head) - 1)) + "|"]
    for row in time_table:
        label = row["label"]
        cells = [label] + [_mark(tm.get(label, {}).get(c)) for c in comps]
        cells += [_mark(rm.get(label, {}).get(c)) for c in comps]
        lines.append("| " + " | ".join(cells) + " |")
    geo = ["*geometric mean*"]
    geo += [_mark(mb_stats.geomean([tm[l].get(c) for l in tm])) for c in comps]
    geo += [_mark(mb_stats.geomean([rm[l].get(c) for l in rm])) for c in comps]
    lines.append("| " + " | ".join(geo) + " |")
    return "\n".join(lines)


def _mark(r):
    """A ratio ours/theirs for lower-is-better measures; bold when ours
    is worse by more than 10 %."""
    if r is None:
        return "–"
    return "**%.2f**" % r if r > 1.10 else "%.2f" % r


# ------------------------------------------------------------------ charts

def ratio_series(table, allocs):
    """Per allocator, its median / glibc's per row (glibc itself, always 1,
    is the reference line of the chart)."""
    groups = [row["label"] for row in table]
    series = []
    for a in allocs:
        if a == BASELINE:
            continue
        series.append((a, [mb_stats.ratio(row["medians"].get(a), row["medians"].get(BASELINE))
                           for row in table]))
    return groups, series


def scaling_families(runs, bits):
    """The thread-scaling families present in one width ("threads" first,
    then the others by name)."""
    fams = {scaling_family(r["workload"]) for r in runs if r["bits"] == bits and r.get("threads")}
    return sorted(fams, key=lambda f: (f != "threads", f))


def scaling_series(runs, bits, allocs, wl_infos, family="threads"):
    points = sorted({(r["threads"], r["workload"]) for r in runs
                     if r["bits"] == bits and r.get("threads")
                     and scaling_family(r["workload"]) == family})
    xs = [t for t, _ in points]
    series = []
    for a in allocs:
        ys = []
        for t, wname in points:
            s = mb_stats.summarize(values(runs, bits, wname, a, _mops, wl_infos.get(wname, {})))
            ys.append(s["median"] if s else None)
        series.append((a, ys))
    return xs, series, points


# -------------------------------------------------------------- machine

def machine_info():
    info = {"nproc": os.cpu_count(), "kernel": platform.release(),
            "machine": platform.machine(),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            info["memory_gib"] = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        info["glibc"] = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        pass
    py = shutil.which("python3")
    if py:
        try:
            ver = subprocess.run([py, "--version"], capture_output=True, text=True,
                                 timeout=10).stdout.strip()
            info["python3"] = "%s (%s)" % (ver, os.path.realpath(py))
        except (OSError, subprocess.SubprocessError):
            pass
    info["packages"] = {}
    for pkg in ("libjemalloc2", "libtcmalloc-minimal4", "libmimalloc2.0", "sqlite3"):
        try:
            out = subprocess.run(["dpkg-query", "-W", "-f=${Architecture} ${Version}\n", pkg],
                                 capture_output=True, text=True, timeout=10)
            vers = sorted({l.strip() for l in out.stdout.splitlines() if l.strip()})
            if out.returncode == 0 and vers:
                info["packages"][pkg] = ", ".join(vers)
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        head = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        if head:
            info["libmemory_commit"] = head + (" (src/ modified)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return info


# ------------------------------------------------------------------ report

# scaling family -> (title, table text, chart subtitle)
SCALING_TEXT = {
    "threads": ("Thread scaling",
                "threads: each thread its own working set, fixed work per thread; throughput = "
                "all threads' ops / time from the first thread's start to the last thread's "
                "end.",
                "own working set per thread"),
    "ring": ("Ring scaling (cross-thread frees)",
             "ring: T threads in a ring, each frees the batches of 64 blocks its predecessor "
             "allocated (every free cross-thread); fixed total work split over the threads; "
             "ops = mallocs + frees.",
             "every free cross-thread"),
}

def _section(runs, bits, allocs, wl_infos, out_dir, charts):
    """Markdown of one width; writes its SVGs into out_dir."""
    tbl_wls = [w for w, i in wl_infos.items() if bits in i["bits"] and i.get("table", True)]
    md = []
    time_rows = [(w, w, _time) for w in tbl_wls]
    time_t = build_table(runs, bits, allocs, time_rows, wl_infos)
    rss_t = build_table(runs, bits, allocs, [(w, w, _peak_rss) for w in tbl_wls], wl_infos)
    if not time_t:
        return "", {}
    md.append("### Headline: %s relative to each allocator (%d-bit)\n" % (OURS, bits))
    md.append("Median time and median peak RSS of %s divided by the other allocator's: "
              "**< 1 means %s is faster / smaller**, > 1 slower / bigger (bold: worse by "
              "more than 10 %%).\n" % (OURS, OURS))
    md.append(headline_table(time_t, rss_t, allocs) + "\n")

    md.append("### Time (%d-bit), seconds, lower is better\n" % bits)
    md.append("Median (min–max) over the rounds. The C workloads time their own work; "
              "python and sqlite are the whole process (wall clock).\n")
    md.append(markdown_table(time_t, allocs) + "\n")

    md.append("### Peak RSS (%d-bit), MiB, lower is better\n" % bits)
    md.append("ru_maxrss of the workload process (wait4).\n")
    md.append(markdown_table(rss_t, allocs) + "\n")

    if "memreturn" in wl_infos and bits in wl_infos["memreturn"]["bits"]:
        mr = build_table(runs, bits, allocs, [
            ("RSS at peak (MiB)", "memreturn", _field("rss_peak_kb", 1 / KIB_PER_MIB)),
            ("RSS after free (MiB)", "memreturn", _field("rss_after_kb", 1 / KIB_PER_MIB)),
            ("RSS retained, % of growth", "memreturn", _field("rss_retained_pct")),
            ("VmSize after free (MiB)", "memreturn", _field("vm_after_kb", 1 / KIB_PER_MIB)),
            ("VmSize retained, % of growth", "memreturn", _field("vm_retained_pct")),
        ], wl_infos)
        if mr:
            md.append("### RSS after free (%d-bit), lower is better\n" % bits)
            md.append("memreturn: %s. Measured right after the last free (no sleep; "
                      "allocators that purge lazily or by timer keep pages here).\n"
                      % wl_infos["memreturn"]["description"])
            md.append(markdown_table(mr, allocs, "measure") + "\n")

    if "frag" in wl_infos:
        fr = build_table(runs, bits, allocs, [
            ("RSS / live bytes", "frag", _field("rss_per_live")),
            ("RSS at end (MiB)", "frag", _field("rss_kb", 1 / KIB_PER_MIB)),
            ("peak RSS (MiB)", "frag", _peak_rss),
        ], wl_infos)
        if fr:
            md.append("### Fragmentation (%d-bit), lower is better\n" % bits)
            md.append("frag: %s. RSS with only the long-lived blocks live, divided by "
                      "their requested bytes.\n" % wl_infos["frag"]["description"])
            md.append(markdown_table(fr, allocs, "measure") + "\n")

    if "exhaust" in wl_infos:
        ex = build_table(runs, bits, allocs, [
            ("bytes obtained (MiB)", "exhaust", _field("bytes", 1 / 1048576.0)),
            ("blocks obtained", "exhaust", _field("blocks")),
        ], wl_infos, higher_is_better=True)
        ex2 = build_table(runs, bits, allocs, [
            ("time to NULL (s)", "exhaust", _field("seconds")),
            ("RSS at NULL (MiB)", "exhaust", _field("rss_kb", 1 / KIB_PER_MIB)),
            ("freeing every 64th block afterwards (s)", "exhaust", _field("free_seconds")),
            ("RSS after that (MiB)", "exhaust", _field("rss_end_kb", 1 / KIB_PER_MIB)),
        ], wl_infos)
        if ex:
            md.append("### Bytes before failure (%d-bit), higher is better\n" % bits)
            md.append("exhaust: %s. Ratios > 1: %s obtained more.\n"
                      % (wl_infos["exhaust"]["description"], OURS))
            md.append(markdown_table(ex, allocs, "measure") + "\n")
            md.append("Same runs, lower is better:\n")
            md.append(markdown_table(ex2, allocs, "measure") + "\n")

    scaling = {}
    for fam in scaling_families(runs, bits):
        xs, series, points = scaling_series(runs, bits, allocs, wl_infos, fam)
        scaling[fam] = (xs, series)
        sc = build_table(runs, bits, allocs,
                         [("%d" % t, w, _mops) for t, w in points], wl_infos,
                         higher_is_better=True)
        title, what, _ = SCALING_TEXT.get(fam, (fam, fam + ": ops / time.", ""))
        md.append("### %s (%d-bit), million ops/s, higher is better\n" % (title, bits))
        md.append("%s Ratios > 1: %s has more throughput. This machine has %d CPUs.\n"
                  % (what, OURS, os.cpu_count()))
        md.append(markdown_table(sc, allocs, "threads") + "\n")

    files = {}
    groups, ser = ratio_series(time_t, allocs)
    files["time_ratios_%d.svg" % bits] = mb_svg.ratio_bar_chart(
        "Time relative to glibc (%d-bit)" % bits, groups, ser,
        ylabel="time / glibc time (log scale)", subtitle="median over rounds; lower is faster")
    groups, ser = ratio_series(rss_t, allocs)
    files["peak_rss_ratios_%d.svg" % bits] = mb_svg.ratio_bar_chart(
        "Peak RSS relative to glibc (%d-bit)" % bits, groups, ser,
        ylabel="peak RSS / glibc peak RSS (log scale)", subtitle="ru_maxrss; lower is smaller")
    for fam, (xs, series) in scaling.items():
        title, _, subtitle = SCALING_TEXT.get(fam, (fam, "", fam))
        files["%s_scaling_%d.svg" % ("thread" if fam == "threads" else fam, bits)] = \
            mb_svg.line_chart("%s (%d-bit)" % (title, bits), xs, series, xlabel="threads",
                              ylabel="million ops/s (higher is better)",
                              subtitle="%s; %d CPUs" % (subtitle, os.cpu_count()))
    for name, svg in files.items():
        with open(os.path.join(out_dir, name), "w") as f:
            f.write(svg)
        charts.append(name)
    md.append("Charts: " + ", ".join("[%s](%s)" % (n, n) for n in files) + "\n")
    md += ["![%s](%s)\n" % (n, n) for n in files]
    return "\n".join(md), {"time": time_t, "peak_rss": rss_t}


def _ir_per_op(run, wl):
    return run.get("ir_per_op")


def _startup_mir(run, wl):
    v = run.get("ir")
    return None if v is None else v / 1e6


def instructions_section(instr):
    """Markdown of the instructions mode (callgrind counts), per width."""
    meta, runs = instr["meta"], instr["runs"]
    wl_infos = {w["name"]: w for w in meta["workloads"]}
    md = ["## Instructions per operation (callgrind)\n"]
    md.append("Each workload once per allocator under `valgrind --tool=callgrind` (LD_PRELOAD "
              "as in the timed runs), at small sizes; %s, libmemory sha256 %s. Instructions "
              "per op = (Ir of the run − Ir of `startup`, the same program start with no "
              "work) / the ops the workload reports: one op is a malloc+free replacement in "
              "small_pairs, workset, threads, cold and prodcons, one malloc or one free call "
              "in ring, larson and xmalloc. The count includes the workload's own work "
              "(random sizes, tags, checks, hand-offs), the same for every allocator. It does "
              "not move with the load of the machine (run to run within 1 %%), but it is not "
              "time: cache misses, atomics and system calls cost far more than one "
              "instruction. Lower is better; ratios < 1: %s executes fewer.\n"
              % (meta.get("machine", {}).get("date", "date unknown"),
                 ", ".join("%s-bit %s" % (b, o["sha256"][:16])
                           for b, o in sorted(meta.get("libmemory", {}).items(), reverse=True))
                 or "unknown", OURS))
    for bits in sorted({int(b) for b in meta["allocators"]}, reverse=True):
        allocs = [a["name"] for a in meta["allocators"][str(bits)]]
        names = [w["name"] for w in meta["workloads"]
                 if bits in w["bits"] and w["name"] != "startup"]
        t = build_table(runs, bits, allocs, [(w, w, _ir_per_op) for w in names], wl_infos)
        if not t:
            continue
        t += build_table(runs, bits, allocs, [("start-up (million Ir, subtracted)", "startup",
                                              _startup_mir)], wl_infos)
        md.append("### Instructions per op (%d-bit), lower is better\n" % bits)
        md.append(markdown_table(t, allocs) + "\n")
    md.append("Commands (instructions mode sizes):\n")
    md += ["- %s: `%s`" % (w["name"], " ".join(w["argv"])) for w in meta["workloads"]]
    md += failed_runs("\nFailed callgrind runs (left out above):\n", runs)
    md.append("")
    return "\n".join(md)


def failed_runs(title, runs):
    """Markdown lines listing the runs of a single-run mode that failed
    (none when all passed)."""
    fails = [r for r in runs if not r.get("ok")]
    if not fails:
        return []
    return [title] + ["- %d-bit %s %s: %s" % (r["bits"], r["workload"], r["alloc"],
                                              "; ".join(r["problems"])) for r in fails]


def _syscall_rows(runs, bits, names, calls):
    """{workload: {alloc: net count of `calls`}} of one width."""
    rows = {}
    for r in runs:
        if r["bits"] == bits and r.get("ok") and r.get("net") is not None:
            rows.setdefault(r["workload"], {})[r["alloc"]] = mb_syscalls.total(r["net"], calls)
    return [(w, rows[w]) for w in names if w in rows]


def syscall_table(rows, allocs):
    """Markdown: a count per allocator, then ours / glibc's and ours / the
    fewest of jemalloc, tcmalloc and mimalloc (named; bold above 2, the
    issue's bound)."""
    head = ["workload"] + list(allocs) + ["%s/%s" % (OURS, BASELINE),
                                          "%s/fewest of %s" % (OURS, ", ".join(mb_syscalls.PEERS))]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] + ["--:"] * (len(head) - 1)) + "|"]
    for name, row in rows:
        ours = row.get(OURS)
        best = mb_syscalls.fewest_of_peers(row)
        r = mb_syscalls.vs_peers(ours, row)
        vs = "–" if r is None else ("**%.2f**" % r if r > 2 else "%.2f" % r)
        if best is not None and r is not None:
            vs += " (%s)" % best[0]
        base = row.get(BASELINE)
        cells = [name] + ["–" if row.get(a) is None else "%d" % row[a] for a in allocs]
        cells += ["–" if ours is None or not base else "%.2f" % (ours / float(base)), vs]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def syscalls_section(sysc):
    """Markdown of the system-call pass (strace counts), per width."""
    meta, runs = sysc["meta"], sysc["runs"]
    names = [w["name"] for w in meta["workloads"] if w["name"] != "startup"]
    seccomp = meta.get("strace", {}).get("seccomp_bpf")
    md = ["## System calls per run (strace)\n"]
    md.append("Each workload once per allocator under `strace -f -c%s` (through the spawner, "
              "LD_PRELOAD as in the timed runs, %s sizes; %s, libmemory sha256 %s), counting "
              "%s. The counts of `startup` (the same program start with no work, under the "
              "same allocator) are subtracted. They include the workload's own calls (the "
              "condition variables of the hand-off workloads, prodcons's `sched_yield` "
              "backoff), the same program under every allocator. Every counted call stops "
              "the program for strace, so futex and sched_yield, which depend on how threads "
              "meet, move from run to run; the memory calls much less. Fewer is better; the "
              "last column is the issue's measure (bold: above 2).\n"
              % (" --seccomp-bpf" if seccomp else "", "quick" if meta.get("quick") else "full",
                 meta.get("machine", {}).get("date", "date unknown"),
                 ", ".join("%s-bit %s" % (b, o["sha256"][:16])
                           for b, o in sorted(meta.get("libmemory", {}).items(), reverse=True))
                 or "unknown", ", ".join(mb_syscalls.CALLS)))
    for bits in sorted({int(b) for b in meta["allocators"]}, reverse=True):
        allocs = [a["name"] for a in meta["allocators"][str(bits)]]
        rows = _syscall_rows(runs, bits, names, mb_syscalls.CALLS)
        if not rows:
            continue
        md.append("### All counted calls (%d-bit)\n" % bits)
        md.append(syscall_table(rows, allocs) + "\n")
        md.append("### Memory calls: %s (%d-bit)\n" % (", ".join(mb_syscalls.MEMORY_CALLS), bits))
        md.append(syscall_table(_syscall_rows(runs, bits, names, mb_syscalls.MEMORY_CALLS),
                                allocs) + "\n")
        md.append("### Waiting: %s (%d-bit)\n" % (", ".join(mb_syscalls.WAIT_CALLS), bits))
        md.append(syscall_table(_syscall_rows(runs, bits, names, mb_syscalls.WAIT_CALLS),
                                allocs) + "\n")
        md.append("### By call (%d-bit)\n" % bits)
        md.append("| workload | " + " | ".join(allocs) + " |\n|---|" + "---|" * len(allocs))
        by = {(r["workload"], r["alloc"]): r["net"] for r in runs
              if r["bits"] == bits and r.get("ok") and r.get("net") is not None}
        for name in names:
            if not any((name, a) in by for a in allocs):
                continue
            cells = [", ".join("%s %d" % (c, n) for c, n in by[(name, a)].items() if n) or "0"
                     if (name, a) in by else "–" for a in allocs]
            md.append("| %s | %s |" % (name, " | ".join(cells)))
        starts = {r["alloc"]: r.get("calls") for r in runs
                  if r["bits"] == bits and r["workload"] == "startup" and r.get("ok")}
        md.append("\nStart-up calls subtracted (%d-bit): %s.\n" % (bits, "; ".join(
            "%s %d" % (a, mb_syscalls.total(starts[a])) for a in allocs if a in starts)))
    md += failed_runs("Failed strace runs (left out above):\n", runs)
    md.append("")
    return "\n".join(md)


def write_report(data, out_dir, instr=None, sysc=None):
    """Writes REPORT.md and the SVGs into out_dir; returns the REPORT path.
    instr, sysc: the records of the instructions mode (instructions.json)
    and of the system-call pass (syscalls.json), if any, each rendered as
    its own section."""
    runs, meta = data["runs"], data["meta"]
    wl_infos = {w["name"]: w for w in meta["workloads"]}
    md = ["# Mallocator benchmark report\n"]
    mi = meta["machine"]
    md.append("Mode: **%s**, %d round(s), runs interleaved across allocators "
              "(A B C D E A B C D E ...). Generated by `bench/harness/bench.py`; raw numbers "
              "in [results.json](results.json).\n"
              % ("quick" if meta.get("quick") else "full", meta["rounds"]))
    md.append("## Machine\n")
    md.append("| | |\n|---|---|")
    for k, label in (("cpu", "CPU"), ("nproc", "CPUs (nproc)"), ("memory_gib", "memory (GiB)"),
                     ("kernel", "kernel"), ("glibc", "libc"), ("python3", "python3 (apps)"),
                     ("date", "date"),
                     ("libmemory_commit", "libmemory commit")):
        if k in mi:
            md.append("| %s | %s |" % (label, mi[k]))
    for pkg, ver in sorted(mi.get("packages", {}).items()):
        md.append("| %s | %s |" % (pkg, ver))
    md.append("")
    md.append("## Allocators\n")
    md.append("Every allocator runs the same binary; all but glibc are loaded with "
              "LD_PRELOAD, and each C workload checks (dladdr of `malloc`) that the intended "
              "library really serves malloc.\n")
    md.append("| width | allocator | library |\n|---|---|---|")
    for bits in sorted(meta["allocators"], key=int, reverse=True):
        for a in meta["allocators"][bits]:
            md.append("| %s-bit | %s | %s |" % (bits, a["name"], a["preload"] or "(glibc malloc, no preload)"))
    for bits, o in sorted(meta.get("libmemory", {}).items(), reverse=True):
        md.append("\n%s-bit %s: a copy of `%s` (built %s, sha256 %s), taken when the suite "
                  "started." % (bits, OURS, os.path.relpath(o["source"], REPO_DIR), o["mtime"],
                                o["sha256"][:16]))
    missing = meta.get("missing", {})
    for bits, names in sorted(missing.items()):
        if names:
            md.append("\n%s-bit: not installed, left out: %s." % (bits, ", ".join(names)))
    md.append("")
    md.append("## Workloads\n")
    md.append("| workload | widths | what it does | command |\n|---|---|---|---|")
    for w in meta["workloads"]:
        md.append("| %s | %s | %s | `%s` |" % (w["name"], "/".join(str(b) for b in w["bits"]),
                                              w["description"], " ".join(w["argv"])))
    md.append("")
    md.append("## How to read\n")
    md.append("Every cell is the median over the rounds with (min–max). `%s/%s` is the "
              "ratio of the medians; `%s/best other` divides by the best of the other "
              "allocators in that row (named). For times and memory a ratio < 1 means %s "
              "is better; for throughput and bytes obtained, > 1 means %s is better. "
              "The suite never fails on a number: it only reports. Runs that crashed or "
              "failed a self-check are left out of the statistics and listed under "
              "Failures.\n" % (OURS, BASELINE, OURS, OURS, OURS))
    charts = []
    tables = {}
    for bits in sorted({int(b) for b in meta["allocators"]}, reverse=True):
        allocs = [a["name"] for a in meta["allocators"][str(bits)]]
        text, t = _section(runs, bits, allocs, wl_infos, out_dir, charts)
        if text:
            md.append("## %d-bit\n" % bits)
            if bits == 32 and len(allocs) <= 2:
                md.append("Only glibc is available as a 32-bit competitor here.\n")
            md.append(text)
            tables[bits] = t
    if sysc is not None:
        md.append(syscalls_section(sysc))
    if instr is not None:
        md.append(instructions_section(instr))
    fails = [r for r in runs if not r.get("ok")]
    md.append("## Failures\n")
    if not fails:
        md.append("None: every run exited normally and passed its self-checks.\n")
    else:
        md.append("| width | workload | allocator | round | problem |\n|---|---|---|---|---|")
        for r in fails:
            md.append("| %d | %s | %s | %d | %s |" % (r["bits"], r["workload"], r["alloc"],
                                                     r["round"], "; ".join(r["problems"])))
        md.append("")
    path = os.path.join(out_dir, "REPORT.md")
    with open(path, "w") as f:
        f.write("\n".join(md))
    return path
