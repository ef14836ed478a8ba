"""`make bench ONLY=peers`: this gateway against the front ends users choose instead, side by side.

One real Triton serves each model to every front end in turn; the same JPEGs (1080p synthetic
scenes), the same closed-loop concurrency sweep, the same cores:

- `gateway`: this project's gateway (one process, as a gateway pod runs it);
- `gateway_optimized`: the same gateway on the model as the operator serves it by default
  (`model.optimize`: uint8 NHWC in, NMS in the graph). Not the same work as the peers' (the NMS
  moves into Triton), so it is reported beside the target, not in it;
- `kserve`: KServe's ModelServer with a transformer Model (v1 protocol, base64 JSON) calling Triton
  over gRPC v2 (peer_apps/kserve_peer.py);
- `ray`: a Ray Serve deployment with a FastAPI ingress and an async Triton client (ray_peer.py);
- `ultralytics`: FastAPI around Ultralytics' `YOLO("grpc://…")` Triton client (ultralytics_peer.py).

KServe and Ray do the gateway's own decode, letterbox, NMS and JSON (peer_apps/work.py), so the
difference is the front end's; Ultralytics does its own. Every front end is served the model as
fp32 NCHW with the raw output (what Ultralytics' client sends), so the bytes to Triton are equal.

Per point: requests/s, p50/p95/p99, errors, and the front end's CPU (its whole process tree: Ray's
raylet, GCS and workers count) per request; "requests per front-end core" is requests per CPU
second of the front end (requests/s if it used one core fully). The peers run in the peers venv
(`.cache/peers-venv`, the `peers` extra; PEERS_PYTHON overrides); a peer whose package is missing
is reported as not installed, not measured.

Target (issue 23): the gateway's requests per front-end core >= 1.5x the best peer's, at a p99
equal or better than that peer's, at each concurrency.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from google.protobuf import text_format

from ..devrepo import read_config, write_variant
from ..local_triton import LocalTriton, TritonPorts, free_port
from .loadgen import LoadResult, http_sender, tree_cpu_seconds, triton_config, triton_split, triton_stats

if TYPE_CHECKING:  # pragma: no cover
    from .__main__ import Bench

ROOT = Path(__file__).resolve().parents[3]
PEERS_VENV = ROOT / ".cache" / "peers-venv"
PEERS = ("kserve", "ray", "ultralytics")
FRONT_ENDS = ("gateway", "gateway_optimized", *PEERS)
GATEWAYS = ("gateway", "gateway_optimized")
# the package each peer needs, as its import name
PACKAGES = {"kserve": "kserve", "ray": "ray.serve", "ultralytics": "ultralytics"}
CONCURRENCY = (1, 8, 32)
QUICK_CONCURRENCY = (1, 8)  # QUICK's 2 s windows see no request end at c=32 with YOLOv8n (2 s each)
TARGET = 1.5
START_TIMEOUT_S = 180.0


def peers_python() -> str:
    if env := os.environ.get("PEERS_PYTHON"):
        return env
    venv = PEERS_VENV / "bin" / "python"
    return str(venv) if venv.is_file() else sys.executable


def missing(python: str) -> dict[str, str]:
    """Peer -> why it cannot run in `python` (its package does not import), for each that cannot."""
    out = {}
    for peer, module in PACKAGES.items():
        r = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True, timeout=300)
        if r.returncode:
            last = (r.stderr.strip().splitlines() or ["no output"])[-1]
            out[peer] = f"not installed in {python} ({last}); make bench ONLY=peers makes {PEERS_VENV}"
    return out


def input_size(dims: list[int]) -> int:
    """A square image input's side: [H, W, 3] (uint8 NHWC) or [3, H, W] (fp32 NCHW)."""
    return dims[0] if dims[-1] == 3 else dims[-1]


def add_ultralytics_metadata(config: Path) -> None:
    """The `metadata` parameter Ultralytics' Triton guide adds to config.pbtxt: the export's
    metadata as a Python literal, which its client reads for class names and input size."""
    cfg = read_config(config)
    names = json.loads(cfg.parameters["class_names"].string_value)
    size = input_size([int(d) for d in cfg.input[0].dims])
    meta = {"task": "detect", "stride": 32, "imgsz": [size, size], "names": dict(enumerate(names)), "batch": 1}
    cfg.parameters["metadata"].string_value = repr(meta)
    config.write_text(text_format.MessageToString(cfg))


