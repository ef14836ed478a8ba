"""`make bench`: the data plane measured side by side, every figure a ratio from the same run.

    python -m yolo_tools.bench [--quick] [--out DIR]

One tritonserver serves every model variant; each comparison runs its sides
back to back against it. The last line printed is the path of the JSON results.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import httpx
import numpy as np
import onnxruntime as ort
from tritonclient.grpc import InferInput, model_config_pb2
from tritonclient.grpc.aio import InferenceServerClient

from yolo_gateway.channels import channel_args
from yolo_gateway.preprocess import letterbox_geometry, prepare_image
from yolo_gateway.settings import Settings

from ..devrepo import LOCAL_REPO, SOURCE_ONNX, constant_detector, copy_model, write_variant
from ..local_triton import LocalTriton, TritonPorts, free_port
from ..stack import GatewayProcess
from ..synthetic import CLASS_NAMES, encode, make_scene
from ..trained import ONNX as TRAINED_ONNX
from . import accuracy, loadgen, micro, peers, report, routing
from . import tls as tls_section
from .loadgen import (
    LoadResult,
    closed_loop,
    http_sender,
    input_encoding,
    jpeg_requests,
    machine_cpu_seconds,
    open_loop,
    process_cpu_seconds,
    schedstat_cpu_seconds,
    thread_cpu_seconds,
    tree_cpu_seconds,
    triton_config,
    triton_split,
    triton_stats,
)

ROOT = Path(__file__).resolve().parents[3]
# The design's streaming and batch tiers (max batch, queue delay µs, instances, ordering); streaming
# gets 2 instances rather than 3 on a 2-CPU machine.
TIERS = {"streaming": (8, 100, 2, True), "batch": (128, 5000, 1, False)}
# Mixed load: camera streams at a fixed frame rate (open loop, requests/s) next to offline batch
# clients that take all they can (closed loop, concurrency).
MIXED = {"streaming_rate": 20.0, "batch": 32}
# Section 11, production size: the trained YOLOv8n (model_repository/trained, the default export) and
# the bundled detector, each served plain and optimized, prepared as the operator's init container
# does. Triton model name -> (file, model.optimize, label).
PROD_ONNX = TRAINED_ONNX  # the trained YOLOv8n, 640 px, 80 classes, the default static export
PROD_LABEL, BUNDLED_LABEL = "YOLOv8n 640/80, trained", "bundled 320/3"
OPTIMIZE = {"uint8Input": True, "nms": True}
PLAIN = {"uint8Input": False, "nms": False}  # the file's own graph (a bare spec on CPUs is optimized)
PRODUCTION = {
    "v8n": (PROD_ONNX, False, PROD_LABEL),
    "v8n_opt": (PROD_ONNX, True, PROD_LABEL),
    "bundled": (SOURCE_ONNX, False, BUNDLED_LABEL),
    "bundled_opt": (SOURCE_ONNX, True, BUNDLED_LABEL),
}
# closed-loop concurrency of section 11's load points: Triton is the bottleneck there
PROD_CONCURRENCY = 16


def require_production_model() -> None:
    if not PROD_ONNX.is_file():
        raise SystemExit(
            f"bench: {PROD_ONNX} is missing (model_repository/tools/train_production.py makes it; section 11 serves it)"
        )


def production_spec(name: str, optimized: bool) -> Any:
    """A bare YoloService spec for a file (the file says the rest), as a user would write it."""
    from yolo_operator.spec import parse_spec  # noqa: PLC0415

    model: dict[str, Any] = {"name": name, "source": {"uri": "https://x/m.onnx"}}
    model["optimize"] = dict(OPTIMIZE if optimized else PLAIN)
    return parse_spec({"model": model, "triton": {"resources": {"requests": {"cpu": "1"}}, "maxBatchSize": 8}})


class Bench:
    def __init__(self, quick: bool, out: Path) -> None:
        self.quick = quick
        self.out = out
        self.window = 2.0 if quick else 5.0
        self.stable = 2 if quick else 3
        self.max_windows = 3 if quick else 6
        self.work = Path(tempfile.mkdtemp(prefix="yolo-bench-"))
        rng = np.random.default_rng(2026)
        self.scenes = [make_scene(rng, 1920, 1080, min_objects=3, max_objects=6) for _ in range(8)]
        self.jpegs = [encode(s, ".jpg", 90) for s in self.scenes]
        self.triton: LocalTriton | None = None

    # ------------------------------------------------------------------ setup

    def build_repo(self, production: bool = True) -> Path:
        repo = self.work / "repo"
        repo.mkdir()
        if production:
            self.add_production_models(repo)
        copy_model(repo, "yolo")
        copy_model(repo, "yolo_end2end")
        write_variant(repo, "yolo_fp32", input_layout="fp32-nchw")

        def no_batching(cfg: Any) -> None:
            cfg.ClearField("dynamic_batching")

        def delay(us: int) -> Callable[[Any], None]:
            def edit(cfg: Any) -> None:
                cfg.dynamic_batching.max_queue_delay_microseconds = us

            return edit

        def tier(max_batch: int, delay_us: int, instances: int, ordered: bool = False) -> Callable[[Any], None]:
            """A latency tier as the operator writes it (spec.tiers): its own batching and instances."""

            def edit(cfg: Any) -> None:
                cfg.max_batch_size = max_batch
                del cfg.dynamic_batching.preferred_batch_size[:]
                cfg.dynamic_batching.ClearField("default_queue_policy")
                cfg.dynamic_batching.max_queue_delay_microseconds = delay_us
                cfg.dynamic_batching.preserve_ordering = ordered
                cfg.instance_group[0].count = instances

            return edit

        write_variant(repo, "yolo-streaming", edit=tier(*TIERS["streaming"]))
        write_variant(repo, "yolo-batch", edit=tier(*TIERS["batch"]))

        def warmed(cfg: Any) -> None:
            """As the operator generates it: one inference on zeros before the model reports ready."""
            cfg.dynamic_batching.ClearField("default_queue_policy")
            warm = cfg.model_warmup.add(name="zeros", batch_size=1)
            warm.inputs["images"].data_type = cfg.input[0].data_type
            warm.inputs["images"].dims.extend(cfg.input[0].dims)
            warm.inputs["images"].zero_data = True

        write_variant(repo, "yolo_warm", edit=warmed)
        write_variant(repo, "yolo_nobatch", edit=no_batching)

        def queue_policy(cfg: Any) -> None:
            """`triton.dynamicBatching.queuePolicy.enabled: true`, as the operator writes it."""
            policy = cfg.dynamic_batching.default_queue_policy
            policy.timeout_action = model_config_pb2.ModelQueuePolicy.REJECT
            policy.default_timeout_microseconds = 5_000_000
            policy.allow_timeout_override, policy.max_queue_size = True, 1024

        write_variant(repo, "yolo_queuepolicy", edit=queue_policy)
        write_variant(repo, "yolo_delay0", edit=delay(0))
        write_variant(repo, "yolo_delay10ms", edit=delay(10_000))
        # the cheap model: the real model's output on one image, returned for any input
        session = ort.InferenceSession(
            str(LOCAL_REPO / "yolo" / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
        )
        tensor = self.tensor(self.jpegs[0], "UINT8", "NHWC")
        fixed = session.run(None, {"images": tensor[None]})[0][0]
        write_variant(repo, "cheap", onnx_model=constant_detector(fixed, 320, 320))
        return repo

    def add_production_models(self, repo: Path, only: tuple[str, ...] = ()) -> None:
        """Section 11's models (or `only` these of them), each prepared exactly as the operator's
        init container does: yolo_modelprep.cli.prepare on the file with the plan the operator
        derives from the spec."""
        from yolo_modelprep.cli import prepare  # noqa: PLC0415
        from yolo_operator.builders import model_plan  # noqa: PLC0415

        require_production_model()
        self.prepared: dict[str, dict] = {}
        for name, (file, optimized, _) in PRODUCTION.items():
            if only and name not in only:
                continue
            target = repo / name / "1" / "model.onnx"
            target.parent.mkdir(parents=True)
            shutil.copy(file, target)
            self.prepared[name] = prepare(
                target, [(model_plan(production_spec(name, optimized)), repo / name / "config.pbtxt")]
            )

    @staticmethod
    def tensor(jpeg: bytes, dtype: str, layout: str, size: int = 320) -> np.ndarray:
        return prepare_image(
            jpeg, "image/jpeg", in_w=size, in_h=size, layout=layout, dtype=dtype, max_pixels=10**9
        ).tensor

    # ------------------------------------------------------------------ senders

    def loop(self, send: Any, concurrency: int, rate: float | None = None) -> LoadResult:
        return asyncio.run(self._loop(send, concurrency, rate))

    async def _loop(self, make_send: Any, concurrency: int, rate: float | None) -> LoadResult:
        async with make_send() as send:
            if rate is not None:
                return await open_loop(send, rate, duration_s=self.window * self.stable, window_s=self.window)
            return await closed_loop(
                send, concurrency, window_s=self.window, stable_windows=self.stable, max_windows=self.max_windows
            )

    def gateway_sender(self, url: str, query: str = "") -> Any:
        return http_sender(url, jpeg_requests(self.jpegs, query))

    def direct_sender(
        self, model: str, dtype: str = "UINT8", layout: str = "NHWC", shared: bool = True, size: int = 320
    ) -> Any:
        """Direct Triton gRPC with preprocessed tensors: the ceiling. shared=False: a new client per request."""
        target = self.triton.grpc_target  # type: ignore[union-attr]  # the bench's Triton is started before any section runs
        tensors = [self.tensor(j, dtype, layout, size)[None] for j in self.jpegs]
        args = channel_args(Settings())

        async def infer(client: InferenceServerClient, i: int) -> int:
            t = tensors[i % len(tensors)]
            inp = InferInput("images", list(t.shape), dtype)
            inp.set_data_from_numpy(t)
            await client.infer(model, [inp])
            return 200

        class Sender:
            async def __aenter__(self) -> Any:
                self.client = InferenceServerClient(target, channel_args=args) if shared else None

                async def send(i: int) -> int:
                    if self.client is not None:
                        return await infer(self.client, i)
                    client = InferenceServerClient(target, channel_args=args)  # the anti-pattern
                    try:
                        return await infer(client, i)
                    finally:
                        await client.close()

                return send

            async def __aexit__(self, *exc: object) -> None:
                if self.client is not None:
                    await self.client.close()

        return Sender

    # ------------------------------------------------------------------ measurements

    def measure(
        self,
        label: str,
        sender: Any,
        concurrency: int,
        model: str,
        gateway: GatewayProcess | None = None,
        rate: float | None = None,
    ) -> dict:
        before = triton_stats(self.triton.http_url, model)  # type: ignore[union-attr]  # the bench's Triton is started before any section runs
        cpu0 = process_cpu_seconds(gateway.process.pid) if gateway else None  # type: ignore[union-attr]  # a started process always has one
        split0 = thread_cpu_seconds(gateway.process.pid) if gateway else {}  # type: ignore[union-attr]  # a started process always has one
        result = self.loop(sender, concurrency, rate)
        cpu1 = process_cpu_seconds(gateway.process.pid) if gateway else None  # type: ignore[union-attr]  # a started process always has one
        split1 = thread_cpu_seconds(gateway.process.pid) if gateway else {}  # type: ignore[union-attr]  # a started process always has one
        after = triton_stats(self.triton.http_url, model)  # type: ignore[union-attr]  # the bench's Triton is started before any section runs
        row = {"label": label, "model": model, **result.to_dict(), "triton": triton_split(before, after)}
        if gateway is not None and result.requests:
            total_requests = row["triton"]["inferences"] or result.requests
            row["gateway_cpu_ms_per_request"] = round((cpu1 - cpu0) * 1e3 / total_requests, 3)  # type: ignore[operator]  # both are set when there is a gateway, the only case that reaches here
            row["gateway_cpu_ms_by_thread"] = {
                k: round((split1[k] - split0[k]) * 1e3 / total_requests, 3) for k in split1
            }
        where = f"c={concurrency}" if rate is None else f"{rate:.0f}/s"
        print(
            f"  {label:<42} {where:<7} {result.rps:8.1f} rps  p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms  batch {row['triton']['mean_batch']:5.2f}"
            + (f"  cpu {row.get('gateway_cpu_ms_per_request', 0):.2f} ms/req" if gateway else ""),
            flush=True,
        )
        return row

    async def added_latency(
        self,
        url: str,
        model: str,
        pairs: int,
        blocks: int = 4,
        *,
        dtype: str = "UINT8",
        layout: str = "NHWC",
        size: int = 320,
    ) -> dict:
        """1c. What the gateway adds to one request, decode excluded, measured in pairs: a direct
        Triton call with the image's tensor and a gateway request with its JPEG, back to back
        (the order alternates), c=1. Each pair gives gateway - direct - (the decode and letterbox
        that the gateway timed for that very request); the figure is the median over all pairs,
        and the medians of `blocks` consecutive blocks show how much it moves within one run.
        The difference of two separately measured p50s (section 1) moves by several ms between
        runs; a paired median does not carry the two windows' drift."""
        direct_ms, gateway_ms, prepare_ms = [], [], []
        async with self.direct_sender(model, dtype, layout, size=size)() as send, aiohttp.ClientSession() as session:

            async def direct(i: int) -> float:
                t0 = time.perf_counter()
                await send(i)
                return (time.perf_counter() - t0) * 1e3

            async def gateway(i: int) -> tuple[float, float]:
                t0 = time.perf_counter()
                async with session.post(
                    f"{url}/v1/detect", data=self.jpegs[i], headers={"content-type": "image/jpeg"}
                ) as r:
                    body = await r.json()
                    assert r.status == 200, body
                elapsed = (time.perf_counter() - t0) * 1e3
                return elapsed, body["timings_ms"]["decode"] + body["timings_ms"]["preprocess"]

            for i in range(2 * len(self.jpegs)):  # warm both paths
                await direct(i % len(self.jpegs))
                await gateway(i % len(self.jpegs))
            for k in range(pairs):
                i = k % len(self.jpegs)
                if k % 2:
                    g, prep = await gateway(i)
                    d = await direct(i)
                else:
                    d = await direct(i)
                    g, prep = await gateway(i)
                direct_ms.append(d)
                gateway_ms.append(g)
                prepare_ms.append(prep)
        added = np.array(gateway_ms) - np.array(direct_ms) - np.array(prepare_ms)
        size = len(added) // blocks
        row = {
            "pairs": len(added),
            "median_added_ms": round(float(np.median(added)), 3),
            "p25_added_ms": round(float(np.percentile(added, 25)), 3),
            "p75_added_ms": round(float(np.percentile(added, 75)), 3),
            "block_medians_ms": [round(float(np.median(added[b * size : (b + 1) * size])), 3) for b in range(blocks)],
            "direct_p50_ms": round(float(np.median(direct_ms)), 3),
            "gateway_p50_ms": round(float(np.median(gateway_ms)), 3),
            "decode_letterbox_p50_ms": round(float(np.median(prepare_ms)), 3),
        }
        print(
            f"  added (median of {row['pairs']} pairs) {row['median_added_ms']:.2f} ms  IQR {row['p25_added_ms']:.2f}..{row['p75_added_ms']:.2f}"
            f"  blocks {row['block_medians_ms']}  (gateway {row['gateway_p50_ms']:.2f}, direct {row['direct_p50_ms']:.2f}, decode+letterbox {row['decode_letterbox_p50_ms']:.2f})",
            flush=True,
        )
        return row

    def with_gateway(self, model: str, **settings: str) -> GatewayProcess:
        """A gateway for `model`; admission control opened wide unless `settings` say otherwise
        (the load sweeps measure the pipeline, not shedding)."""
        env = {
            # the bench's Triton unless the caller names others (the routing section's pair)
            "YOLO_GATEWAY_TRITON_URL": settings.pop("triton_url", "") or self.triton.grpc_target,  # type: ignore[union-attr]  # the bench's Triton is started before any section that names none
            "YOLO_GATEWAY_MODEL_NAME": model,
            "YOLO_GATEWAY_LOG_LEVEL": "warning",
            "YOLO_GATEWAY_MAX_CONCURRENCY": "4096",
            **{f"YOLO_GATEWAY_{k.upper()}": v for k, v in settings.items()},
        }
        return GatewayProcess(free_port(), env, log_path=self.work / f"gateway-{model}.log").start()

    def run(self) -> dict:
        require_production_model()  # before minutes of measuring, not after
        t0 = time.perf_counter()
        results: dict[str, Any] = {
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "processor": platform.processor() or platform.machine(),
            },
            "quick": self.quick,
            "method": {
                "window_s": self.window,
                "stable_windows": self.stable,
                "tolerance": 0.10,
                "max_windows": self.max_windows,
                "images": "8 synthetic 1920x1080 JPEGs, quality 90",
                "model_input": "320x320",
            },
        }
        print("microbenchmarks ...", flush=True)
        results["micro"] = micro.run(self.quick)
        repeat = 5 if self.quick else 20
        # the decode-only floor and our whole decode + letterbox, on the very images the load tests send
        pairs = [
            micro.interleaved_ms(
                {
                    "floor": lambda j=j: micro.decode_floor(j, 1920, 1080, 320, 180),
                    "prepare": lambda j=j: self.tensor(j, "UINT8", "NHWC"),
                },
                repeat,
            )
            for j in self.jpegs
        ]
        results["bench_images"] = {
            "decode_floor_ms": round(float(np.mean([p["floor"] for p in pairs])), 3),
            "prepare_ms": round(float(np.mean([p["prepare"] for p in pairs])), 3),
        }
        repo = self.build_repo()
        self.triton = LocalTriton(repo, TritonPorts.free(), log_path=self.work / "triton.log").start(timeout=180)
        try:
            sweep = [1, 16] if self.quick else [1, 4, 16, 64]
            print("1. direct Triton gRPC (preprocessed tensors) vs the gateway, real model", flush=True)
            rows = []
            gw = self.with_gateway("yolo")
            try:
                for c in sweep:
                    rows.append(self.measure("direct", self.direct_sender("yolo"), c, "yolo"))
                    rows.append(self.measure("gateway", self.gateway_sender(gw.url), c, "yolo", gw))
                # open loop at 60% of the gateway's closed-loop capacity: latency without coordinated omission
                capacity = max(r["rps"] for r in rows if r["label"] == "gateway")
                open_row = self.measure(
                    "gateway, open loop", self.gateway_sender(gw.url), 0, "yolo", gw, rate=round(0.6 * capacity, 1)
                )
                print("1c. the latency the gateway adds at c=1: direct and gateway requests in pairs", flush=True)
                results["added_latency"] = asyncio.run(self.added_latency(gw.url, "yolo", 100 if self.quick else 400))
            finally:
                gw.stop()
            results["direct_vs_gateway"] = rows
            results["open_loop"] = [open_row]

            print(
                "1b. Triton 2.51's batcher with and without a queue policy, back-to-back requests (c=1, direct)",
                flush=True,
            )
            results["queue_policy"] = [
                self.measure(
                    "queue policy (max_queue_size, REJECT)",
                    self.direct_sender("yolo_queuepolicy"),
                    1,
                    "yolo_queuepolicy",
                ),
                self.measure("no queue policy (the default)", self.direct_sender("yolo"), 1, "yolo"),
            ]

            print("2. one shared channel vs a new client per request (c=64, cheap model)", flush=True)
            results["channel"] = [
                self.measure("shared channel", self.direct_sender("cheap"), 64, "cheap"),
                self.measure("new client per request", self.direct_sender("cheap", shared=False), 64, "cheap"),
            ]

            print("3. dynamic batching (c=64, real model, direct)", flush=True)
            results["batching"] = [
                self.measure(label, self.direct_sender(model), 64, model)
                for label, model in (
                    ("off", "yolo_nobatch"),
                    ("on, max_queue_delay 0", "yolo_delay0"),
                    ("on, max_queue_delay 2 ms", "yolo"),
                    ("on, max_queue_delay 10 ms", "yolo_delay10ms"),
                )
            ]

            print("4. input encoding and NMS placement, through the gateway (c=16)", flush=True)
            rows = []
            for label, model in (
                ("uint8 NHWC, raw + CPU NMS", "yolo"),
                ("fp32 NCHW, raw + CPU NMS", "yolo_fp32"),
                ("uint8 NHWC, end2end (NMS in graph)", "yolo_end2end"),
            ):
                gw = self.with_gateway(model)
                try:
                    row = self.measure(label, self.gateway_sender(gw.url), 16, model, gw)
                finally:
                    gw.stop()
                row["wire_bytes_per_request"] = self.wire_bytes(model)
                rows.append(row)
            results["encoding"] = rows

            print("5. the cheap model isolates the gateway (c=16)", flush=True)
            gw = self.with_gateway("cheap")
            try:
                results["cheap_gateway"] = [
                    self.measure("gateway, cheap model", self.gateway_sender(gw.url), 16, "cheap", gw)
                ]
            finally:
                gw.stop()

            n = 200 if self.quick else 500
            print(f"6. a burst of {n} requests at once: admission control (the defaults) vs none", flush=True)
            rows = []
            for label, settings in (
                (
                    "admission control (defaults: 64 running, 64 queued, 0.1 s)",
                    {"max_concurrency": "64", "max_queue": "64", "queue_timeout_s": "0.1"},
                ),
                ("none (everything admitted, 10 s deadline)", {}),
            ):
                gw = self.with_gateway("yolo", **settings)
                try:
                    loadgen.burst(gw.port, self.jpegs[0], 16)  # warm
                    row = {"label": label, **loadgen.burst(gw.port, self.jpegs[0], n)}
                finally:
                    gw.stop()
                print(f"  {label:<62} {row['statuses']}  p50 {row['p50_ms']}  p95 {row['p95_ms']}", flush=True)
                rows.append(row)
            results["burst"] = rows

            results["static_camera"] = self.static_camera()
            results["tiers"] = self.tiers()
            results["parity"] = self.parity()
            results["production"] = self.production()
            results["first_request"] = self.first_request(repo)
        finally:
            self.triton.stop()
        results["targets"] = report.targets(results)
        results["seconds"] = round(time.perf_counter() - t0, 1)
        return results

    def camera_frames(self, n: int = 40, states: int = 6) -> tuple[list[bytes], list[int]]:
        """A static camera: one 1280x720 scene; every ~n/states frames a new object appears; every
        frame has fresh sensor noise (sigma 2) and its own JPEG encoding. Returns frames, state ids."""
        rng = np.random.default_rng(7)
        img = make_scene(rng, 1280, 720, min_objects=2, max_objects=4).image.astype(np.float32)
        frames, ids = [], []
        for i in range(n):
            state = i * states // n
            if i and state != ids[-1]:  # a new object enters and stays
                x, y, w = int(rng.integers(0, 1100)), int(rng.integers(0, 520)), int(rng.integers(60, 160))
                cv2.rectangle(img, (x, y), (x + w, y + w), tuple(float(v) for v in rng.integers(0, 255, 3)), -1)
            noisy = np.clip(img + rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8)
            frames.append(cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
            ids.append(state)
        return frames, ids

    def static_camera(self) -> list[dict]:
        """7. The inference cache on a static camera: off vs on, the same frames in order (c=1)."""
        frames, ids = self.camera_frames()
        print(
            f"7. a static camera ({len(frames)} frames, {len(set(ids))} scenes, fresh noise each): inference cache off vs on (c=1)",
            flush=True,
        )
        rows = []
        answers: dict[str, list[list[int]]] = {}
        for label, settings in (("cache off", {}), ("cache on (ttl 60 s, max difference 3)", {"cache_ttl_s": "60"})):
            gw = self.with_gateway("yolo", **settings)
            try:
                with httpx.Client(base_url=gw.url, timeout=30) as c:  # one ordered pass: the answers, and the hits
                    out = [
                        c.post("/v1/detect", content=f, headers={"content-type": "image/jpeg"}).json() for f in frames
                    ]
                answers[label] = [sorted(d["class_id"] for d in r["detections"]) for r in out]
                cached = sum(bool(r.get("cached")) for r in out)
                jpegs, self.jpegs = self.jpegs, frames
                try:
                    row = self.measure(label, self.gateway_sender(gw.url), 1, "yolo", gw)
                finally:
                    self.jpegs = jpegs
            finally:
                gw.stop()
            row["hit_ratio_first_pass"] = round(cached / len(frames), 3)
            rows.append(row)
        off, on = answers.values()
        rows[1]["same_classes_as_uncached"] = round(sum(a == b for a, b in zip(off, on, strict=True)) / len(frames), 3)
        # the model's own noise: uncached frames of one scene that agree with that scene's first frame
        first = {s: off[ids.index(s)] for s in set(ids)}
        rows[0]["same_classes_as_scene_first_frame"] = round(
            sum(off[i] == first[ids[i]] for i in range(len(frames))) / len(frames), 3
        )
        rows[1]["ideal_hit_ratio"] = round(1 - len(set(ids)) / len(frames), 3)
        print(
            f"  hits {rows[1]['hit_ratio_first_pass']} (ideal {rows[1]['ideal_hit_ratio']}), same classes as uncached {rows[1]['same_classes_as_uncached']}"
            f" (uncached frames vs their scene's first frame: {rows[0]['same_classes_as_scene_first_frame']})",
            flush=True,
        )
        return rows

    def mixed(self, loads: list[tuple[str, str, int, float | None]]) -> list[dict]:
        """Several loads at once, each (label, model, concurrency, rate): a closed loop, or an open
        loop at `rate` requests/s; all for the same number of windows."""
        n = self.stable + 1
        models = sorted({m for _, m, _, _ in loads})
        before = {m: triton_stats(self.triton.http_url, m) for m in models}  # type: ignore[union-attr]  # the bench's Triton is started before any section runs

        def run(send: Any, c: int, rate: float | None) -> Any:
            if rate is not None:
                return open_loop(send, rate, duration_s=self.window * n, window_s=self.window)
            return closed_loop(send, c, window_s=self.window, stable_windows=n, max_windows=n)

        async def go() -> list[LoadResult]:
            async with contextlib.AsyncExitStack() as stack:
                sends = [await stack.enter_async_context(self.direct_sender(model)()) for _, model, _, _ in loads]
                return await asyncio.gather(
                    *(run(send, c, rate) for send, (_, _, c, rate) in zip(sends, loads, strict=True))
                )

        results = asyncio.run(go())
        after = {m: triton_stats(self.triton.http_url, m) for m in models}  # type: ignore[union-attr]  # the bench's Triton is started before any section runs
        rows = []
        for (label, model, c, rate), result in zip(loads, results, strict=True):
            row = {
                "label": label,
                "model": model,
                **result.to_dict(),
                "triton": triton_split(before[model], after[model]),
            }
            where = f"{rate:.0f}/s" if rate is not None else f"c={c}"
            print(
                f"  {label:<42} {where:<7} {result.rps:8.1f} rps  p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms  batch {row['triton']['mean_batch']:5.2f}",
                flush=True,
            )
            rows.append(row)
        return rows

    def tiers(self) -> list[dict]:
        """8. Latency tiers (spec.tiers) under mixed load: camera streams at a fixed rate and batch
        clients that take all they can, at once, on one model config, then each on its own tier
        (direct Triton, preprocessed tensors: the tier is Triton's batching, not the gateway)."""
        rate, b = MIXED["streaming_rate"], MIXED["batch"]
        print(
            f"8. latency tiers under mixed load: camera streams at {rate:g} requests/s + {b} batch clients at once (direct)",
            flush=True,
        )
        one = self.mixed(
            [("one config: the camera streams", "yolo", 1, rate), ("one config: the batch clients", "yolo", b, None)]
        )
        tiered = self.mixed(
            [("tiers: streaming tier", "yolo-streaming", 1, rate), ("tiers: batch tier", "yolo-batch", b, None)]
        )
        for row in one:  # one model serves both: Triton's statistics cannot tell them apart
            row["triton"] = dict.fromkeys(row["triton"], "-")
        return one + tiered

    def parity(self) -> list[dict]:
        """9. preprocess=fast (DCT-scaled decode, INTER_AREA) vs parity (Ultralytics' full decode,
        INTER_LINEAR, its letterbox and box mapping): mAP50 and precision/recall at conf 0.25 on
        held-out scenes, and gateway CPU per 1080p request (c=4)."""
        rng = np.random.default_rng(20261122)  # the held-out scenes of the accuracy tests
        sizes = [(640, 480), (1280, 720), (480, 640), (1024, 1024), (800, 450), (1920, 1080)]
        scenes = [make_scene(rng, *sizes[i % len(sizes)]) for i in range(30 if self.quick else 120)]
        images = [encode(scene, ".jpg", 90) for scene in scenes]
        print(
            f"9. preprocess=fast vs parity: accuracy on {len(scenes)} held-out scenes, gateway CPU per 1080p request",
            flush=True,
        )
        rows = []
        gw = self.with_gateway("yolo")
        try:
            with httpx.Client(base_url=gw.url, timeout=30) as c:
                for mode in ("fast", "parity"):
                    query = f"?preprocess={mode}"
                    # every candidate down to conf 0.001 (as Ultralytics' val does), for the whole precision/recall curve
                    preds = [
                        accuracy.from_response(
                            c.post(
                                f"/v1/detect{query}&conf=0.001&max_det=300",
                                content=img,
                                headers={"content-type": "image/jpeg"},
                            ).json()
                        )
                        for img in images
                    ]
                    row = self.measure(f"preprocess={mode}", self.gateway_sender(gw.url, query), 4, "yolo", gw)
                    precision, recall = accuracy.precision_recall(preds, scenes, 0.25)
                    row |= {
                        "map50": round(accuracy.map50(preds, scenes, len(CLASS_NAMES)), 4),
                        "precision": round(precision, 4),
                        "recall": round(recall, 4),
                    }
                    print(
                        f"    mAP50 {row['map50']:.4f}  precision {precision:.4f}  recall {recall:.4f} (conf 0.25)",
                        flush=True,
                    )
                    rows.append(row)
        finally:
            gw.stop()
        return rows

    @contextlib.contextmanager
    def windows(self, window: float, stable: int, max_windows: int) -> Any:
        """Longer measurement windows for a slow model: a few requests/s need them to count."""
        saved = self.window, self.stable, self.max_windows
        self.window, self.stable, self.max_windows = window, stable, max_windows
        try:
            yield
        finally:
            self.window, self.stable, self.max_windows = saved

    def measure_with_triton_cpu(
        self,
        label: str,
        sender: Any,
        concurrency: int,
        model: str,
        gateway: GatewayProcess | None = None,
        gateway_idle_ms_per_s: float | None = None,
    ) -> dict:
        """measure(), plus Triton's own CPU over the run: tritonserver and its python-backend
        stubs (onnxruntime runs there), per request served and per core. With the gateway's idle
        CPU rate, also its CPU per request less what it would have spent idle over the run (at a
        few requests/s its idle wake-ups are a visible share)."""
        pid = self.triton.process.pid  # type: ignore[union-attr]  # the bench's Triton is started before any section runs
        cpu0, machine0, t0 = tree_cpu_seconds(pid), machine_cpu_seconds(), time.perf_counter()
        row = self.measure(label, sender, concurrency, model, gateway)
        cpu, machine1, wall = tree_cpu_seconds(pid) - cpu0, machine_cpu_seconds(), time.perf_counter() - t0
        served = row["triton"]["inferences"]
        # the whole machine over the run, in cores: what Triton could not get went to the gateway,
        # the load generator, or (steal) other guests of the host
        row["machine_cores"] = {k: round((machine1[k] - machine0[k]) / wall, 2) for k in machine1}
        if gateway_idle_ms_per_s is not None and served and row.get("gateway_cpu_ms_per_request"):
            row["gateway_idle_cpu_ms_per_s"] = round(gateway_idle_ms_per_s, 3)
            row["gateway_cpu_ms_per_request_less_idle"] = round(
                row["gateway_cpu_ms_per_request"] - gateway_idle_ms_per_s * wall / served, 3
            )
        row["triton_cpu_ms_per_request"] = round(cpu * 1e3 / served, 3) if served else None
        row["requests_per_triton_core_s"] = round(served / cpu, 2) if cpu > 0 else None
        row["triton_cores_busy"] = round(cpu / wall, 2)
        row["rps_per_machine_core"] = round(row["completed_rps"] / (os.cpu_count() or 1), 2)
        print(
            f"  {'':<42} {row['completed_rps']} completions/s; Triton {row['triton_cpu_ms_per_request']} ms CPU/request, "
            f"{row['requests_per_triton_core_s']} requests per Triton core-second, {row['triton_cores_busy']} cores busy; machine {row['machine_cores']}",
            flush=True,
        )
        return row

    async def probe(self, model: str, config: dict, raw: bool) -> tuple[dict[str, list[int]], dict]:
        """One direct call per bench image: the shape of each output (batch excluded: what fills a
        config's dynamic dims), and with `raw` (a [4 + classes, anchors] output) what it holds: the
        best class score, and the anchors per image over the default conf and over the in-graph
        NMS's score floor."""
        from yolo_modelprep.optimize import NMS_SCORE_FLOOR  # noqa: PLC0415

        dtype, layout, size, _ = input_encoding(config)
        name, outputs = config["input"][0]["name"], [o["name"] for o in config["output"]]
        client = InferenceServerClient(self.triton.grpc_target, channel_args=channel_args(Settings()))  # type: ignore[union-attr]  # the bench's Triton is started before any section runs
        try:
            best, shapes = [], {}
            for j in self.jpegs:
                t = self.tensor(j, dtype, layout, size)[None]
                inp = InferInput(name, list(t.shape), dtype)
                inp.set_data_from_numpy(t)
                result = await client.infer(model, [inp])
                shapes = {o: list(result.as_numpy(o).shape[1:]) for o in outputs}
                if raw:
                    best.append(result.as_numpy(outputs[0])[0][4:].max(0))
        finally:
            await client.close()
        if not raw:
            return shapes, {}
        scores = np.stack(best)
        return shapes, {
            "max_class_score": round(float(scores.max()), 5),
            "anchors_over_conf_0.25_per_image": round(float((scores > 0.25).sum(1).mean()), 2),
            f"anchors_over_{NMS_SCORE_FLOOR}_per_image": round(float((scores > NMS_SCORE_FLOOR).sum(1).mean()), 2),
        }

    def production(self) -> dict:
        """11. Production size next to the bundled model, in the same run, on one Triton:
        the trained YOLOv8n 640/80 (model_repository/trained) and the bundled 320/3 detector,
        each served plain and optimized (model.optimize: uint8 NHWC input, NMS in the graph), every
        one prepared as the operator's init container does. Per model: the gateway's CPU per 1080p
        request against the decode-only floor at its own input size; Triton's mean batch,
        requests/s and CPU per request at c=16 (direct, preprocessed tensors: Triton is the
        bottleneck); the bytes an image puts on the wire (from the loaded configs); and the
        paired added latency at c=1 (section 1c's method)."""
        started = time.perf_counter()
        triton = self.triton
        assert triton is not None and triton.process is not None
        print(
            f"11. production size: {PROD_LABEL} vs {BUNDLED_LABEL}, plain and optimized, prepared as the operator does",
            flush=True,
        )
        models: dict[str, dict] = {}
        encodings: dict[str, tuple[str, str, int]] = {}
        raw = {}
        for name, (file, optimized, label) in PRODUCTION.items():
            config = triton_config(triton.http_url, name)
            dtype, layout, height, width = input_encoding(config)
            encodings[name] = (dtype, layout, height)
            prep = self.prepared[name]
            # the outputs as served (a dynamic export leaves the anchor count to the response), and
            # on the plain variants' raw output, what the model scores
            shapes, scores = asyncio.run(self.probe(name, config, raw=not optimized))
            if scores:
                raw[name] = {"label": label, **scores}
                print(f"  raw output, {name}: {raw[name]}", flush=True)
            models[name] = {
                "label": label,
                "variant": "optimized" if optimized else "plain",
                "file": file.name,
                "input": f"{dtype.lower()} {layout} {width}x{height}",
                "outputs": shapes,
                "max_batch_size": int(config["max_batch_size"]),
                "prepare": {k: prep[k] for k in ("reason", "message", "optimized", "seconds")},
                "wire_bytes_per_request": loadgen.wire_bytes(config, shapes),
            }

        # the decode-only floor at each input size, and each model's own decode + letterbox, on the
        # load's images, timed round-robin (a 640 input DCT-scales 1080p by 1/2, a 320 one by 1/4)
        sizes = sorted({h for _, _, h in encodings.values()})
        floors: dict[int, list[float]] = {s: [] for s in sizes}
        prepares: dict[str, list[float]] = {n: [] for n in PRODUCTION}
        for jpeg, scene in zip(self.jpegs, self.scenes, strict=True):
            h0, w0 = scene.image.shape[:2]
            methods: dict[str, Callable[[], object]] = {}
            for s in sizes:
                _, nw, nh = letterbox_geometry(w0, h0, s, s)
                methods[f"floor {s}"] = lambda j=jpeg, w0=w0, h0=h0, nw=nw, nh=nh: micro.decode_floor(j, w0, h0, nw, nh)
            for n, (dtype, layout, s) in encodings.items():
                methods[n] = lambda j=jpeg, d=dtype, lay=layout, s=s: self.tensor(j, d, lay, s)
            times = micro.interleaved_ms(methods, 5 if self.quick else 20)
            for s in sizes:
                floors[s].append(times[f"floor {s}"])
            for n in PRODUCTION:
                prepares[n].append(times[n])
        floor_ms = {s: round(float(np.mean(v)), 3) for s, v in floors.items()}
        for n in PRODUCTION:
            models[n]["decode_letterbox_ms"] = round(float(np.mean(prepares[n])), 3)
            models[n]["decode_floor_ms"] = floor_ms[encodings[n][2]]
        print(
            "  decode-only floor of the 1080p images: "
            + ", ".join(f"{s} px input {v:.2f} ms" for s, v in floor_ms.items()),
            flush=True,
        )

        c, pairs = PROD_CONCURRENCY, 40 if self.quick else 100
        # the 640/80 network serves a few requests/s here: windows long enough to count some
        slow = (5.0, 2, 2) if self.quick else (8.0, 3, 3)
        gateway_rows, added = [], {}
        for name, (file, _, label) in PRODUCTION.items():
            dtype, layout, size = encodings[name]
            gw = self.with_gateway(name)
            try:
                with httpx.Client(
                    base_url=gw.url, timeout=30
                ) as client:  # warm-up, and what the model finds at the default conf
                    found = [
                        len(
                            client.post("/v1/detect", content=j, headers={"content-type": "image/jpeg"}).json()[
                                "detections"
                            ]
                        )
                        for j in self.jpegs
                    ]
                idle0 = schedstat_cpu_seconds(gw.process.pid)  # type: ignore[union-attr]  # a started process always has one
                time.sleep(2.0)
                idle = (schedstat_cpu_seconds(gw.process.pid) - idle0) * 1e3 / 2.0  # type: ignore[union-attr]  # a started process always has one
                with self.windows(*slow) if file == PROD_ONNX else contextlib.nullcontext():
                    row = self.measure_with_triton_cpu(
                        f"gateway, {label}, {models[name]['variant']}",
                        self.gateway_sender(gw.url),
                        c,
                        name,
                        gw,
                        gateway_idle_ms_per_s=idle,
                    )
                print(f"  paired added latency at c=1, {name}", flush=True)
                added[name] = {
                    "label": label,
                    "variant": models[name]["variant"],
                    **asyncio.run(self.added_latency(gw.url, name, pairs, dtype=dtype, layout=layout, size=size)),
                }
            finally:
                gw.stop()
            models[name]["detections_per_image_at_conf_0.25"] = round(float(np.mean(found)), 2)
            cpu, net = row.get("gateway_cpu_ms_per_request"), row.get("gateway_cpu_ms_per_request_less_idle")
            row |= {
                "model_label": label,
                "variant": models[name]["variant"],
                "decode_floor_ms": floor_ms[size],
                "cpu_vs_floor": round(cpu / floor_ms[size], 3) if cpu else None,
                "cpu_less_idle_vs_floor": round(net / floor_ms[size], 3) if net else None,
            }
            print(
                f"  {'':<42} gateway CPU {cpu} ms/request = {row['cpu_vs_floor']}x the {size} px floor ({floor_ms[size]:.2f} ms); "
                f"less idle ({idle:.2f} ms/s) {net} ms = {row['cpu_less_idle_vs_floor']}x",
                flush=True,
            )
            gateway_rows.append(row)

        direct_rows = []
        for name, (file, _, label) in PRODUCTION.items():
            dtype, layout, size = encodings[name]
            with self.windows(*slow) if file == PROD_ONNX else contextlib.nullcontext():
                row = self.measure_with_triton_cpu(
                    f"direct, {label}, {models[name]['variant']}",
                    self.direct_sender(name, dtype, layout, size=size),
                    c,
                    name,
                )
            row |= {
                "model_label": label,
                "variant": models[name]["variant"],
                "max_batch_size": models[name]["max_batch_size"],
            }
            row["batch_fill"] = round(row["triton"]["mean_batch"] / row["max_batch_size"], 3)
            direct_rows.append(row)

        wire = []
        for plain, opt in (("v8n", "v8n_opt"), ("bundled", "bundled_opt")):
            a, b = models[plain]["wire_bytes_per_request"], models[opt]["wire_bytes_per_request"]
            wire.append(
                {
                    "model_label": PRODUCTION[plain][2],
                    "plain": a,
                    "optimized": b,
                    "ratio": round(b["total"] / a["total"], 4),
                }
            )
            print(
                f"  wire bytes per image, {PRODUCTION[plain][2]}: plain {a['total']:,}, optimized {b['total']:,} ({wire[-1]['ratio']:.3f})",
                flush=True,
            )

        seconds = round(time.perf_counter() - started, 1)
        print(f"  section 11 took {seconds} s", flush=True)
        return {
            "models": models,
            "decode_floor_ms": {str(s): v for s, v in floor_ms.items()},
            "concurrency": c,
            "gateway": gateway_rows,
            "triton": direct_rows,
            "wire": wire,
            "added_latency": added,
            "raw_output": raw,
            "notes": [
                f"{PROD_LABEL}: Ultralytics' stock YOLOv8n trained on the synthetic scenes (model_repository/trained; "
                "train_production.py), exported as `yolo export` does by default (batch fixed to 1, rewritten by the preparation). "
                "It detects the scenes' shapes, so NMS, JSON and box mapping do the work they do in production.",
                "Triton CPU is tritonserver plus its python-backend stubs, which run onnxruntime here (the PyPI Triton's stand-in for "
                "the onnxruntime backend); the gateway and the load generator share the same cores.",
                f"The 640/80 loads run in windows of {slow[0]:g} s (at most {slow[2]}): at a few requests/s, rps and latency percentiles "
                "rest on tens of requests, and batches of up to 8 that take over a second make the windows disagree (stable: false); "
                "CPU per request and the mean batch count every request Triton served over the run.",
                f"Added latency at c=1 takes section 1c's pairs, {pairs} a model (section 1c takes {100 if self.quick else 400}): its "
                "IQR and block medians show how far each median can be trusted; other load on the machine widens them by tens of ms.",
            ],
            "seconds": seconds,
        }

    def first_request(self, repo: Path) -> list[dict]:
        """10. The first request after a start against steady state (c=1): a gateway started next
        to a running Triton, and a Triton and a gateway started together (`model_warmup` in the
        config, and the gateway's own warm-up inference before it reports ready)."""
        print(
            "10. the first request after a start vs steady state (c=1, model_warmup + the gateway's warm-up)",
            flush=True,
        )
        rows = []
        for label, fresh in (("gateway start, Triton running", False), ("Triton and gateway start", True)):
            for attempt in range(1 if self.quick else 3):
                triton = (
                    LocalTriton(repo, TritonPorts.free(), log_path=self.work / "triton-fresh.log").start(timeout=180)
                    if fresh
                    else self.triton
                )
                env = {
                    "YOLO_GATEWAY_TRITON_URL": triton.grpc_target,
                    "YOLO_GATEWAY_MODEL_NAME": "yolo_warm",
                    "YOLO_GATEWAY_LOG_LEVEL": "warning",
                }  # type: ignore[union-attr]  # the bench's Triton is started before any section runs
                gw = GatewayProcess(free_port(), env, log_path=self.work / "gateway-first.log").start()
                try:
                    with httpx.Client(base_url=gw.url, timeout=30) as c:
                        times = []
                        for i in range(31):
                            t0 = time.perf_counter()
                            r = c.post(
                                "/v1/detect",
                                content=self.jpegs[i % len(self.jpegs)],
                                headers={"content-type": "image/jpeg"},
                            )
                            times.append((time.perf_counter() - t0) * 1e3)
                            assert r.status_code == 200, r.text
                finally:
                    gw.stop()
                    if fresh:
                        triton.stop()  # type: ignore[union-attr]  # set in the same branch that stops it
                steady = float(np.median(times[1:]))
                row = {
                    "label": label,
                    "attempt": attempt,
                    "first_ms": round(times[0], 2),
                    "steady_p50_ms": round(steady, 2),
                    "first_vs_steady": round(times[0] / steady, 3),
                }
                print(
                    f"  {label:<42} first {row['first_ms']:7.2f} ms  steady p50 {steady:7.2f} ms  ratio {row['first_vs_steady']:.2f}",
                    flush=True,
                )
                rows.append(row)
        return rows

    def wire_bytes(self, model: str) -> dict:
        inputs = 320 * 320 * 3 * (4 if model == "yolo_fp32" else 1)
        outputs = 4 + 100 * 4 * 4 + 100 * 4 + 100 * 4 if model == "yolo_end2end" else 7 * 2100 * 4
        return {"input": inputs, "output": outputs, "total": inputs + outputs}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", default=os.environ.get("QUICK", "") not in ("", "0"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument(
        "--only",
        choices=["static-camera", "tiers", "parity", "first-request", "production", "routing", "peers", "tls"],
        help="one section alone, written to <out>/<section>.json",
    )
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.only == "routing":  # two Tritons of its own, each under a CPU quota
        bench = Bench(args.quick, out)
        rows = routing.run(bench, bench.build_repo(production=False))
        (out / "routing.json").write_text(json.dumps({"rows": rows, "targets": routing.targets(rows)}, indent=2) + "\n")
        (out / "routing.md").write_text(routing.markdown(rows))
        print(out / "routing.md")
        return
    if args.only == "peers":  # one Triton of its own; the peers from their own venv
        bench = Bench(args.quick, out)
        result = peers.run(bench)
        (out / "peers.json").write_text(
            json.dumps(
                {
                    **result,
                    "targets": peers.targets(result),
                    "optimized_against_peers": peers.targets(result, "gateway_optimized"),
                },
                indent=2,
            )
            + "\n"
        )
        (out / "peers.md").write_text(peers.markdown(result))
        peers.plot(result, out / "peers.svg")
        print(out / "peers.md")
        return
    if args.only:
        bench = Bench(args.quick, out)
        repo = bench.build_repo(production=args.only == "production")
        bench.triton = LocalTriton(repo, TritonPorts.free(), log_path=bench.work / "triton.log").start(timeout=180)
        try:
            sections = {
                "static-camera": bench.static_camera,
                "tiers": bench.tiers,
                "parity": bench.parity,
                "first-request": lambda: bench.first_request(repo),
                "production": bench.production,
                "tls": lambda: tls_section.run(bench),
            }
            rows = sections[args.only]()
        finally:
            bench.triton.stop()
        path = out / f"{args.only.replace('-', '_')}.json"
        path.write_text(json.dumps(rows, indent=2) + "\n")
        if args.only == "production":
            (out / "production.md").write_text("\n\n".join(report.production_section(rows)) + "\n")
        if args.only == "tls":
            path = tls_section.write(rows, out)
        print(path)
        return
    results = Bench(args.quick, out).run()
    name = "quick" if args.quick else "latest"
    path = out / f"{name}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    report.write(results, out, name)
    print(f"done in {results['seconds']}s; markdown: {out / (name + '.md')}")
    print(path)


if __name__ == "__main__":
    main()
