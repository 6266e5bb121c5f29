"""Hand-written SVG charts (no plotting library): grouped bars of ratios on a
log scale, and lines (thread scaling)."""
import math
from xml.sax.saxutils import escape

PALETTE = {
    "glibc": "#7f7f7f",
    "libmemory": "#d62728",
    "jemalloc": "#1f77b4",
    "tcmalloc": "#2ca02c",
    "mimalloc": "#9467bd",
}
_EXTRA = ["#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]


def color(name, index=0):
    return PALETTE.get(name, _EXTRA[index % len(_EXTRA)])


def _fmt(v):
    if v != 0 and abs(v) < 1:
        return "%.3g" % v
    return ("%.2f" % v).rstrip("0").rstrip(".") if abs(v) < 100 else "%.0f" % v


def _text(x, y, s, size=12, anchor="start", extra=""):
    return ('<text x="%.1f" y="%.1f" font-size="%d" text-anchor="%s"%s>%s</text>'
            % (x, y, size, anchor, extra, escape(str(s))))


def _legend(names, x, y):
    parts = []
    for i, name in enumerate(names):
        parts.append('<rect x="%.1f" y="%.1f" width="12" height="12" fill="%s"/>'
                     % (x, y + 18 * i, color(name, i)))
        parts.append(_text(x + 18, y + 18 * i + 11, name, 12))
    return parts


def _document(width, height, parts):
    head = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
            'viewBox="0 0 %d %d" font-family="DejaVu Sans, Arial, sans-serif">\n'
            '<rect x="0" y="0" width="%d" height="%d" fill="white"/>\n'
            % (width, height, width, height, width, height))
    return head + "\n".join(parts) + "\n</svg>\n"


def _log_ticks(lo, hi):
    """Ticks for a log axis covering [lo, hi]: powers of two, with 1.5x steps
    when the range is narrow."""
    ticks = []
    e = math.floor(math.log2(lo))
    while 2.0 ** e <= hi * 1.0001:
        ticks.append(2.0 ** e)
        e += 1
    if len(ticks) < 4:
        ticks = sorted(set(ticks + [t * 1.5 for t in ticks if lo <= t * 1.5 <= hi]
                           + [t * 0.75 for t in ticks if lo <= t * 0.75 <= hi]))
    return [t for t in ticks if lo / 1.0001 <= t <= hi * 1.0001]


def ratio_bar_chart(title, groups, series, ylabel="ratio (log scale)", subtitle=None):
    """Grouped bar chart of ratios on a log2 axis; bars start at 1 (the
    reference), so a bar going up is worse than the reference when lower is
    better.

    groups: category labels (e.g. workloads); series: list of
    (name, [value or None per group]).
    """
    n_groups, n_series = len(groups), max(1, len(series))
    vals = [v for _, vs in series for v in vs if v is not None and v > 0]
    lo = min(vals + [1.0]) / 1.15
    hi = max(vals + [1.0]) * 1.15
    lo, hi = min(lo, 0.8), max(hi, 1.25)
    bar_w = 12
    group_w = n_series * bar_w + 14
    left, top, right, bottom = 70, 50 if not subtitle else 68, 130, 120
    plot_w = max(300, n_groups * group_w)
    plot_h = 320
    width, height = left + plot_w + right, top + plot_h + bottom

    def y_of(v):
        return top + plot_h * (1 - (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo)))

    parts = [_text(left, 24, title, 16, extra=' font-weight="bold"')]
    if subtitle:
        parts.append(_text(left, 44, subtitle, 12, extra=' fill="#444"'))
    for t in _log_ticks(lo, hi):
        y = y_of(t)
        parts.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s" stroke-width="1"/>'
                     % (left, y, left + plot_w, y, "#000" if t == 1 else "#ddd"))
        parts.append(_text(left - 6, y + 4, _fmt(t), 11, "end"))
    parts.append(_text(16, top + plot_h / 2, ylabel, 12, "middle",
                       ' transform="rotate(-90 16 %.1f)"' % (top + plot_h / 2)))
    y1 = y_of(1.0)
    for g, label in enumerate(groups):
        gx = left + g * group_w + 7
        for s, (name, vs) in enumerate(series):
            v = vs[g] if g < len(vs) else None
            x = gx + s * bar_w
            if v is None or v <= 0:
                parts.append(_text(x + bar_w / 2, y1 - 3, "\u00d7", 10, "middle",
                                   ' fill="%s"' % color(name, s)))
                continue
            yv = y_of(min(max(v, lo), hi))
            parts.append('<rect x="%.1f" y="%.1f" width="%d" height="%.1f" fill="%s">'
                         '<title>%s</title></rect>'
                         % (x, min(yv, y1), bar_w - 1, max(abs(y1 - yv), 1), color(name, s),
                            escape("%s %s: %.3f" % (label, name, v))))
        cx = gx + n_series * bar_w / 2
        parts.append(_text(cx, top + plot_h + 14, label, 11, "end",
                           ' transform="rotate(-40 %.1f %.1f)"' % (cx, top + plot_h + 14)))
    parts.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#000"/>'
                 % (left, top, plot_w, plot_h))
    parts += _legend([name for name, _ in series], left + plot_w + 16, top)
    return _document(width, height, parts)


