"""Fixtures that start the real things: the PyPI tritonserver and the gateway as an HTTP server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from yolo_tools.devrepo import copy_model, write_variant
from yolo_tools.local_triton import LocalTriton, TritonPorts, free_port
from yolo_tools.stack import GatewayProcess


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed local models, plus variants made by `prepare` from the source export."""
    repo = tmp_path_factory.mktemp("model_repository")
    for name in ("yolo", "yolo_end2end"):
        copy_model(repo, name)
    write_variant(repo, "yolo_v5", output_format="v5")
    write_variant(repo, "yolo_fp32", input_layout="fp32-nchw")

    def one_in_queue(cfg) -> None:  # a queue that holds one request, to provoke Triton's own rejection
        cfg.max_batch_size = 1
        del cfg.dynamic_batching.preferred_batch_size[:]
        cfg.dynamic_batching.default_queue_policy.max_queue_size = 1

    write_variant(repo, "yolo_q1", edit=one_in_queue)
    return repo


@pytest.fixture(scope="session")
def single_model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("single_repo")
    copy_model(repo, "yolo")
    return repo


@pytest.fixture(scope="session")
def triton(model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTriton]:
    logs = tmp_path_factory.mktemp("logs")
    with LocalTriton(model_repo, TritonPorts.free(), log_path=logs / "triton.log") as server:
        yield server


@pytest.fixture(scope="session")
def gateway(triton: LocalTriton, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """The gateway as a real uvicorn process in front of the session's Triton."""
    logs = tmp_path_factory.mktemp("gwlogs")
    env = {
        "YOLO_GATEWAY_TRITON_URL": triton.grpc_target,
        "YOLO_GATEWAY_MODEL_NAME": "yolo",
        "YOLO_GATEWAY_MAX_BODY_BYTES": str(8 * 1024 * 1024),
        # Room for the 200-request burst of the batching test: queued, not shed.
        "YOLO_GATEWAY_MAX_QUEUE": "256",
        "YOLO_GATEWAY_QUEUE_TIMEOUT_S": "8",
    }
    with GatewayProcess(free_port(), env, log_path=logs / "gateway.log") as gw:
        yield gw


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=30) as c:
        yield c
