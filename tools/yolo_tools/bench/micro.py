"""Gateway stage microbenchmarks, each method against the alternatives in the same run.

- decode + letterbox to 640x640 for 640x480, 1920x1080 and 4000x3000 JPEGs (quality 90):
  ours (header, DCT-scaled simplejpeg, OpenCV resize) against PIL full decode + resize,
  OpenCV full decode + resize, OpenCV's reduced decode modes, and PyTurboJPEG if present;
  plus the decode-only floor (DCT-scaled decode, no resize);
- NMS on a [84, 8400] output at conf 0.25 and 0.001: ours (prefilter + OpenCV batched NMS)
  against a plain numpy greedy NMS;
- JSON for 25 and 300 detections: orjson (ours) against json and FastAPI's default encoder.

Times are medians of single-threaded runs. Competing methods are timed round-robin
(one call of each per round, after warming all of them), so that caches, clock
speed and neighbours' load affect every side alike.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable

import cv2
import numpy as np
import orjson
import simplejpeg
from PIL import Image

from yolo_gateway.imageheader import count_pair
from yolo_gateway.postprocess import Detections, DetectParams, decode_raw, detections_json
from yolo_gateway.preprocess import PAD_VALUE, dct_scaled_size, letterbox_geometry, prepare_image

from ..synthetic import encode, make_scene

SIZE = 640


def interleaved_ms(methods: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median ms per method, timing one call of each method per round."""
    for fn in methods.values():
        fn()
        fn()
    times: dict[str, list[float]] = {k: [] for k in methods}
    for _ in range(rounds):
        for name, fn in methods.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {k: float(np.median(v) * 1e3) for k, v in times.items()}


def _pad(img: np.ndarray, w: int, h: int) -> np.ndarray:
    geo, nw, nh = letterbox_geometry(w, h, SIZE, SIZE)
    canvas = np.full((SIZE, SIZE, 3), PAD_VALUE, np.uint8)
    canvas[geo.pad_y : geo.pad_y + nh, geo.pad_x : geo.pad_x + nw] = img
    return canvas


def decode_methods(data: bytes, w: int, h: int) -> dict[str, Callable[[], object]]:
    _, nw, nh = letterbox_geometry(w, h, SIZE, SIZE)
    buf = np.frombuffer(data, np.uint8)

    def ours() -> object:
        return prepare_image(data, "image/jpeg", in_w=SIZE, in_h=SIZE, layout="NHWC", dtype="UINT8", max_pixels=10**9)

    def pil_full() -> object:
        im = Image.open(io.BytesIO(data)).convert("RGB").resize((nw, nh), Image.BILINEAR)
        return _pad(np.asarray(im), w, h)

    def cv2_full() -> object:
        im = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        return _pad(cv2.resize(im, (nw, nh), interpolation=cv2.INTER_LINEAR), w, h)

    factor = max(1, min(8, 2 ** int(np.log2(max(1.0, min(w / nw, h / nh))))))
    flag = {
        1: cv2.IMREAD_COLOR,
        2: cv2.IMREAD_REDUCED_COLOR_2,
        4: cv2.IMREAD_REDUCED_COLOR_4,
        8: cv2.IMREAD_REDUCED_COLOR_8,
    }[factor]

    def cv2_reduced() -> object:
        im = cv2.cvtColor(cv2.imdecode(buf, flag), cv2.COLOR_BGR2RGB)
        return _pad(cv2.resize(im, (nw, nh), interpolation=cv2.INTER_LINEAR), w, h)

    def simplejpeg_scaled() -> object:
        im = simplejpeg.decode_jpeg(data, "RGB", min_width=nw, min_height=nh)
        return _pad(cv2.resize(im, (nw, nh), interpolation=cv2.INTER_LINEAR), w, h)

    methods: dict[str, Callable[[], object]] = {
        "ours": ours,
        "pil_full_decode_resize": pil_full,
        "opencv_full_decode_resize": cv2_full,
        f"opencv_reduced_{factor}": cv2_reduced,
        "simplejpeg_dct_scaled": simplejpeg_scaled,
    }
    try:
        from turbojpeg import TJPF_RGB, TurboJPEG  # noqa: PLC0415

        tj = TurboJPEG()
        scale = (1, factor)

        def turbojpeg_scaled() -> object:
            im = tj.decode(data, pixel_format=TJPF_RGB, scaling_factor=scale)
            return _pad(cv2.resize(im, (nw, nh)), w, h)

        methods["pyturbojpeg_scaled"] = turbojpeg_scaled
    except Exception:  # PyTurboJPEG needs libturbojpeg.so; absent here is fine
        pass
    return methods


