"""The bench's accuracy measure (mAP50, precision/recall) on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from yolo_tools.bench.accuracy import Prediction, average_precision, map50, precision_recall
from yolo_tools.synthetic import Scene

SCENE = Scene(
    np.zeros((100, 100, 3), np.uint8), np.array([[0, 0, 10, 10], [50, 50, 70, 70]], np.float32), np.array([0, 1])
)


def _pred(boxes, scores, classes) -> Prediction:
    return Prediction(
        np.array(boxes, np.float64).reshape(-1, 4), np.array(scores, np.float64), np.array(classes, np.int64)
    )


def test_perfect_and_empty_predictions():
    perfect = _pred(SCENE.boxes, [0.9, 0.8], SCENE.classes)
    assert map50([perfect], [SCENE], 2) == 1.0
    assert precision_recall([perfect], [SCENE], 0.25) == (1.0, 1.0)
    assert map50([_pred([], [], [])], [SCENE], 2) == 0.0


def test_a_confident_false_positive_costs_precision_not_recall():
    # class 0: a wrong box ranked above the right one -> AP 0.5; class 1 perfect -> mAP 0.75
    pred = _pred([[80, 0, 90, 10], [0, 0, 10, 10], [50, 50, 70, 70]], [0.95, 0.9, 0.8], [0, 0, 1])
    assert map50([pred], [SCENE], 2) == pytest.approx(0.75)
    assert precision_recall([pred], [SCENE], 0.25) == (pytest.approx(2 / 3), 1.0)
    assert precision_recall([pred], [SCENE], 0.92) == (0.0, 0.0)  # only the false positive is that confident


def test_wrong_class_or_low_iou_is_no_match():
    pred = _pred([[0, 0, 10, 10], [55, 55, 75, 75]], [0.9, 0.9], [1, 1])  # class wrong; IoU 0.39
    assert map50([pred], [SCENE], 2) == 0.0
    assert average_precision(np.array([0.5, 1.0]), np.array([1.0, 1.0])) == 1.0


def test_the_bench_reports_issue_12s_targets_from_its_own_rows():
    """The report's three gateway targets (CPU vs decode floor <= 1.25x, added p50 <= 2 ms,
    cheap-model requests/s per core >= 1.4x the baseline) computed from a run's rows."""
    from yolo_tools.bench import report

    def load(label, c=16, **extra):
        return {"label": label, "concurrency": c, "rps": 100.0, "p50_ms": 10.0, "triton": {"mean_batch": 8.0}, **extra}

    wire = {"total": 1}
    res = {
        "bench_images": {"decode_floor_ms": 6.0, "prepare_ms": 6.5},
        "encoding": [
            load("uint8 NHWC, raw + CPU NMS", gateway_cpu_ms_per_request=7.2, wire_bytes_per_request=wire),
            load("fp32 NCHW, raw + CPU NMS", wire_bytes_per_request={"total": 4}),
        ],
        "direct_vs_gateway": [load("direct", 1, p50_ms=7.0), load("gateway", 1, p50_ms=15.0)],
        "batching": [load("on, max_queue_delay 2 ms")],
        "channel": [load("shared channel"), load("new client per request")],
        "cheap_gateway": [load("gateway, cheap model", gateway_cpu_ms_per_request=7.0)],
    }
    got = {t["target"]: t for t in report.targets(res)}
    cpu = got["gateway CPU per 1080p request / decode-only floor"]
    assert cpu["value"] == 1.2 and cpu["goal"] == "<= 1.25" and cpu["met"]
    added = got["added p50 over direct Triton at c=1, excluding decode (ms)"]
    assert added["value"] == 1.5 and added["met"]
    cheap = got["cheap model: requests/s per gateway core / the issue's baseline"]
    assert cheap["value"] == pytest.approx(11.1 / 7.0, abs=1e-3) and cheap["met"]
    res["cheap_gateway"][0]["gateway_cpu_ms_per_request"] = 9.0
    assert not {t["target"]: t for t in report.targets(res)}[cheap["target"]]["met"]
    # a run with the paired measurement (section 1c) takes its median, not the p50s' difference
    res["added_latency"] = {
        "pairs": 400,
        "median_added_ms": 2.4,
        "p25_added_ms": 1.9,
        "p75_added_ms": 3.1,
        "block_medians_ms": [2.3, 2.5, 2.4, 2.4],
    }
    paired = {t["target"]: t for t in report.targets(res)}[added["target"]]
    assert paired["value"] == 2.4 and not paired["met"] and "400 back-to-back pairs" in paired["detail"]


def test_the_bench_splits_a_process_cpu_by_thread():
    """CPU a Python thread burns is counted as the pool's, not the event loop's (the main thread)."""
    import os
    import threading
    import time

    from yolo_tools.bench.loadgen import thread_cpu_seconds

    def burn() -> None:
        start = time.thread_time()
        while time.thread_time() - start < 0.3:
            pass

    before = thread_cpu_seconds(os.getpid())
    done = threading.Event()
    t = threading.Thread(target=lambda: (burn(), done.wait(10)))  # alive while we read it
    t.start()
    try:
        while t.is_alive() and thread_cpu_seconds(os.getpid())["pool"] - before["pool"] < 0.25:  # at most ~10 s
            time.sleep(0.01)
        after = thread_cpu_seconds(os.getpid())  # while the thread lives: an ended one is not counted
    finally:
        done.set()
        t.join()
    assert after["pool"] - before["pool"] >= 0.25
    assert set(after) == {"event_loop", "pool", "grpc"}
