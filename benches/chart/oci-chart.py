#!/usr/bin/env python3
"""Draws the OCI launch-latency chart (BENCHMARKS.md section 9) from the measured table.

Input: the CSV the `oci` bench group writes (`<criterion dir>/oci-launch.csv`; the committed
run is `benches/results/oci-launch.csv`): one row per tool with `tool`, `median_ms`,
`round_min_ms`, `round_max_ms`, `runs` and nook-oci's ratio to it. Output: an SVG bar chart
(median per tool, the range of the interleaved rounds' medians as a whisker, the numbers on
the bars, the issue's goals as dashed lines; `podman+TOOL` rows: `podman run --rm` with TOOL
as `--runtime`, their ratio to podman+nook-oci; `c_floor`: the same run as bare system calls in
a process of its own, `nk-floor-run`). Python 3 standard library only.

    python3 benches/chart/oci-chart.py [CSV] [SVG]
    (defaults: benches/results/oci-launch.csv, BENCHMARKS-oci-launch.svg; run from the repo root)
"""

import csv
import sys
from xml.sax.saxutils import escape

COLORS = {"nook-oci": "#2b8a3e", "runc": "#1c7ed6", "crun": "#e8590c",
          "podman+nook-oci": "#69db7c", "podman+runc": "#74c0fc", "podman+crun": "#ffa94d",
          "c_floor": "#495057"}
GOALS = {"crun": 0.25, "runc": 0.1}  # issue 15: nook-oci <= 0.25x crun and <= 0.1x runc


def read(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in ("median_ms", "round_min_ms", "round_max_ms"):
            r[k] = float(r[k])
    return rows


def nice_max(v):
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 500, 1000):
        if v <= step * 5:
            return step * ((v // step) + 1), step
    return v * 1.1, v / 5


def draw(rows, title):
    width, left, right, top, bar_h, gap = 960, 140, 330, 96, 34, 22
    height = top + len(rows) * (bar_h + gap) + 80
    plot_w = width - left - right
    top_v = max(r["round_max_ms"] for r in rows)
    goals = [(f"goal {GOALS[r['tool']]}× {r['tool']}", GOALS[r["tool"]] * r["median_ms"])
             for r in rows if r["tool"] in GOALS]
    vmax, step = nice_max(max([top_v] + [g for _, g in goals]) * 1.08)

    def x(v):
        return left + plot_w * v / vmax

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="13">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="26" text-anchor="middle" font-size="16" font-weight="bold">'
        f"{escape(title)}</text>",
        f'<text x="{width / 2}" y="46" text-anchor="middle" fill="#555" font-size="12">median of all runs; '
        "whisker: min–max of the interleaved rounds' medians (lower is better)</text>",
    ]
    plot_bottom = top + len(rows) * (bar_h + gap)
    t = 0.0
    while t <= vmax + 1e-9:
        out.append(f'<line x1="{x(t):.1f}" y1="{top - 8}" x2="{x(t):.1f}" y2="{plot_bottom}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{x(t):.1f}" y="{plot_bottom + 18}" text-anchor="middle" fill="#555">{t:g}</text>')
        t += step
    out.append(f'<text x="{left + plot_w / 2}" y="{plot_bottom + 40}" text-anchor="middle">'
               "launch latency: `TOOL run` / `podman --runtime TOOL run --rm` of /bin/true, spawn to exit (ms)</text>")
    for i, r in enumerate(rows):
        y = top + i * (bar_h + gap)
        color = COLORS.get(r["tool"], "#868e96")
        m, lo, hi = r["median_ms"], r["round_min_ms"], r["round_max_ms"]
        out.append(f'<text x="{left - 10}" y="{y + bar_h / 2 + 5}" text-anchor="end" font-weight="bold">'
                   f'{escape(r["tool"])}</text>')
        out.append(f'<rect x="{left}" y="{y}" width="{x(m) - left:.1f}" height="{bar_h}" fill="{color}"/>')
        cy = y + bar_h / 2
        out.append(f'<line x1="{x(lo):.1f}" y1="{cy}" x2="{x(hi):.1f}" y2="{cy}" stroke="#222" stroke-width="1.5"/>')
        for v in (lo, hi):
            out.append(f'<line x1="{x(v):.1f}" y1="{cy - 7}" x2="{x(v):.1f}" y2="{cy + 7}" stroke="#222" '
                       'stroke-width="1.5"/>')
        label = f"{m:.2f} ms ({lo:.2f}–{hi:.2f})"
        ratio = r.get("nook_ratio_median") or ""
        if ratio:
            # podman rows: the ratio of podman+nook-oci to the row.
            label += f" · nook-oci: {float(ratio):.2f}×"
        out.append(f'<text x="{max(x(hi), x(m)) + 8:.1f}" y="{cy + 5}">{escape(label)}</text>')
    for k, (name, v) in enumerate(sorted(goals, key=lambda g: g[1])):
        y_label = top - 12 - 14 * k
        out.append(f'<line x1="{x(v):.1f}" y1="{y_label + 3}" x2="{x(v):.1f}" y2="{plot_bottom}" stroke="#c92a2a" '
                   'stroke-dasharray="5,4"/>')
        out.append(f'<text x="{x(v) + 3:.1f}" y="{y_label}" fill="#c92a2a" font-size="11">'
                   f"{escape(name)} = {v:.2f} ms</text>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "benches/results/oci-launch.csv"
    dst = sys.argv[2] if len(sys.argv) > 2 else "BENCHMARKS-oci-launch.svg"
    rows = read(src)
    with open(dst, "w") as f:
        f.write(draw(rows, "OCI runtime launch latency, identical busybox bundle"))
    print(f"wrote {dst} ({len(rows)} tools)")


if __name__ == "__main__":
    main()