def decode_floor(data: bytes, w: int, h: int, nw: int, nh: int) -> object:
    """The decode-only floor: libjpeg's cheapest DCT-scaled decode that still covers the
    letterboxed size (1/2, 1/4 or 1/8, as the gateway decodes), nothing else."""
    mw, mh = dct_scaled_size(w, h, nw, nh)
    return simplejpeg.decode_jpeg(data, "RGB", min_width=mw, min_height=mh)


def bench_decode(repeat: int) -> list[dict]:
    rows = []
    rng = np.random.default_rng(7)
    for w, h in ((640, 480), (1920, 1080), (4000, 3000)):
        data = encode(make_scene(rng, w, h, min_objects=4, max_objects=8), ".jpg", 90)
        _, nw, nh = letterbox_geometry(w, h, SIZE, SIZE)
        methods = decode_methods(data, w, h)
        methods["decode_only_floor"] = lambda data=data, w=w, h=h, nw=nw, nh=nh: decode_floor(data, w, h, nw, nh)
        times = interleaved_ms(methods, repeat)
        floor = times.pop("decode_only_floor")
        best_alt = min(v for k, v in times.items() if k != "ours")
        rows.append(
            {
                "image": f"{w}x{h}",
                "bytes": len(data),
                "ms": {k: round(v, 3) for k, v in times.items()},
                "decode_only_floor_ms": round(floor, 3),
                "ours_vs_best_alternative": round(times["ours"] / best_alt, 3),
                "ours_vs_decode_floor": round(times["ours"] / floor, 3),
            }
        )
    return rows


def synthetic_output(rng: np.random.Generator, nc: int = 80, n: int = 8400, objects: int = 20) -> np.ndarray:
    """A realistic raw YOLO output: dense low scores, clusters of high scores around objects."""
    out = np.zeros((4 + nc, n), np.float32)
    out[0:2] = rng.uniform(0, SIZE, (2, n))
    out[2:4] = rng.uniform(4, 120, (2, n))
    out[4:] = rng.beta(0.3, 30, (nc, n)).astype(np.float32)  # mostly near 0, some above 0.001
    for k in range(objects):
        idx = rng.choice(n, 30, replace=False)
        c = rng.uniform(50, SIZE - 50, 2)
        out[0:2, idx] = c[:, None] + rng.normal(0, 4, (2, 30))
        out[2:4, idx] = rng.uniform(30, 150, 2)[:, None]
        out[4 + k % nc, idx] = rng.uniform(0.3, 0.95, 30)
    return out


