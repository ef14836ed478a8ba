"""The gateway over HTTP against a real tritonserver: endpoints, parameters and every bad-input class."""

from __future__ import annotations

import io
import socket

import httpx
import numpy as np
import pytest
from PIL import Image

from yolo_tools.synthetic import CLASS_NAMES, encode, make_scene


@pytest.fixture(scope="module")
def scene():
    return make_scene(np.random.default_rng(4242), 800, 600, min_objects=3, max_objects=6)


@pytest.fixture(scope="module")
def jpeg(scene) -> bytes:
    return encode(scene)


def _error(r: httpx.Response, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()["error"]
    assert body["message"]
    if code:
        assert body["code"] == code
    return body


def test_health_ready_and_models(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    listing = client.get("/v1/models").json()
    (model,) = listing["models"]
    assert listing["routes"] == [
        {"role": "current", "tier": None, "model": "yolo", "percent": None, "served": True, "error": None}
    ]
    assert model["name"] == "yolo" and model["version"] == "1"
    assert model["class_names"] == list(CLASS_NAMES)
    assert model["input"] == {"name": "images", "datatype": "UINT8", "layout": "NHWC", "height": 320, "width": 320}
    assert model["output_format"] == "raw"


@pytest.mark.parametrize("ext,media", [(".jpg", "image/jpeg"), (".png", "image/png"), (".webp", "image/webp")])
def test_detect_raw_body_each_format(client, scene, ext, media):
    r = client.post("/v1/detect", content=encode(scene, ext), headers={"content-type": media})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["image"] == {"width": 800, "height": 600}
    assert body["model"] == {"name": "yolo", "version": "1", "tier": None, "variant": "current"}
    assert set(body["timings_ms"]) == {"decode", "preprocess", "infer", "postprocess", "total"}
    assert body["detections"], "the bundled model finds the shapes"
    for d in body["detections"]:
        b = d["box"]
        assert 0 <= b["x1"] < b["x2"] <= 800 and 0 <= b["y1"] < b["y2"] <= 600
        assert d["class_name"] == CLASS_NAMES[d["class_id"]] and 0.25 < d["confidence"] <= 1
    assert r.headers["x-process-time"].endswith("ms")


def test_detect_multipart_equals_raw_body(client, jpeg):
    raw = client.post("/v1/detect", content=jpeg, headers={"content-type": "image/jpeg"}).json()
    multi = client.post("/v1/detect", files={"image": ("x.jpg", jpeg, "image/jpeg")}).json()
    assert multi["detections"] == raw["detections"]


def test_request_id_is_propagated_or_generated(client, jpeg):
    r = client.post("/v1/detect", content=jpeg, headers={"content-type": "image/jpeg", "x-request-id": "req-123"})
    assert r.headers["x-request-id"] == "req-123"
    r = client.post("/v1/detect", content=jpeg, headers={"content-type": "image/jpeg"})
    assert len(r.headers["x-request-id"]) == 32
    bad = client.post("/v1/detect", content=b"", headers={"content-type": "image/jpeg", "x-request-id": "req-err"})
    assert bad.headers["x-request-id"] == "req-err"


def test_batch_returns_results_in_order(client):
    scenes = [make_scene(np.random.default_rng(s), 640, 480, min_objects=2) for s in (11, 12, 13)]
    files = [("images", (f"{i}.jpg", encode(s), "image/jpeg")) for i, s in enumerate(scenes)]
    r = client.post("/v1/detect/batch", files=files)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 3
    for s, res in zip(scenes, results, strict=True):
        single = client.post("/v1/detect", content=encode(s), headers={"content-type": "image/jpeg"}).json()
        assert [d["class_id"] for d in res["detections"]] == [d["class_id"] for d in single["detections"]]


def test_query_parameters(client, jpeg):
    post = lambda q: client.post(f"/v1/detect{q}", content=jpeg, headers={"content-type": "image/jpeg"})  # noqa: E731
    base = post("").json()["detections"]
    low = post("?conf=0.05").json()["detections"]
    assert len(low) >= len(base)
    assert all(d["confidence"] > 0.9 for d in post("?conf=0.9").json()["detections"])
    assert len(post("?max_det=1").json()["detections"]) == 1
    only = post("?classes=circle&classes=2").json()["detections"]
    assert {d["class_name"] for d in only} <= {"circle", "triangle"}
    assert post("?classes=0,1,2").json()["detections"] == base
    for q in (
        "?conf=2",
        "?conf=abc",
        "?iou=-0.1",
        "?max_det=0",
        "?max_det=100000",
        "?classes=dog",
        "?classes=7",
        "?preprocess=exact",
    ):
        _error(post(q), 400, "bad_parameter")
    # Ultralytics' own preprocessing: the same objects, boxes within a few pixels of the fast path's
    parity = post("?preprocess=parity").json()["detections"]
    assert sorted(d["class_id"] for d in parity) == sorted(d["class_id"] for d in base)
    for p in parity:
        best = min(base, key=lambda b: sum(abs(p["box"][k] - b["box"][k]) for k in ("x1", "y1", "x2", "y2")))
        assert p["class_id"] == best["class_id"] and all(
            abs(p["box"][k] - best["box"][k]) < 6 for k in ("x1", "y1", "x2", "y2")
        )


def test_unsupported_media_types_are_415(client, jpeg):
    _error(client.post("/v1/detect", content=jpeg, headers={"content-type": "text/plain"}), 415)
    gif = io.BytesIO()
    Image.new("RGB", (10, 10)).save(gif, "GIF")
    _error(client.post("/v1/detect", content=gif.getvalue(), headers={"content-type": "image/jpeg"}), 415)
    _error(client.post("/v1/detect/batch", content=jpeg, headers={"content-type": "image/jpeg"}), 415)
    _error(client.post("/v1/detect", files={"image": ("x.txt", b"hello", "text/plain")}), 415)


def test_corrupt_truncated_empty_and_bomb_images_are_422(client, jpeg, scene):
    png = encode(scene, ".png")
    bomb = io.BytesIO()
    Image.new("L", (12000, 12000)).save(bomb, "PNG")
    for body, media in [
        (b"", "image/jpeg"),
        (b"\x00" * 512, "image/png"),
        (jpeg[: len(jpeg) // 3], "image/jpeg"),
        (png[: len(png) // 2], "image/png"),
        (b"\xff\xd8\xff\xe0" + b"garbage" * 100, "image/jpeg"),
        (bomb.getvalue(), "image/png"),
    ]:
        _error(client.post("/v1/detect", content=body, headers={"content-type": media}), 422, "invalid_image")
    # one bad image fails a batch with its own status
    files = [("images", ("a.jpg", jpeg, "image/jpeg")), ("images", ("b.jpg", jpeg[:100], "image/jpeg"))]
    _error(client.post("/v1/detect/batch", files=files), 422)


def test_malformed_multipart_is_400(client):
    headers = {"content-type": "multipart/form-data; boundary=xyz"}
    _error(client.post("/v1/detect", content=b"--xyz\r\nnot a part", headers=headers), 400)
    no_file = b'--xyz\r\nContent-Disposition: form-data; name="field"\r\n\r\nvalue\r\n--xyz--\r\n'
    _error(client.post("/v1/detect", content=no_file, headers=headers), 400)


def test_too_large_body_is_413(client):
    big = b"\xff\xd8\xff" + b"\0" * (8 * 1024 * 1024)
    _error(client.post("/v1/detect", content=big, headers={"content-type": "image/jpeg"}), 413, "payload_too_large")

    def chunks():  # no Content-Length: counted while streaming
        for _ in range(10):
            yield b"\0" * (1024 * 1024)

    _error(client.post("/v1/detect", content=chunks(), headers={"content-type": "image/jpeg"}), 413)


def test_413_comes_before_the_body_is_sent(gateway):
    """A 1 GB Content-Length is refused from the header: the client never sends the body."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as s:
        s.sendall(
            b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 1000000000\r\n\r\n"
        )
        s.sendall(b"\xff\xd8\xff" + b"\0" * 1000)
        response = _read_http_response(s)
    assert response.startswith("HTTP/1.1 413"), response[:200]
    assert "payload_too_large" in response


def _read_http_response(s: socket.socket) -> str:
    """Headers and the whole Content-Length body, however the bytes are split into segments."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0
    )
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return (head + b"\r\n\r\n" + body).decode("latin-1")


def test_metrics_expose_stages_inflight_and_requests(client, jpeg):
    client.post("/v1/detect", content=jpeg, headers={"content-type": "image/jpeg"})
    text = client.get("/metrics").text
    for stage in ("decode", "preprocess", "infer", "postprocess", "total"):
        assert f'yolo_gateway_stage_seconds_count{{stage="{stage}"}}' in text
    assert "yolo_gateway_inflight_requests 0.0" in text
    assert 'yolo_gateway_requests_total{route="/v1/detect",status="200"}' in text
    assert 'yolo_gateway_requests_total{route="/v1/detect",status="422"}' in text
    assert "yolo_gateway_circuit_state 0.0" in text


def test_openapi_documents_the_image_bodies(client):
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/detect"]["post"]["requestBody"]["content"]
    assert {"image/jpeg", "image/png", "image/webp", "multipart/form-data"} <= set(body)
    responses = spec["paths"]["/v1/detect"]["post"]["responses"]
    assert {"200", "400", "413", "415", "422", "429", "503"} <= set(responses)
    assert "DetectResponse" in spec["components"]["schemas"]
    params = {p["name"] for p in spec["paths"]["/v1/detect"]["post"]["parameters"]}
    assert params == {"conf", "iou", "max_det", "classes", "preprocess", "tier"}
    assert client.get("/docs").status_code == 200


def test_responses_are_exactly_the_documented_models(client, jpeg):
    """Every field the gateway sends is in its response model and every required one is there
    (extra fields are forbidden in the models), for each route and an error."""
    from yolo_gateway.schemas import BatchResponse, DetectResponse, ErrorResponse, Health, ModelsResponse

    one = client.post("/v1/detect", content=jpeg, headers={"content-type": "image/jpeg"})
    assert DetectResponse.model_validate(one.json()).detections
    files = [("images", ("a.jpg", jpeg, "image/jpeg")), ("images", ("b.jpg", jpeg, "image/jpeg"))]
    assert len(BatchResponse.model_validate(client.post("/v1/detect/batch", files=files).json()).results) == 2
    ModelsResponse.model_validate(client.get("/v1/models").json())
    Health.model_validate(client.get("/readyz").json())
    ErrorResponse.model_validate(
        client.post("/v1/detect?conf=9", content=jpeg, headers={"content-type": "image/jpeg"}).json()
    )