def build_repo(bench: Bench, production: bool) -> tuple[Path, dict[str, dict[str, Any]]]:
    """The models, fp32 NCHW with the raw output: the bundled detector's fp32 variant and, unless
    `production` is off, the trained YOLOv8n prepared as the operator's init container does. Each
    with its `optimized` variant (model.optimize, the operator's default on CPUs) for the
    gateway_optimized row."""
    repo = bench.work / "peers-repo"
    repo.mkdir()
    write_variant(repo, "bundled_fp32", input_layout="fp32-nchw")
    models = {"bundled_fp32": {"label": "bundled 320/3", "optimized": "bundled_opt"}}
    only = ["bundled_opt"]
    if production:
        from .__main__ import PROD_LABEL  # noqa: PLC0415

        only += ["v8n", "v8n_opt"]
        models["v8n"] = {"label": PROD_LABEL, "optimized": "v8n_opt"}
    bench.add_production_models(repo, only=tuple(only))
    return repo, models


def describe(triton: LocalTriton, model: str) -> dict[str, Any]:
    cfg = triton_config(triton.http_url, model)
    (inp,) = cfg["input"]
    names = json.loads(cfg["parameters"]["class_names"]["string_value"])
    return {
        "size": input_size([int(d) for d in inp["dims"]]),
        "input_name": inp["name"],
        "output_name": cfg["output"][0]["name"],
        "names": names,
    }


def request_for(kind: str, model: str, jpeg: bytes) -> tuple[str, bytes, dict[str, str]]:
    """(path, body, headers) of one detection request, as a front end's clients send it: KServe's
    v1 protocol with the image as base64 JSON (its transformer examples), the others the JPEG."""
    if kind == "kserve":
        body = {"instances": [{"image": {"b64": base64.b64encode(jpeg).decode()}}]}
        return f"/v1/models/{model}:predict", json.dumps(body).encode(), {"content-type": "application/json"}
    return "/v1/detect", jpeg, {"content-type": "image/jpeg"}


