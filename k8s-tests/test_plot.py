"""plot.py, the autoscaling demo's SVG writer: pure Python, no cluster."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from plot import Panel, Series, nice_ticks, svg, write

NS = {"s": "http://www.w3.org/2000/svg"}


def parse(text: str) -> ET.Element:
    return ET.fromstring(text.encode("utf-8"))


def groups(root: ET.Element, cls: str) -> list[ET.Element]:
    return [g for g in root.iter(f"{{{NS['s']}}}g") if g.get("class") == cls]


def polylines(el: ET.Element) -> list[list[tuple[float, float]]]:
    return [
        [tuple(map(float, p.split(","))) for p in pl.get("points", "").split()]  # type: ignore[misc]  # an SVG polyline's points are x,y pairs
        for pl in el.iter(f"{{{NS['s']}}}polyline")
    ]


def texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{{{NS['s']}}}text")]


def series_group(root: ET.Element, label: str) -> ET.Element:
    (g,) = [g for g in groups(root, "series") if g.get("data-label") == label]
    return g


def demo_panels() -> list[Panel]:
    return [
        Panel(
            "Load",
            "req/s",
            [Series("offered", [(0, 10), (30, 80), (60, 10)]), Series("served", [(0, 9), (30, 70)], dashed=True)],
        ),
        Panel("Replicas", "pods", [Series("ready", [(0, 1), (40, 3), (90, 2)], step=True)], integer=True),
    ]


def test_well_formed_with_size_viewbox_and_white_background():
    root = parse(svg(demo_panels(), "demo"))
    assert root.tag == f"{{{NS['s']}}}svg"
    w, h = root.get("width"), root.get("height")
    assert w == "900" and h is not None and int(h) > 2 * 170
    assert root.get("viewBox") == f"0 0 {w} {h}"
    bg = root.find("s:rect", NS)
    assert bg is not None and bg.get("fill") == "white" and bg.get("width") == w
    assert len(groups(root, "panel")) == 2
    assert {"Load", "Replicas", "req/s", "pods", "offered", "served", "ready", "time (s)"} <= set(texts(root))


def test_one_polyline_per_non_empty_series():
    panels = demo_panels() + [Panel("Queue", "requests", [Series("empty", []), Series("depth", [(5, 1), (6, 2)])])]
    root = parse(svg(panels, "demo"))
    per_series = {g.get("data-label"): len(polylines(g)) for g in groups(root, "series")}
    assert per_series == {"offered": 1, "served": 1, "ready": 1, "empty": 0, "depth": 1}
    assert len(polylines(root)) == 4
    dashed = series_group(root, "served").find("s:polyline", NS)
    assert dashed is not None and dashed.get("stroke-dasharray")


def test_step_series_goes_horizontal_then_vertical():
    root = parse(svg(demo_panels(), "demo"))
    (pts,) = polylines(series_group(root, "ready"))
    assert len(pts) == 1 + 2 * 2
    for (xa, ya), (xb, yb), (xc, yc) in zip(pts[0::2], pts[1::2], pts[2::2], strict=False):
        assert yb == ya and xb > xa  # horizontal at the old value
        assert xc == xb and yc != yb  # then vertical to the new one
    (plain,) = polylines(series_group(root, "offered"))
    assert len(plain) == 3


def test_nan_and_inf_split_a_series():
    nan, inf = math.nan, math.inf
    s = Series("gappy", [(0, 1), (1, 2), (2, nan), (3, 4), (4, 5), (5, inf), (6, nan), (7, 3)])
    root = parse(svg([Panel("p", "ms", [s])], "gaps"))
    assert [len(p) for p in polylines(series_group(root, "gappy"))] == [2, 2, 1]
    assert "nan" not in svg([Panel("p", "ms", [s])], "gaps").lower()


def test_text_is_escaped():
    label = 'a<b & "c" ×8'
    text = svg([Panel(label, label, [Series(label, [(0, 1)])])], label, x_label=label, markers=[(0, label)])
    assert "<b " not in text and "&lt;b &amp;" in text
    root = parse(text)
    assert texts(root).count(label) >= 5  # title, panel title, unit, legend, x label, marker
    assert series_group(root, label) is not None


def test_empty_panels_render_with_a_unit_range():
    for panels in (
        [Panel("nothing", "x", [])],
        [Panel("zeros", "x", [Series("z", [(0, 0), (10, 0)])])],
        [Panel("e", "x", [Series("e", [])])],
    ):
        root = parse(svg(panels, "empty"))
        labels = texts(root)
        assert "0.0" in labels and "1.0" in labels, labels
    assert parse(svg([], "no panels")).get("viewBox")


def test_markers_cross_every_panel_with_a_label():
    root = parse(svg(demo_panels(), "demo", markers=[(30, "load ×8"), (60, "load ×1")]))
    assert {"load ×8", "load ×1"} <= set(texts(root))
    for g in groups(root, "panel"):
        lines = [el for el in g.iter(f"{{{NS['s']}}}line") if el.get("class") == "marker"]
        assert len(lines) == 2 and all(el.get("stroke-dasharray") for el in lines)
    xs = {el.get("x1") for el in root.iter(f"{{{NS['s']}}}line") if el.get("class") == "marker"}
    assert len(xs) == 2


def test_panels_share_the_x_axis():
    panels = [
        Panel("a", "req/s", [Series("a", [(10, 1000), (50, 2000)])]),
        Panel("b", "ms", [Series("b", [(10, 0.5), (20, 0.7), (50, 0.1)], step=True)], y_min=None),
        Panel("c", "pods", [Series("c", [(0, 1), (90, 2)])], integer=True),
    ]
    root = parse(svg(panels, "shared"))
    (a,), (b,), (c,) = (polylines(series_group(root, n)) for n in "abc")
    assert a[0][0] == b[0][0] and a[-1][0] == b[-1][0]  # t=10 and t=50 at the same x
    assert c[0][0] < a[0][0] and c[-1][0] > a[-1][0]  # the range spans all panels' points
    x_ticks = [[t for t in g.iter(f"{{{NS['s']}}}text") if t.get("class") == "x-tick"] for g in groups(root, "panel")]
    assert [len(x) for x in x_ticks[:-1]] == [0, 0] and 5 <= len(x_ticks[-1]) <= 10  # under the last panel only


@pytest.mark.parametrize(
    "lo,hi", [(0, 1), (0, 97), (3, 45), (0, 51), (0, 600), (12.5, 13.1), (-7, 300), (0, 1e-3), (5, 5)]
)
def test_nice_ticks(lo: float, hi: float):
    for max_ticks, at_least in ((10, 5), (6, 3)):
        a, b, ticks = nice_ticks(lo, hi, max_ticks)
        step = ticks[1] - ticks[0]
        mantissa = step / 10 ** math.floor(math.log10(step) + 1e-9)
        assert min(abs(mantissa - m) for m in (1, 2, 5)) < 1e-6
        assert a <= lo and b >= hi and ticks[0] == a and math.isclose(ticks[-1], b)
        assert at_least <= len(ticks) <= max_ticks, (lo, hi, ticks)
    _, _, ints = nice_ticks(0, 3.15, 6, integer=True)
    assert ints == [0, 1, 2, 3, 4]


def test_integer_panel_has_integer_labels():
    root = parse(svg([Panel("r", "pods", [Series("r", [(0, 1), (5, 3)], step=True)], integer=True)], "ints"))
    (panel,) = groups(root, "panel")
    svg_text = f"{{{NS['s']}}}text"
    ticks = [t.text for t in panel.iter(svg_text) if t.get("text-anchor") == "end" and t.get("class") is None]
    assert ticks and all(t is not None and t.isdigit() for t in ticks)


def test_write(tmp_path: Path):
    out = tmp_path / "demo.svg"
    write(out, demo_panels(), "demo ×8", markers=[(30, "load ×8")], width=600)
    root = ET.parse(out).getroot()
    assert root.get("width") == "600" and "demo ×8" in texts(root)
