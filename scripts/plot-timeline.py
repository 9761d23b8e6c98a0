#!/usr/bin/env python3
"""Draws a real-mode simulation's timeline (the `timeline` of its JSON report,
`cascade sim ... --mode real --report report.json`) as an SVG: resident memory
and the lag (age of the oldest acknowledged change not yet everywhere) over
time, one panel each. Standard library only.

    scripts/plot-timeline.py report.json timeline.svg
"""

import json
import sys

WIDTH, PANEL, MARGIN = 720, 200, 60


def panel(samples, key, scale, label, top):
    """One panel's SVG elements: axes, a polyline, the maximum and a label."""
    xs = [s["at_s"] for s in samples]
    ys = [s[key] / scale for s in samples]
    x_max, y_max = max(xs) or 1.0, (max(ys) or 1.0) * 1.1
    inner = WIDTH - 2 * MARGIN

    def x(v):
        return MARGIN + inner * v / x_max

    def y(v):
        return top + PANEL - PANEL * v / y_max

    points = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in zip(xs, ys))
    return [
        f'<line x1="{MARGIN}" y1="{top + PANEL}" x2="{WIDTH - MARGIN}" y2="{top + PANEL}" stroke="black"/>',
        f'<line x1="{MARGIN}" y1="{top}" x2="{MARGIN}" y2="{top + PANEL}" stroke="black"/>',
        f'<polyline fill="none" stroke="steelblue" stroke-width="2" points="{points}"/>',
        f'<text x="{MARGIN}" y="{top - 6}" font-size="13">{label} (max {max(ys):.0f})</text>',
        f'<text x="{MARGIN - 6}" y="{top + 10}" font-size="11" text-anchor="end">{y_max:.0f}</text>',
        f'<text x="{MARGIN - 6}" y="{top + PANEL}" font-size="11" text-anchor="end">0</text>',
        f'<text x="{WIDTH - MARGIN}" y="{top + PANEL + 16}" font-size="11" text-anchor="end">{x_max:.0f} s</text>',
    ]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1], encoding="utf-8") as f:
        report = json.load(f)
    samples = report.get("timeline") or []
    if not samples:
        sys.exit("the report has no timeline (a real-mode run of 10 s or more writes one)")
    title = f'{report["scenario"]} on {report["topology"]} ({report["nodes"]} nodes), real mode'
    height = 2 * PANEL + 3 * MARGIN
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="20" font-size="15" text-anchor="middle">{title}</text>',
    ]
    parts += panel(samples, "rss_bytes", 1 << 20, "resident memory, MiB", MARGIN)
    parts += panel(samples, "oldest_ms", 1, "lag: oldest change still travelling, ms", 2 * MARGIN + PANEL)
    parts.append("</svg>")
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        f.write("\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
