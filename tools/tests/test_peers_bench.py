"""The peers bench's own logic: what it sends each front end, the target row, the report, and
that a missing peer is said plainly (the peers themselves run only in `make bench ONLY=peers`)."""

from __future__ import annotations

import ast
import base64
import json
import subprocess
import sys
from pathlib import Path

from yolo_tools.bench import peers
from yolo_tools.devrepo import copy_model, read_config


def row(front_end: str, c: int, per_core: float, p99: float, model: str = "m") -> dict:
    return {
        "front_end": front_end,
        "model": model,
        "label": "model m",
        "installed": True,
        "concurrency": c,
        "completed_rps": 10.0,
        "p50_ms": 1.0,
        "p95_ms": 2.0,
        "p99_ms": p99,
        "errors": {},
        "requests": 100,
        "cpu_ms_per_request": 1e3 / per_core,
        "requests_per_core": per_core,
    }


def result(rows: list[dict], missing: dict[str, str] | None = None) -> dict:
    return {
        "rows": rows,
        "concurrency": sorted({r["concurrency"] for r in rows if "concurrency" in r}),
        "missing": missing or {},
        "detections_on_first_image": {"m": {"gateway": 3, "kserve": 3}},
    }


def test_the_target_compares_with_the_peer_that_does_most_per_core_at_each_concurrency() -> None:
    res = result(
        [
            row("gateway", 8, 90, 100),
            row("kserve", 8, 60, 120),
            row("ray", 8, 30, 90),
            row("gateway", 32, 90, 300),
            row("kserve", 32, 50, 250),
        ]
    )
    by_c = {t["concurrency"]: t for t in peers.targets(res)}
    assert by_c[8]["best_peer"] == "kserve" and by_c[8]["ratio"] == 1.5
    assert by_c[8]["p99_equal_or_better"] and by_c[8]["met"]
    # 1.8x the requests per core, but a worse p99 than that peer's: not met
    assert by_c[32]["ratio"] == 1.8 and not by_c[32]["p99_equal_or_better"] and not by_c[32]["met"]


def test_the_optimized_gateway_is_compared_beside_the_target_not_in_it() -> None:
    """gateway_optimized (model.optimize: NMS in the graph) does other work than the peers: the
    target row is the plain gateway's; the optimized one gets its own comparison."""
    res = result([row("gateway", 8, 60, 100), row("gateway_optimized", 8, 120, 80), row("kserve", 8, 50, 110)])
    (target,) = peers.targets(res)
    assert target["ratio"] == 1.2 and not target["met"]  # the optimized row does not count toward it
    (beside,) = peers.targets(res, "gateway_optimized")
    assert beside["best_peer"] == "kserve" and beside["ratio"] == 2.4
    md = peers.markdown(res)
    assert "| model m | gateway_optimized | 8 |" in md and "not the peers' work" in md


def test_a_peer_that_is_not_installed_is_reported_and_never_counted() -> None:
    why = "not installed in /x/python (ModuleNotFoundError: No module named 'ray')"
    res = result([row("gateway", 8, 90, 100), row("kserve", 8, 80, 100)], {"ray": why})
    res["rows"].append({"front_end": "ray", "model": "m", "label": "model m", "installed": False})
    (t,) = peers.targets(res)
    assert t["best_peer"] == "kserve"
    md = peers.markdown(res)
    assert f"ray: {why}" in md
    assert "| model m | ray |" not in md  # no row of figures for a peer that did not run


def test_without_any_peer_there_is_no_target_row() -> None:
    assert peers.targets(result([row("gateway", 8, 90, 100)])) == []


def test_a_point_whose_windows_saw_no_request_end_is_not_compared() -> None:
    slow = {**row("kserve", 32, 80, 0.0), "requests": 0}  # p99 0: nothing measured, not a fast peer
    (t,) = peers.targets(result([row("gateway", 32, 90, 100), slow, row("ray", 32, 40, 200)]))
    assert t["best_peer"] == "ray"


def test_missing_names_each_peer_a_bare_python_cannot_import(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    found = peers.missing(str(tmp_path / "bare" / "bin" / "python"))
    assert set(found) == set(peers.PEERS)
    assert all("not installed" in why and "No module named" in why for why in found.values())


def test_kserve_is_sent_the_v1_protocol_with_the_image_as_base64_and_the_others_the_jpeg() -> None:
    jpeg = b"\xff\xd8\xff\xe0 a jpeg"
    path, body, headers = peers.request_for("kserve", "yolo", jpeg)
    assert path == "/v1/models/yolo:predict" and headers["content-type"] == "application/json"
    assert base64.b64decode(json.loads(body)["instances"][0]["image"]["b64"]) == jpeg
    for kind in ("gateway", "ray", "ultralytics"):
        assert peers.request_for(kind, "yolo", jpeg) == ("/v1/detect", jpeg, {"content-type": "image/jpeg"})
    assert peers.detections_of("kserve", {"predictions": [[{"class_id": 1}]]}) == [{"class_id": 1}]
    assert peers.detections_of("ray", {"detections": []}) == []


def test_the_ultralytics_metadata_is_the_literal_its_triton_client_reads(tmp_path: Path) -> None:
    config = copy_model(tmp_path, "yolo") / "config.pbtxt"
    names = json.loads(read_config(config).parameters["class_names"].string_value)
    peers.add_ultralytics_metadata(config)
    cfg = read_config(config)
    # ultralytics.utils.triton.TritonRemoteModel: ast.literal_eval(parameters.metadata.string_value)
    meta = ast.literal_eval(cfg.parameters["metadata"].string_value)
    assert meta["names"] == dict(enumerate(names)) and meta["task"] == "detect"
    assert meta["imgsz"] == [320, 320]
    assert cfg.parameters["class_names"].string_value  # the gateway's own parameter is kept