def detections_of(kind: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    return body["predictions"][0] if kind == "kserve" else body["detections"]


class FrontEnd:
    """One front end as a process group of its own, serving one model on 127.0.0.1."""

    def __init__(self, kind: str, python: str, triton: LocalTriton, model: str, info: dict, log: Path) -> None:
        self.kind, self.model, self.info, self.triton = kind, model, info, triton
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        work = [
            f"--triton-model={model}",
            f"--size={info['size']}",
            f"--input-name={info['input_name']}",
            f"--output-name={info['output_name']}",
            f"--names={json.dumps(info['names'])}",
        ]
        env = {**os.environ, "YOLO_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
        if kind in GATEWAYS:
            cmd = [sys.executable, "-m", "yolo_gateway"]
            env |= {
                "YOLO_GATEWAY_TRITON_URL": triton.grpc_target,
                "YOLO_GATEWAY_MODEL_NAME": model,
                "YOLO_GATEWAY_LOG_LEVEL": "warning",
                "YOLO_GATEWAY_MAX_CONCURRENCY": "4096",
                "YOLO_GATEWAY_PORT": str(self.port),
                "YOLO_GATEWAY_HOST": "127.0.0.1",
            }
        elif kind == "kserve":
            cmd = [
                python,
                "-m",
                "yolo_tools.peer_apps.kserve_peer",
                f"--model_name={model}",
                f"--predictor_host={triton.grpc_target}",
                "--predictor_protocol=grpc-v2",
                f"--http_port={self.port}",
                f"--grpc_port={free_port()}",
                "--enable_grpc=false",
                *work,
            ]
        else:
            cmd = [
                python,
                "-m",
                f"yolo_tools.peer_apps.{kind}_peer",
                f"--port={self.port}",
                f"--triton={triton.grpc_target}",
                *work,
            ]
        self.log = log
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def request(self, jpeg: bytes) -> tuple[str, bytes, dict[str, str]]:
        return request_for(self.kind, self.model, jpeg)

    def wait(self, jpeg: bytes) -> list[dict[str, Any]]:
        """Until one detection request answers 200 (the front end serves end to end); its detections."""
        path, body, headers = self.request(jpeg)
        deadline = time.monotonic() + START_TIMEOUT_S
        last = ""
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with code {self.process.returncode}; log: {self.log}")
            try:
                r = post(self.url + path, body, headers)
                if r[0] == 200:
                    return detections_of(self.kind, json.loads(r[1]))
                last = f"HTTP {r[0]}: {r[1][:200]!r}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.5)
        raise RuntimeError(f"{self.kind} did not serve within {START_TIMEOUT_S:.0f} s ({last}); log: {self.log}")

    def sender(self, jpegs: list[bytes]) -> Any:
        return http_sender(self.url, [self.request(j) for j in jpegs])

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        except ProcessLookupError:
            pass
        kill_group(self.process.pid)
        self._log.close()


def kill_group(pgid: int) -> None:
    """Whatever of the group outlived its leader (Ray's raylet and workers): killed."""
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@contextmanager
def front_end(*args: Any) -> Iterator[FrontEnd]:
    fe = FrontEnd(*args)
    try:
        yield fe
    finally:
        fe.stop()


def run(bench: Bench, production: bool = True) -> dict[str, Any]:
    python = peers_python()
    absent = missing(python)
    for peer, why in absent.items():
        print(f"peers: {peer} is {why}", flush=True)
    repo, models = build_repo(bench, production)
    for name in models:
        add_ultralytics_metadata(repo / name / "config.pbtxt")
    sweep = QUICK_CONCURRENCY if bench.quick else CONCURRENCY
    rows: list[dict[str, Any]] = []
    agreement: dict[str, dict[str, int]] = {}
    triton = LocalTriton(repo, TritonPorts.free(), log_path=bench.work / "peers-triton.log").start(timeout=300)
    try:
        for model, m in models.items():
            info = describe(triton, model)
            agreement[model] = {}
            print(f"peers, {m['label']} ({model}): concurrency {list(sweep)}", flush=True)
            for kind in FRONT_ENDS:
                if kind in absent:
                    rows.append({"front_end": kind, "model": model, "label": m["label"], "installed": False})
                    continue
                log = bench.work / f"peers-{kind}-{model}.log"
                served = m["optimized"] if kind == "gateway_optimized" else model
                with front_end(kind, python, triton, served, info, log) as fe:
                    found = fe.wait(bench.jpegs[0])
                    agreement[model][kind] = len(found)
                    for c in sweep:
                        rows.append(measure(bench, fe, model, m["label"], c))
    finally:
        triton.stop()
    return {"rows": rows, "detections_on_first_image": agreement, "missing": absent, "concurrency": list(sweep)}


def measure(bench: Bench, fe: FrontEnd, model: str, label: str, concurrency: int) -> dict[str, Any]:
    """One point; the row is `model`'s (the model the peers are served), the Triton counts those of
    the model `fe` calls (its optimized variant, for gateway_optimized)."""
    before = triton_stats(fe.triton.http_url, fe.model)
    cpu0 = fe.cpu_seconds()
    result: LoadResult = bench.loop(fe.sender(bench.jpegs), concurrency)
    cpu1 = fe.cpu_seconds()
    after = triton_stats(fe.triton.http_url, fe.model)
    split = triton_split(before, after)
    total = split["inferences"] or result.requests  # every request of the loop, warm-up included
    cpu = cpu1 - cpu0
    row = {
        "front_end": fe.kind,
        "model": model,
        "label": label,
        "installed": True,
        **result.to_dict(),
        "triton": split,
        "cpu_ms_per_request": round(cpu * 1e3 / max(1, total), 3),
        "requests_per_core": round(total / cpu, 1) if cpu > 0 else None,
    }
    print(
        f"  {fe.kind:<12} c={concurrency:<3} {result.completed_rps:7.1f} rps  p50 {result.p50_ms:7.1f}  p95 {result.p95_ms:7.1f}"
        f"  p99 {result.p99_ms:7.1f} ms  errors {sum(result.errors.values())}  cpu {row['cpu_ms_per_request']:.2f} ms/req"
        f"  {row['requests_per_core']} req/core-s",
        flush=True,
    )
    return row


def targets(result: dict[str, Any], ours_kind: str = "gateway") -> list[dict[str, Any]]:
    """Per model and concurrency: the gateway's requests per front-end core over the best peer's
    (the peer with the most requests per core), and whether the gateway's p99 is equal or better.
    `ours_kind="gateway_optimized"`: the same for the gateway as served by default (not the
    target: its work differs)."""
    by = {(r["front_end"], r["model"], r["concurrency"]): r for r in result["rows"] if r.get("installed")}
    out = []
    for model in dict.fromkeys(r["model"] for r in result["rows"]):
        for c in result["concurrency"]:
            ours = by.get((ours_kind, model, c))
            peers = [by[p, model, c] for p in PEERS if (p, model, c) in by and by[p, model, c]["requests_per_core"]]
            if ours is None or not ours["requests_per_core"] or not ours["requests"] or not peers:
                continue
            peers = [p for p in peers if p["requests"]]  # no request ended in a window: no latency to compare
            if not peers:
                continue
            best = max(peers, key=lambda r: r["requests_per_core"])
            ratio = ours["requests_per_core"] / best["requests_per_core"]
            p99_ok = ours["p99_ms"] <= best["p99_ms"]
            out.append(
                {
                    "model": model,
                    "label": ours["label"],
                    "concurrency": c,
                    "best_peer": best["front_end"],
                    "ratio": round(ratio, 2),
                    "p99_ms": {"gateway": ours["p99_ms"], best["front_end"]: best["p99_ms"]},
                    "p99_equal_or_better": p99_ok,
                    "met": ratio >= TARGET and p99_ok,
                }
            )
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "## Peers: the gateway against KServe, Ray Serve and Ultralytics (1080p JPEGs)",
        "",
        "One real Triton (CPU, python-backend ONNX stand-in), each front end in turn on the same model,",
        "JPEGs and closed-loop concurrency, side by side in one run (`make bench ONLY=peers`). CPU is the",
        "front end's whole process tree; requests per core = requests per CPU-second of the front end.",
        "KServe and Ray Serve run the gateway's own decode, letterbox, NMS and JSON; Ultralytics its own.",
        "",
        "| model | front end | concurrency | requests/s | p50 ms | p95 ms | p99 ms | errors | CPU ms/request | requests per core |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        if not r.get("installed"):
            continue
        lines.append(
            f"| {r['label']} | {r['front_end']} | {r['concurrency']} | {r['completed_rps']:.1f} | {r['p50_ms']:.1f} |"
            f" {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {sum(r['errors'].values())} | {r['cpu_ms_per_request']:.2f} |"
            f" {r['requests_per_core']} |"
        )
    for peer, why in result["missing"].items():
        lines.append(f"\n{peer}: {why}")
    agree = result["detections_on_first_image"]
    lines += ["", "Detections on the first image, per front end (the same work gives the same count):", ""]
    lines += [f"- {model}: " + ", ".join(f"{k} {v}" for k, v in counts.items()) for model, counts in agree.items()]
    lines += [
        "",
        f"| model | concurrency | best peer | gateway requests per core / best peer's (target >= {TARGET}) | p99 gateway / peer ms | met |",
        "|---|---|---|---|---|---|",
    ]
    for t in targets(result):
        p99 = " / ".join(f"{v:.1f}" for v in t["p99_ms"].values())
        lines.append(
            f"| {t['label']} | {t['concurrency']} | {t['best_peer']} | {t['ratio']} | {p99} | {'yes' if t['met'] else 'no'} |"
        )
    default = targets(result, "gateway_optimized")
    if default:
        lines += [
            "",
            "The gateway as the operator serves a plain export by default (`model.optimize`: uint8 NHWC in, NMS",
            "in the graph, so Triton does the NMS): not the peers' work, so beside the target, not in it.",
            "",
            "| model | concurrency | best peer | gateway_optimized requests per core / best peer's | p99 gateway_optimized / peer ms |",
            "|---|---|---|---|---|",
        ]
        for t in default:
            p99 = " / ".join(f"{v:.1f}" for v in t["p99_ms"].values())
            lines.append(f"| {t['label']} | {t['concurrency']} | {t['best_peer']} | {t['ratio']} | {p99} |")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    rows = [r for r in result["rows"] if r.get("installed")]
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(len(models), 2, figsize=(11, 4 * len(models)), squeeze=False)
    for i, model in enumerate(models):
        for kind in FRONT_ENDS:
            mine = [r for r in rows if r["model"] == model and r["front_end"] == kind]
            if not mine:
                continue
            xs = [r["concurrency"] for r in mine]
            axes[i][0].plot(xs, [r["requests_per_core"] or 0 for r in mine], marker="o", label=kind)
            axes[i][1].plot(xs, [r["p99_ms"] for r in mine], marker="o", label=kind)
        label = next(r["label"] for r in rows if r["model"] == model)
        axes[i][0].set(title=f"{label}: requests per front-end core", xlabel="concurrency", xscale="log")
        axes[i][1].set(title=f"{label}: p99 latency (ms)", xlabel="concurrency", xscale="log", yscale="log")
        axes[i][0].legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
