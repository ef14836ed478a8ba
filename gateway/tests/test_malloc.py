"""The allocator tuning the gateway applies at start (malloc.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from yolo_gateway import malloc
from yolo_gateway.settings import Settings


def test_zero_leaves_glibcs_defaults() -> None:
    assert malloc.tune(0) is False


def test_glibc_takes_its_maximum_mmap_threshold() -> None:
    # in a child, so this test process keeps its allocator as it was
    code = "from yolo_gateway import malloc; print(malloc.tune(32))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"


def test_the_setting_is_bounded_by_glibcs_maximum() -> None:
    assert Settings().malloc_mmap_threshold_mb == 32
    with pytest.raises(ValidationError):
        Settings(malloc_mmap_threshold_mb=64)
