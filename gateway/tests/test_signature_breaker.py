"""Pure: model signature from Triton metadata, the circuit breaker, and Triton error classification."""

from __future__ import annotations

import pytest
from tritonclient.utils import InferenceServerException

from yolo_gateway.errors import TritonOverloaded, TritonRejected, TritonTimeout, TritonUnavailable
from yolo_gateway.failures import CircuitBreaker, classify
from yolo_gateway.signature import SignatureError, parse_signature

NAMES = {"class_names": {"string_value": '["a", "b", "c"]'}}


def meta(inp: list, outs: list[tuple[str, list, str]], dtype: str = "UINT8") -> dict:
    return {
        "name": "m",
        "versions": ["3"],
        "platform": "python",
        "inputs": [{"name": "images", "datatype": dtype, "shape": inp}],
        "outputs": [{"name": n, "datatype": d, "shape": s} for n, s, d in outs],
    }


def test_uint8_nhwc_raw():
    sig = parse_signature(
        meta([-1, 320, 320, 3], [("output0", [-1, 7, 2100], "FP32")]),
        {"config": {"max_batch_size": 16, "parameters": NAMES}},
    )
    assert (sig.layout, sig.height, sig.width, sig.input_dtype) == ("NHWC", 320, 320, "UINT8")
    assert (sig.output_format, sig.class_names, sig.version, sig.max_batch_size) == ("raw", ("a", "b", "c"), "3", 16)


def test_fp32_nchw_non_square_without_batch():
    sig = parse_signature(meta([3, 384, 640], [("out", [84, 5040], "FP32")], "FP32"), {"max_batch_size": 0})
    assert (sig.layout, sig.height, sig.width, sig.max_batch_size) == ("NCHW", 384, 640, 0)
    assert sig.output_format == "raw" and sig.num_classes == 80 and sig.class_names[79] == "class_79"


def test_v5_and_transposed_raw_are_told_apart_by_class_count():
    cfg = {"max_batch_size": 8, "parameters": NAMES}
    assert parse_signature(meta([-1, 320, 320, 3], [("output0", [-1, 2100, 8], "FP32")]), cfg).output_format == "v5"
    assert parse_signature(meta([-1, 320, 320, 3], [("output0", [-1, 2100, 7], "FP32")]), cfg).output_format == "raw_t"
    # without class names a channels-last output is read as YOLOv5 (the common case)
    sig = parse_signature(meta([-1, 640, 640, 3], [("output0", [-1, 25200, 85], "FP32")]), {"max_batch_size": 8})
    assert (sig.output_format, sig.num_classes) == ("v5", 80)


def test_end2end():
    outs = [
        ("num_dets", [-1, 1], "INT32"),
        ("det_boxes", [-1, 100, 4], "FP32"),
        ("det_scores", [-1, 100], "FP32"),
        ("det_classes", [-1, 100], "INT32"),
    ]
    sig = parse_signature(meta([-1, 320, 320, 3], outs), {"max_batch_size": 4, "parameters": NAMES})
    assert sig.output_format == "end2end"
    assert sig.output_names == ("num_dets", "det_boxes", "det_scores", "det_classes")


@pytest.mark.parametrize(
    ("inp", "outs", "dtype", "match"),
    [
        ([-1, 320, 320, 3], [("o", [-1, 7, 2100], "FP32")], "INT64", "datatype"),
        ([-1, 320, 320], [("o", [-1, 7, 2100], "FP32")], "UINT8", "3-D"),
        ([-1, 320, 320, 4], [("o", [-1, 7, 2100], "FP32")], "UINT8", "channel"),
        ([-1, -1, -1, 3], [("o", [-1, 7, 2100], "FP32")], "UINT8", "fixed"),
        ([-1, 320, 320, 3], [("o", [-1, 7, 2100], "FP32"), ("p", [-1, 1], "FP32")], "UINT8", "one raw output"),
    ],
)
def test_unservable_models_are_explained(inp, outs, dtype, match):
    with pytest.raises(SignatureError, match=match):
        parse_signature(meta(inp, outs, dtype), {"max_batch_size": 8})


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_breaker_opens_fails_fast_probes_and_closes():
    clock = Clock()
    b = CircuitBreaker(failures=3, reset_s=2.0, clock=clock)
    for _ in range(2):
        b.before_call()
        b.failure()
    assert b.state == "closed"
    b.before_call()
    b.failure()
    assert b.state == "open"
    with pytest.raises(TritonUnavailable) as err:
        b.before_call()
    assert err.value.status == 503 and 0 < err.value.retry_after <= 2.0
    clock.t += 2.5
    b.before_call()  # the probe
    assert b.state == "half_open"
    with pytest.raises(TritonUnavailable):
        b.before_call()  # only one probe at a time
    b.success()
    assert b.state == "closed"
    b.before_call()


def test_breaker_reopens_when_the_probe_fails_and_success_resets_the_count():
    clock = Clock()
    b = CircuitBreaker(failures=2, reset_s=1.0, clock=clock)
    b.failure()
    b.success()
    b.failure()
    assert b.state == "closed"
    b.failure()
    assert b.state == "open"
    clock.t += 1.5
    b.before_call()
    b.failure()
    assert b.state == "open"


@pytest.mark.parametrize(
    ("status", "msg", "error", "kind", "counts"),
    [
        ("StatusCode.UNAVAILABLE", "failed to connect to all addresses", TritonUnavailable, "unavailable", True),
        ("StatusCode.UNAVAILABLE", "Exceeds maximum queue size", TritonOverloaded, "queue_full", False),
        ("StatusCode.UNAVAILABLE", "Request timeout expired", TritonUnavailable, "queue_timeout", False),
        ("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded", TritonTimeout, "deadline", True),
        (
            "StatusCode.NOT_FOUND",
            "Request for unknown model: 'x' is not found",
            TritonUnavailable,
            "model_not_ready",
            False,
        ),
        ("StatusCode.INVALID_ARGUMENT", "unexpected shape for input 'images'", TritonRejected, "rejected", False),
    ],
)
def test_classify_triton_errors(status, msg, error, kind, counts):
    assert classify(InferenceServerException(msg, status=status)) == (error, kind, counts)
