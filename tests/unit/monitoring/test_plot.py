"""The drift chart: /metrics samples in, an SVG with one line per feature out."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from monitoring.plot import drift_svg, scrape_drift

METRICS = """\
# HELP recsys_drift_psi PSI per feature
# TYPE recsys_drift_psi gauge
recsys_drift_psi{feature="user_count",source="monitor"} 0.73
recsys_drift_psi{feature="user_count",source="report"} 0.5
recsys_drift_psi{source="monitor",feature="item_year"} 0.012
recsys_drift_kl{feature="user_count",source="monitor"} 0.3
"""


def test_scrape_reads_one_source_whatever_the_label_order() -> None:
    assert scrape_drift(METRICS) == {"user_count": 0.73, "item_year": 0.012}
    assert scrape_drift(METRICS, source="report") == {"user_count": 0.5}


def test_the_chart_is_svg_with_a_line_per_feature_and_the_thresholds() -> None:
    svg = drift_svg(
        [0.0, 2.0, 4.0],
        {"user_count": [0.0, 0.4, 0.9], "item_<year>": [0.01, 0.02, 0.01]},
        {"warn": 0.1, "drift": 0.25},
        "PSI & more",
    )
    root = ET.fromstring(svg)  # well-formed, names escaped
    ns = "{http://www.w3.org/2000/svg}"
    lines = root.findall(f"{ns}polyline")
    assert len(lines) == 2
    assert len(lines[0].get("points", "").split()) == 3
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert {"warn", "drift", "user_count", "item_<year>", "PSI & more"} <= set(texts)
