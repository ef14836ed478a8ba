"""`make demo` is a newcomer's first command: it must start the stack, detect, write the PNG and stop."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import cv2
import pytest

from yolo_tools.local_triton import free_port


def test_demo_detects_on_a_fresh_image_and_stops(tmp_path):
    out = tmp_path / "demo.png"
    env = {
        **os.environ,
        "GATEWAY_PORT": str(free_port()),
        "TRITON_HTTP_PORT": str(free_port()),
        "TRITON_GRPC_PORT": str(free_port()),
        "TRITON_METRICS_PORT": str(free_port()),
    }
    cmd = [
        sys.executable,
        "-m",
        "yolo_tools.stack",
        "demo",
        "--seed",
        "5",
        "--output",
        str(out),
        "--log-dir",
        str(tmp_path),
    ]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    found = int(re.search(r"-> (\d+) detections", r.stdout).group(1))
    rows = re.findall(r"^(circle|rectangle|triangle) +([01]\.\d\d)  \(", r.stdout, re.M)
    assert found >= 1 and len(rows) == found, r.stdout  # accuracy itself is test_accuracy_on_fresh_held_out_images
    assert "ground truth:" in r.stdout and "timings (ms)" in r.stdout
    image = cv2.imread(str(out))
    assert image is not None and image.shape == (720, 1280, 3)
    # the stack is gone: nothing listens on the gateway port any more
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(env["GATEWAY_PORT"])), timeout=1).close()
