"""Allocation-heavy, multithreaded Python workload for run_programs.sh.

8 threads each build dicts, lists, strings and bytearrays, round-trip them
through json, sort, and hash what they made. The output is a deterministic
digest per thread and one over all of them, so a run under
LD_PRELOAD=libmemory.so must print exactly what a run without it prints.
"""

import hashlib
import json
import random
import sys
import threading

THREADS = 8


def work(tid, results):
    rng = random.Random(1000 + tid)
    h = hashlib.sha256()

    # A dict of lists of strings, grown and shrunk.
    d = {}
    for i in range(15000):
        key = "k%d-%d-%s" % (tid, i, "x" * (i % 17))
        d[key] = [rng.randrange(1 << 30) for _ in range(i % 7)]
    for i in range(0, 15000, 3):
        del d["k%d-%d-%s" % (tid, i, "x" * (i % 17))]
    h.update(str(len(d)).encode())

    # json round trip of a nested structure.
    obj = {
        "tid": tid,
        "items": [{"id": i, "name": "item-%05d" % i, "tags": ["t%d" % (i % 13)] * (i % 5),
                   "v": i * 0.5} for i in range(6000)],
        "map": {str(k): v for k, v in list(d.items())[:3000]},
    }
    text = json.dumps(obj, sort_keys=True)
    back = json.loads(text)
    if back != obj:
        raise SystemExit("json round trip changed the data in thread %d" % tid)
    h.update(text.encode())

    # Sorting: ints, strings, tuples.
    nums = [rng.randrange(1 << 40) for _ in range(60000)]
    nums.sort()
    h.update(b"".join(n.to_bytes(8, "little") for n in nums[::97]))
    words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randrange(1, 12)))
             for _ in range(12000)]
    words.sort()
    h.update("|".join(words[::11]).encode())
    pairs = sorted(zip(words, range(len(words))), key=lambda p: (len(p[0]), p[0], -p[1]))
    h.update(repr(pairs[:200]).encode())

    # Large buffers grown piece by piece (realloc of big blocks), strings
    # concatenated and split.
    buf = bytearray()
    for i in range(8000):
        buf += bytes([i & 255]) * (i % 900)
    h.update(hashlib.sha256(buf).digest())
    s = ""
    for i in range(3000):
        s += "line %d %s\n" % (i, "y" * (i % 50))
    lines = s.split("\n")
    h.update(str(len(lines)).encode() + lines[-2].encode())
    big = [list(range(i % 100)) for i in range(8000)]
    h.update(str(sum(len(x) for x in big)).encode())

    results[tid] = h.hexdigest()


def main():
    results = [None] * THREADS
    threads = [threading.Thread(target=work, args=(t, results)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = hashlib.sha256()
    for tid, r in enumerate(results):
        if r is None:
            print("thread %d failed" % tid)
            return 1
        print("thread %d: %s" % (tid, r))
        total.update(r.encode())
    print("all: %s" % total.hexdigest())
    return 0


if __name__ == "__main__":
    sys.exit(main())