def numpy_greedy_nms(out: np.ndarray, p: DetectParams) -> Detections:
    """The common hand-written version: full argmax, then a Python loop over kept boxes."""
    scores = out[4:].max(0)
    cls = out[4:].argmax(0)
    keep = scores > p.conf
    boxes = out[:4, keep].T
    scores, cls = scores[keep], cls[keep]
    xyxy = np.concatenate([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], 1)
    offset = xyxy + cls[:, None] * 4096.0  # class-aware by offset
    order = scores.argsort()[::-1]
    kept = []
    while len(order) and len(kept) < p.max_det:
        i = order[0]
        kept.append(i)
        rest = order[1:]
        x1 = np.maximum(offset[i, 0], offset[rest, 0])
        y1 = np.maximum(offset[i, 1], offset[rest, 1])
        x2 = np.minimum(offset[i, 2], offset[rest, 2])
        y2 = np.minimum(offset[i, 3], offset[rest, 3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
        iou = inter / (area(offset[[i]]) + area(offset[rest]) - inter)
        order = rest[iou <= p.iou]
    k = np.array(kept, int)
    return Detections(xyxy[k], scores[k], cls[k])


def bench_nms(repeat: int) -> list[dict]:
    out = synthetic_output(np.random.default_rng(3))
    rows = []
    for conf in (0.25, 0.001):
        p = DetectParams(conf=conf, iou=0.45, max_det=300)
        candidates = int((out[4:].max(0) > conf).sum())
        t = interleaved_ms(
            {"ours": lambda p=p: decode_raw(out, p), "naive": lambda p=p: numpy_greedy_nms(out, p)}, max(5, repeat // 2)
        )
        ours, naive = t["ours"], t["naive"]
        rows.append(
            {
                "output": "84x8400",
                "conf": conf,
                "candidates": candidates,
                "ms": {"ours": round(ours, 3), "numpy_greedy_loop": round(naive, 3)},
                "ours_vs_best_alternative": round(ours / naive, 3),
            }
        )
    return rows


def bench_json(repeat: int) -> list[dict]:
    from fastapi.encoders import jsonable_encoder  # noqa: PLC0415

    rng = np.random.default_rng(5)
    rows = []
    for n in (25, 300):
        boxes = rng.uniform(0, 1000, (n, 4)).astype(np.float32)
        det = Detections(boxes, rng.uniform(0.25, 1, n).astype(np.float32), rng.integers(0, 80, n))
        names = tuple(f"class_{i}" for i in range(80))
        body = {
            "model": {"name": "yolo", "version": "1"},
            "image": {"width": 1920, "height": 1080},
            "timings_ms": {"total": 12.3},
        }
        t = interleaved_ms(
            {
                "ours": lambda body=body, det=det, names=names: orjson.dumps(
                    {**body, "detections": detections_json(det, names)}
                ),
                "json": lambda body=body, det=det, names=names: json.dumps(
                    {**body, "detections": detections_json(det, names)}
                ).encode(),
                "fastapi": lambda body=body, det=det, names=names: json.dumps(
                    jsonable_encoder({**body, "detections": detections_json(det, names)})
                ).encode(),
            },
            repeat,
        )
        ours, std, fastapi = t["ours"], t["json"], t["fastapi"]
        best_alt = min(std, fastapi)
        rows.append(
            {
                "detections": n,
                "ms": {
                    "ours_orjson": round(ours, 4),
                    "json": round(std, 4),
                    "fastapi_jsonable_encoder": round(fastapi, 4),
                },
                "ours_vs_best_alternative": round(ours / best_alt, 3),
            }
        )
    return rows


def bench_header(repeat: int) -> list[dict]:
    """Counting a JPEG's scans (the progressive-bomb guard, on every JPEG request, GIL held):
    the vectorised count against bytes.count, which JPEG data's many 0xFF bytes slow down."""
    rng = np.random.default_rng(9)
    rows = []
    for w, h in ((1280, 720), (1920, 1080), (4000, 3000)):
        data = encode(make_scene(rng, w, h), ".jpg", 90)
        t = interleaved_ms(
            {
                "ours": lambda d=data: count_pair(d, 2, 0xFF, 0xDA),
                "bytes_count": lambda d=data: d.count(b"\xff\xda", 2),
            },
            repeat,
        )
        rows.append(
            {
                "image": f"{w}x{h}",
                "bytes": len(data),
                "ms": {"ours_vectorised": round(t["ours"], 4), "bytes_count": round(t["bytes_count"], 4)},
                "ours_vs_best_alternative": round(t["ours"] / t["bytes_count"], 3),
            }
        )
    return rows


def run(quick: bool = False) -> dict:
    repeat = 10 if quick else 40
    return {
        "decode_letterbox": bench_decode(repeat),
        "nms": bench_nms(repeat),
        "json": bench_json(repeat * 5),
        "jpeg_scans": bench_header(repeat * 5),
    }