def line_chart(title, xs, series, xlabel="threads", ylabel="", subtitle=None):
    """Lines of y against x (x on a log2 axis when all x are positive, as
    thread counts 1, 2, 4 ...). series: list of (name, [y or None per x])."""
    left, top, right, bottom = 80, 50 if not subtitle else 68, 130, 60
    plot_w, plot_h = 480, 320
    width, height = left + plot_w + right, top + plot_h + bottom
    ys = [y for _, vs in series for y in vs if y is not None]
    ymax = max(ys) * 1.1 if ys and max(ys) > 0 else 1.0
    logx = all(x > 0 for x in xs) and len(xs) > 1
    fx = (lambda x: math.log2(x)) if logx else float
    xlo, xhi = (fx(min(xs)), fx(max(xs))) if xs else (0.0, 1.0)
    if xhi == xlo:
        xhi = xlo + 1

    def px(x):
        return left + plot_w * (fx(x) - xlo) / (xhi - xlo)

    def py(y):
        return top + plot_h * (1 - y / ymax)

    parts = [_text(left, 24, title, 16, extra=' font-weight="bold"')]
    if subtitle:
        parts.append(_text(left, 44, subtitle, 12, extra=' fill="#444"'))
    step = _nice_step(ymax / 5)
    t = 0.0
    while t <= ymax:
        parts.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>'
                     % (left, py(t), left + plot_w, py(t)))
        parts.append(_text(left - 6, py(t) + 4, _fmt(t), 11, "end"))
        t += step
    for x in xs:
        parts.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eee"/>'
                     % (px(x), top, px(x), top + plot_h))
        parts.append(_text(px(x), top + plot_h + 16, x, 11, "middle"))
    parts.append(_text(left + plot_w / 2, top + plot_h + 40, xlabel, 12, "middle"))
    parts.append(_text(18, top + plot_h / 2, ylabel, 12, "middle",
                       ' transform="rotate(-90 18 %.1f)"' % (top + plot_h / 2)))
    for s, (name, vs) in enumerate(series):
        pts = [(px(x), py(y)) for x, y in zip(xs, vs) if y is not None]
        if len(pts) > 1:
            parts.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>'
                         % (color(name, s), " ".join("%.1f,%.1f" % p for p in pts)))
        for (x, y), (xv, yv) in zip(pts, [(x, y) for x, y in zip(xs, vs) if y is not None]):
            parts.append('<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"><title>%s</title>'
                         '</circle>' % (x, y, color(name, s),
                                        escape("%s, %s threads: %.3g" % (name, xv, yv))))
    parts.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#000"/>'
                 % (left, top, plot_w, plot_h))
    parts += _legend([name for name, _ in series], left + plot_w + 16, top)
    return _document(width, height, parts)


def _nice_step(raw):
    if raw <= 0:
        return 1.0
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag
