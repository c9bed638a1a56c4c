#!/usr/bin/env python3
"""Plots `courier bench --json` summaries of a rate sweep as an SVG (standard
library only): achieved messages/s and p99 send→inbox latency against offered load.

    scripts/bench-plot.py OUT.svg "LABEL=run-1000.json,run-2000.json,..." ["LABEL2=..."]
"""

import json
import math
import sys

W, H, PAD = 900, 380, 60
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]


def load(spec):
    label, files = spec.split("=", 1)
    runs = [json.load(open(f)) for f in files.split(",")]
    pts = sorted(
        (r["offered_rate"], r["messages_per_s"], r["views"]["inbox"]["p99_ms"])
        for r in runs
    )
    return label, pts


def panel(x0, title, series, ylabel, yval, ylog, ymax, hline=None, diagonal=False):
    w, h = (W - 3 * PAD) / 2, H - 2 * PAD
    xmax = max(p[0] for _, pts in series for p in pts) * 1.05
    ymin = 1.0 if ylog else 0.0

    def sx(x):
        return x0 + x / xmax * w

    def sy(y):
        if ylog:
            y = max(y, ymin)
            return PAD + h - (math.log10(y) - math.log10(ymin)) / (math.log10(ymax) - math.log10(ymin)) * h
        return PAD + h - y / ymax * h

    out = [
        f'<rect x="{x0}" y="{PAD}" width="{w}" height="{h}" fill="none" stroke="#999"/>',
        f'<text x="{x0 + w / 2}" y="{PAD - 20}" text-anchor="middle" font-size="14">{title}</text>',
        f'<text x="{x0 + w / 2}" y="{H - 15}" text-anchor="middle" font-size="12">offered load (messages/s)</text>',
        f'<text x="{x0 - 45}" y="{PAD + h / 2}" font-size="12" transform="rotate(-90 {x0 - 45} {PAD + h / 2})" text-anchor="middle">{ylabel}</text>',
    ]
    ticks = [1, 10, 100, 1000, 10000, 100000] if ylog else [ymax * i / 4 for i in range(5)]
    for t in ticks:
        if t > ymax or t < ymin:
            continue
        out.append(f'<text x="{x0 - 5}" y="{sy(t) + 4}" text-anchor="end" font-size="10">{t:,.0f}</text>')
    for t in sorted({p[0] for _, pts in series for p in pts}):
        out.append(f'<text x="{sx(t)}" y="{PAD + h + 15}" text-anchor="middle" font-size="10">{t:,.0f}</text>')
    if hline is not None:
        out.append(f'<line x1="{x0}" x2="{x0 + w}" y1="{sy(hline[0])}" y2="{sy(hline[0])}" stroke="#888" stroke-dasharray="4"/>')
        out.append(f'<text x="{x0 + w - 4}" y="{sy(hline[0]) - 4}" text-anchor="end" font-size="10" fill="#666">{hline[1]}</text>')
    if diagonal:
        end = min(xmax, ymax)
        out.append(f'<line x1="{sx(0)}" y1="{sy(0)}" x2="{sx(end)}" y2="{sy(end)}" stroke="#bbb" stroke-dasharray="4"/>')
        out.append(f'<text x="{sx(end) - 4}" y="{sy(end) + 14}" text-anchor="end" font-size="10" fill="#666">sent = offered</text>')
    for i, (label, pts) in enumerate(series):
        c = COLORS[i % len(COLORS)]
        path = " ".join(f"{sx(p[0]):.1f},{sy(yval(p)):.1f}" for p in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="2"/>')
        for p in pts:
            out.append(f'<circle cx="{sx(p[0]):.1f}" cy="{sy(yval(p)):.1f}" r="3" fill="{c}"/>')
        out.append(f'<text x="{x0 + 10}" y="{PAD + 16 + 14 * i}" font-size="11" fill="{c}">{label}</text>')
    return out


def main():
    out_path, specs = sys.argv[1], sys.argv[2:]
    series = [load(s) for s in specs]
    top = max(max(p[0], p[1]) for _, pts in series for p in pts) * 1.1
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif">',
           f'<rect width="{W}" height="{H}" fill="white"/>']
    svg += panel(PAD, "throughput", series, "messages/s sent", lambda p: p[1], False, top,
                 diagonal=True)
    svg += panel(2 * PAD + (W - 3 * PAD) / 2, "p99 send → inbox", series, "ms (log)",
                 lambda p: p[2], True, 100000, hline=(100, "100 ms"))
    svg.append("</svg>")
    with open(out_path, "w") as f:
        f.write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
