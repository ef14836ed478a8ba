"""One version source: the VERSION file feeds the Python packages (pyproject.toml reads it), the
chart's version and appVersion, and so every default image tag of the project's own."""

from __future__ import annotations

import re

import yaml
from op_helpers import ROOT

import yolo_gateway
import yolo_operator
from yolo_operator.spec import DEFAULT_FETCHER_IMAGE, DEFAULT_GATEWAY_IMAGE, DEFAULT_TRITON_CPU_IMAGE

VERSION = (ROOT / "VERSION").read_text().strip()


def test_version_is_semver():
    assert re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", VERSION), VERSION


def test_chart_version_and_app_version_follow_the_version_file():
    chart = yaml.safe_load((ROOT / "charts" / "yolo-operator" / "Chart.yaml").read_text())
    assert (chart["version"], chart["appVersion"]) == (VERSION, VERSION), (
        "run `make version` after changing VERSION (it stamps Chart.yaml)"
    )


def test_packages_and_default_images_carry_the_version():
    # The installed metadata: `make venv` reinstalls when VERSION changes.
    assert yolo_operator.__version__ == yolo_gateway.__version__ == VERSION
    for image in (DEFAULT_TRITON_CPU_IMAGE, DEFAULT_GATEWAY_IMAGE, DEFAULT_FETCHER_IMAGE):
        assert image.endswith(f":{VERSION}"), image
