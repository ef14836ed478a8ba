"""Runtime apart from tooling: every module of each image's package imports without the other
packages or the development tooling (the images install one package and its runtime extra only)."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import yolo_gateway
import yolo_operator

TOOLING = {"yolo_tools", "onnx", "onnxruntime", "pytriton", "aiohttp", "matplotlib", "pytest", "ultralytics", "torch"}
FORBIDDEN = {
    "yolo_gateway": TOOLING | {"yolo_operator", "kopf", "kubernetes"},
    # kopf runs on aiohttp: a runtime dependency of the operator, tooling for the gateway (the bench's client)
    "yolo_operator": (TOOLING - {"aiohttp"})
    | {"yolo_gateway", "fastapi", "uvicorn", "tritonclient", "cv2", "simplejpeg"},
}


@pytest.mark.parametrize("package", [yolo_gateway, yolo_operator], ids=lambda p: p.__name__)
def test_every_runtime_module_imports_without_tooling_or_the_other_runtime(package):
    modules = [package.__name__] + [f"{package.__name__}.{m.name}" for m in pkgutil.walk_packages(package.__path__)]
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted({n.split('.')[0] for n in sys.modules})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert not loaded & FORBIDDEN[package.__name__], sorted(loaded & FORBIDDEN[package.__name__])


def test_the_tooling_left_the_gateway_package():
    names = {m.name for m in pkgutil.iter_modules(yolo_gateway.__path__)}
    assert not names & {"bench", "devrepo", "fuzz", "local_triton", "prepare", "stack", "synthetic"}, names
