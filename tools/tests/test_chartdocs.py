"""The chart's README is generated from values.yaml (helm-docs conventions) and kept current."""

from __future__ import annotations

from yolo_tools import chartdocs


def test_chart_readme_is_current():
    assert chartdocs.main(["--check"]) == 0, "run `make chart-docs` and commit charts/yolo-operator/README.md"


def test_every_value_is_documented():
    undocumented = [r.key for r in chartdocs.rows((chartdocs.CHART / "values.yaml").read_text()) if not r.description]
    assert undocumented == [], f"values.yaml keys without a `# --` comment: {undocumented}"


def test_conventions():
    text = """a:
  # -- first line
  # continued
  b: 1
  # -- a map shown whole
  c:
    d: [1]
# -- documented map with a documented child
e:
  # -- child
  f: x
g: 2
"""
    rows = {r.key: (r.value, r.description) for r in chartdocs.rows(text)}
    assert rows == {
        "a.b": (1, "first line continued"),
        "a.c": ({"d": [1]}, "a map shown whole"),
        "e": ({"f": "x"}, "documented map with a documented child"),
        "e.f": ("x", "child"),
        "g": (2, ""),
    }
