"""The chart's README, generated from Chart.yaml and the `# --` comments of values.yaml, in
helm-docs' conventions (a `# -- text` comment above a key documents it; `#` lines right after it
continue the text; a documented map is shown whole unless its own keys are documented too).

    python -m yolo_tools.chartdocs            # rewrite charts/yolo-operator/README.md
    python -m yolo_tools.chartdocs --check    # exit 1 when the README is not current (make test: unit)

A hand-written generator rather than helm-docs itself: that is a Go binary this project would
build only for this, and the conventions it reads are the same.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "yolo-operator"
README = CHART / "README.md"
KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?:\s|$)")


@dataclass
class Row:
    key: str
    value: Any
    description: str


def _lookup(values: Any, path: list[str]) -> Any:
    for part in path:
        values = values[part]
    return values


def _type(value: Any) -> str:
    return {bool: "bool", int: "int", float: "float", str: "string", list: "list", dict: "object"}.get(
        type(value), "string" if value is None else type(value).__name__
    )


def rows(values_text: str) -> list[Row]:
    """Every documented key and every undocumented leaf, in file order (documented maps whole)."""
    values = yaml.safe_load(values_text)
    described: dict[tuple[str, ...], str] = {}
    order: list[tuple[str, ...]] = []
    stack: list[tuple[int, str]] = []
    pending: list[str] | None = None
    for line in values_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = [stripped[4:].strip()]
            continue
        if stripped.startswith("#"):
            if pending is not None:
                pending.append(stripped[1:].strip())
            continue
        m = KEY.match(line)
        if not m:
            if stripped and not stripped.startswith("-"):
                pending = None
            continue
        indent = len(m["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m["key"]))
        path = tuple(k for _, k in stack)
        order.append(path)
        if pending is not None:
            described[path] = " ".join(p for p in pending if p)
            pending = None
    out = []
    for path in order:
        parent = next((path[:i] for i in range(1, len(path)) if path[:i] in described), None)
        if parent is not None and not any(len(p) > len(parent) and p[: len(parent)] == parent for p in described):
            continue  # inside a map documented whole
        value = _lookup(values, list(path))
        is_leaf = not isinstance(value, dict) or not value
        if path in described or is_leaf:
            out.append(Row(".".join(path), value, described.get(path, "")))
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    lines = [
        f"# {chart['name']}",
        "",
        f"![Version: {chart['version']}](https://img.shields.io/badge/Version-{chart['version']}-informational)"
        f" ![AppVersion: {chart['appVersion']}](https://img.shields.io/badge/AppVersion-{chart['appVersion']}-informational)",
        "",
        chart["description"],
        "",
        "Generated from `Chart.yaml` and the `# --` comments of `values.yaml` by `python -m yolo_tools.chartdocs`;",
        "a unit test fails when it is not current. Do not edit by hand.",
        "",
        "## Install",
        "",
        "```bash",
        f"helm install yolo-operator oci://<registry>/charts/{chart['name']} --version {chart['version']} \\",
        "  --namespace yolo-system --create-namespace",
        "```",
        "",
        f"Kubernetes `{chart.get('kubeVersion', '')}`. The CRD (`crds/`) is installed with the chart.",
        "",
        "## Values",
        "",
        "| Key | Type | Default | Description |",
        "|-----|------|---------|-------------|",
    ]
    for row in rows((CHART / "values.yaml").read_text()):
        default = json.dumps(row.value, separators=(",", ":"))
        lines.append(f"| {row.key} | {_type(row.value)} | `{_cell(default)}` | {_cell(row.description)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 when README.md is not what would be generated")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        if not README.exists() or README.read_text() != text:
            print(f"{README.relative_to(ROOT)} is not current: run `python -m yolo_tools.chartdocs`", file=sys.stderr)
            return 1
        return 0
    README.write_text(text)
    print(f"wrote {README.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
