#!/usr/bin/env python3
"""app_python: an allocation-heavy Python program (dicts, lists, strings, json).

Run by the harness under each allocator (LD_PRELOAD); by default with
PYTHONMALLOC=malloc so that every Python object goes through malloc/free
instead of pymalloc's arenas (see bench/README.md).

    python3 app_python.py [scale=N]

Prints one RESULT line whose `check` (a hash of the final output) must be
the same under every allocator.
"""
import hashlib
import json
import os
import sys
import time


def malloc_lib():
    """The preloaded allocator if one is mapped, else libc (like the C workloads)."""
    pre = os.environ.get("LD_PRELOAD", "").split(":")[0]
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        return "unknown"
    if pre and os.path.realpath(pre) in maps or (pre and pre in maps):
        return pre
    for line in maps.splitlines():
        path = line.split()[-1] if len(line.split()) >= 6 else ""
        if "/libc.so" in path or "/libc-" in path:
            return path
    return "unknown"


def records(n, seed):
    x = seed
    out = []
    for i in range(n):
        x = (x * 6364136223846793005 + 1442695040888963407) & (2**64 - 1)
        out.append({
            "id": i,
            "name": "user%08x" % (x >> 32),
            "tags": ["t%d" % ((x >> s) & 63) for s in range(0, 40, 8)],
            "score": (x >> 20) % 100000 / 100.0,
            "text": ("lorem ipsum %d " % (x & 0xFFFF)) * (1 + (x >> 50) % 8),
        })
    return out


def work(scale):
    h = hashlib.sha256()
    for rnd in range(3):
        recs = records(6000 * scale, 12345 + rnd)
        # json round trip: many short-lived strings, lists and dicts
        blob = json.dumps(recs)
        back = json.loads(blob)
        assert len(back) == len(recs)
        # an index of tags -> ids, grown incrementally
        index = {}
        for r in back:
            for t in r["tags"]:
                index.setdefault(t, []).append(r["id"])
        # string processing
        words = {}
        for r in back:
            for w in r["text"].split():
                words[w] = words.get(w, 0) + 1
        top = sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))[:20]
        # sort and slice copies
        ranked = sorted(back, key=lambda r: (r["score"], r["name"]))
        best = [(r["id"], r["score"]) for r in ranked[:100]]
        # build and drop a big nested structure
        groups = {}
        for r in back:
            groups.setdefault(r["name"][:6], []).append(
                {"id": r["id"], "n": len(r["text"]), "t": tuple(r["tags"])})
        summary = {k: (len(v), sum(e["n"] for e in v)) for k, v in groups.items()}
        h.update(json.dumps([sorted((k, len(v)) for k, v in index.items()), top, best,
                             sorted(summary.items())[:500]]).encode())
        del recs, blob, back, index, words, ranked, groups, summary
    return h.hexdigest()[:16]


def main():
    scale = 1
    for a in sys.argv[1:]:
        k, _, v = a.partition("=")
        if k == "scale":
            scale = int(v)
        else:
            sys.exit("unknown argument %r" % a)
    t0 = time.perf_counter()
    check = work(scale)
    secs = time.perf_counter() - t0
    print("RESULT workload=python bits=%d malloc_lib=%s seconds=%.6f check=%s"
          % (64 if sys.maxsize > 2**32 else 32, malloc_lib(), secs, check))


if __name__ == "__main__":
    main()
