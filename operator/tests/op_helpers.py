"""Helpers shared by the operator's unit tests."""

from __future__ import annotations

from pathlib import Path

import yaml

from yolo_operator import builders as b

ROOT = Path(__file__).resolve().parents[2]
META = b.Meta("shapes", "vision", generation=3)


def sample_spec(**overrides: object) -> dict:
    spec = yaml.safe_load((ROOT / "examples" / "yoloservice.yaml").read_text())["spec"]
    for dotted, value in overrides.items():
        node = spec
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return spec
