"""The bench's pure helpers: for section 11 (production size), the bytes an image puts on the wire
and the input encoding, read from a config as Triton's HTTP API returns it; the closed loop's
windows."""

from __future__ import annotations

import asyncio

import pytest

from yolo_tools.bench import loadgen
from yolo_tools.bench.loadgen import input_encoding, wire_bytes

PLAIN = {  # YOLOv8n 640/80 as exported: fp32 NCHW in, raw [84, 8400] out
    "input": [{"name": "images", "data_type": "TYPE_FP32", "dims": [3, 640, 640]}],
    "output": [{"name": "output0", "data_type": "TYPE_FP32", "dims": [84, 8400]}],
}
OPTIMIZED = {  # model.optimize: uint8 NHWC in, NMS in the graph (up to 100 boxes)
    "input": [{"name": "images", "data_type": "TYPE_UINT8", "dims": ["640", "640", "3"]}],
    "output": [
        {"name": "num_dets", "data_type": "TYPE_INT32", "dims": [1]},
        {"name": "det_boxes", "data_type": "TYPE_FP32", "dims": [100, 4]},
        {"name": "det_scores", "data_type": "TYPE_FP32", "dims": [100]},
        {"name": "det_classes", "data_type": "TYPE_INT32", "dims": [100]},
    ],
}


def test_wire_bytes_of_the_production_export_plain_and_optimized():
    plain, opt = wire_bytes(PLAIN), wire_bytes(OPTIMIZED)
    assert plain == {"input": 4_915_200, "output": 2_822_400, "total": 7_737_600}
    assert opt == {"input": 1_228_800, "output": 2_404, "total": 1_231_204}
    assert round(opt["total"] / plain["total"], 3) == 0.159


def test_a_dynamic_dimension_has_no_fixed_size():
    with pytest.raises(ValueError, match="dynamic"):
        wire_bytes({"input": [{"name": "images", "data_type": "TYPE_FP32", "dims": [3, -1, -1]}], "output": []})


def test_input_encoding():
    assert input_encoding(PLAIN) == ("FP32", "NCHW", 640, 640)
    assert input_encoding(OPTIMIZED) == ("UINT8", "NHWC", 640, 640)


def test_a_dynamic_dimension_is_filled_from_an_observed_response():
    bundled = {  # the bundled dynamic export: the anchor count is left to the response
        "input": [{"name": "images", "data_type": "TYPE_FP32", "dims": [3, 320, 320]}],
        "output": [{"name": "output0", "data_type": "TYPE_FP32", "dims": [7, -1]}],
    }
    assert wire_bytes(bundled, {"output0": [7, 2100]}) == {"input": 1_228_800, "output": 58_800, "total": 1_287_600}


def test_the_routing_bench_reads_its_targets_from_its_own_rows():
    from yolo_tools.bench import routing

    def row(scenario: str, how: str, p99: float, rps: float) -> dict:
        return {
            "scenario": scenario,
            "routing": how,
            "cores": {"a": 0.5, "b": 0.25},
            "rate": 20.0,
            "completed_rps": rps,
            "p50_ms": 10.0,
            "p95_ms": 20.0,
            "p99_ms": p99,
            "errors": {},
            "share_b": 0.3,
        }

    rows = [
        row("throttled", "round_robin", 900.0, 20.0),
        row("throttled", "least_loaded", 300.0, 20.0),
        row("equal", "round_robin", 100.0, 20.0),
        row("equal", "least_loaded", 104.0, 19.5),
    ]
    # throttled p99 ratio 300/900; equal p99 104/100 (within 5 %) and requests/s 19.5/20
    assert [(t["value"], t["met"]) for t in routing.targets(rows)] == [(0.333, True), (1.04, True), (0.975, True)]
    rows[1]["p99_ms"] = 600.0
    assert routing.targets(rows)[0] == {**routing.targets(rows)[0], "value": 0.667, "met": False}
    assert "| throttled (0.5 / 0.25) | least_loaded | 20 |" in routing.markdown(rows)


def test_the_tls_section_reports_https_over_clear_text_per_kind_of_connection() -> None:
    from yolo_tools.bench import tls  # noqa: PLC0415

    def point(scheme: str, connections: str, cpu: float, p50: float, rps: float) -> dict:
        return {
            "scheme": scheme,
            "connections": connections,
            "completed_rps": rps,
            "p50_ms": p50,
            "p99_ms": 2 * p50,
            "errors": {},
            "gateway_cpu_ms_per_request": cpu,
        }

    rows = [
        point("http", "keep-alive", 10.0, 100.0, 50.0),
        point("https", "keep-alive", 10.5, 105.0, 48.0),
        point("http", "new per request", 11.0, 100.0, 45.0),
        point("https", "new per request", 13.2, 120.0, 40.5),
    ]
    by = {r["what"].split(", ")[-1]: r for r in tls.ratios(rows)}
    assert by["keep-alive"]["cpu_ms_added"] == 0.5 and by["keep-alive"]["cpu_ratio"] == 1.05
    assert by["new per request"]["cpu_ratio"] == 1.2 and by["new per request"]["rps_ratio"] == 0.9
    assert "| HTTPS at the gateway, new per request | 2.2 | 1.2 | 1.2 | 0.9 |" in tls.markdown(rows)


def test_the_closed_loop_keeps_concurrency_requests_in_flight_and_reports_its_windows() -> None:
    """The bench's closed loop on the shared load generator: each client sends its next request
    once the last is answered; a transport error counts as 599, not a crash of the bench."""
    in_flight = peak = 0

    async def send(i: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        if i % 10 == 9:
            raise ConnectionResetError("a transport error")
        return 200

    result = asyncio.run(loadgen.closed_loop(send, 4, window_s=0.3, stable_windows=2, max_windows=3, warmup_s=0.1))
    assert peak == 4 and in_flight == 0  # every request ended before the loop returned
    assert result.mode == "closed" and result.concurrency == 4 and 2 <= result.windows <= 3
    assert result.requests > 0 and set(result.errors) <= {"599"}
    assert result.rps <= 4 / 0.01 * 1.05  # 4 in flight, 10 ms each: no more than 400 a second
