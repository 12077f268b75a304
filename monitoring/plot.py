"""A small SVG line chart of drift over time (no plotting library: the figure is a few lines).

`scrape_drift` reads the ``recsys_drift_psi`` gauges of a served API's /metrics; `drift_svg` draws
the PSI of the chosen features over time with the warn and drift thresholds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from html import escape

_SAMPLE = re.compile(r"^recsys_drift_psi\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')
WIDTH, HEIGHT, PAD = 760, 360, 56
FLOOR = 1e-3  # the bottom of the log axis
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


def scrape_drift(metrics_text: str, source: str = "monitor") -> dict[str, float]:
    """Feature -> PSI of one /metrics answer (gauges of `source`)."""
    out = {}
    for line in metrics_text.splitlines():
        match = _SAMPLE.match(line.strip())
        if match is None:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        if labels.get("source") == source and "feature" in labels:
            out[labels["feature"]] = float(match["value"])
    return out


def drift_svg(
    times: Sequence[float],
    psi: Mapping[str, Sequence[float]],
    thresholds: Mapping[str, float],
    title: str,
) -> str:
    """An SVG chart: PSI per feature (one line each, log scale) against time, thresholds dashed.

    PSI spans orders of magnitude (0.01 is noise, 0.25 drift, a category never seen in training
    gives 10 and more), so the axis is logarithmic from `FLOOR`.

    Args:
        times: seconds since the first sample, one per sample.
        psi: feature -> its PSI at each sample (same length as `times`).
        thresholds: label -> PSI (e.g. ``{"warn": 0.1, "drift": 0.25}``).
        title: the chart's title.

    Returns:
        The SVG document.
    """
    highest = max([*thresholds.values(), *(v for values in psi.values() for v in values), 1.0])
    decades = range(round(math.log10(FLOOR)), math.ceil(math.log10(highest)) + 1)
    low, high = decades[0], decades[-1]
    end = max(times[-1] if times else 1.0, 1e-9)

    def x(t: float) -> float:
        return PAD + (WIDTH - 2 * PAD) * t / end

    def y(v: float) -> float:
        scaled = (math.log10(max(v, FLOOR)) - low) / (high - low)
        return HEIGHT - PAD - (HEIGHT - 2 * PAD) * scaled

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        'font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="20" text-anchor="middle" font-size="14">{escape(title)}</text>',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
        'stroke="#333"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#333"/>',
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 16}" text-anchor="middle">seconds</text>',
        f'<text x="16" y="{HEIGHT / 2}" transform="rotate(-90 16 {HEIGHT / 2})" '
        'text-anchor="middle">PSI (log)</text>',
    ]
    for decade in decades:
        value = 10.0**decade
        parts.append(
            f'<text x="{PAD - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:g}</text>'
        )
    for i in range(5):
        t = end * i / 4
        parts.append(
            f'<text x="{x(t):.1f}" y="{HEIGHT - PAD + 16}" text-anchor="middle">{t:.0f}</text>'
        )
    for label, value in thresholds.items():
        parts.append(
            f'<line x1="{PAD}" y1="{y(value):.1f}" x2="{WIDTH - PAD}" y2="{y(value):.1f}" '
            'stroke="#999" stroke-dasharray="6 4"/>'
            f'<text x="{WIDTH - PAD + 4}" y="{y(value) + 4:.1f}" fill="#666">{escape(label)}</text>'
        )
    for n, (feature, values) in enumerate(psi.items()):
        colour = COLOURS[n % len(COLOURS)]
        points = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in zip(times, values, strict=True))
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>'
        )
        parts.append(
            f'<text x="{PAD + 8}" y="{PAD + 14 * n + 4}" fill="{colour}">{escape(feature)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)
