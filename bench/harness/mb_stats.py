"""Statistics of the Mallocator benchmark: median and spread, ratios."""
import math
import statistics


def summarize(values):
    """Median and spread of a list of numbers (None values are ignored).

    Returns a dict with n, median, min, max, q1, q3 (the quartiles by the
    inclusive method: for n = 1 they equal the value), or None when there is
    no value at all.
    """
    vals = sorted(float(v) for v in values if v is not None)
    if not vals:
        return None
    if len(vals) == 1:
        q1 = q3 = vals[0]
    else:
        q1, _, q3 = statistics.quantiles(vals, n=4, method="inclusive")
    return {
        "n": len(vals),
        "median": statistics.median(vals),
        "min": vals[0],
        "max": vals[-1],
        "q1": q1,
        "q3": q3,
    }


def ratio(ours, theirs):
    """ours / theirs, or None when either is missing or theirs is zero."""
    if ours is None or theirs is None or theirs == 0:
        return None
    return ours / theirs


def best(row, exclude=(), higher_is_better=False):
    """The best (name, value) of a {name: value} row, ignoring names in
    `exclude` and None values; None if nothing is left."""
    items = [(k, v) for k, v in row.items() if k not in exclude and v is not None]
    if not items:
        return None
    pick = max if higher_is_better else min
    return pick(items, key=lambda kv: kv[1])


def row_ratios(row, ours, baseline="glibc", higher_is_better=False):
    """Ratios of one table row {allocator: median}.

    Returns {"vs_baseline": ours/baseline, "vs_best": ours/best-other,
    "best": name of the best other allocator}. A ratio is always ours/theirs:
    for times and memory < 1 means ours is better; for throughput and bytes
    obtained (higher_is_better) > 1 means ours is better.
    """
    other = best(row, exclude=(ours,), higher_is_better=higher_is_better)
    return {
        "vs_baseline": ratio(row.get(ours), row.get(baseline)),
        "vs_best": ratio(row.get(ours), other[1]) if other else None,
        "best": other[0] if other else None,
    }


def geomean(values):
    """Geometric mean of the positive numbers in values (None if none)."""
    vals = [v for v in values if v is not None and v > 0]
    if not vals:
        return None
    return math.exp(sum(math.log(v) for v in vals) / len(vals))
