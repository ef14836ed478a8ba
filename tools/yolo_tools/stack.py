"""The local stack: a real Triton plus the gateway as a real HTTP server process.

    python -m yolo_tools.stack serve     # make serve: foreground until Ctrl-C
    python -m yolo_tools.stack demo      # make demo: start, detect on a fresh image, stop

Ports come from the environment: GATEWAY_PORT (8080), TRITON_HTTP_PORT (8000),
TRITON_GRPC_PORT (8001), TRITON_METRICS_PORT (8002).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from .local_triton import LocalTriton, TritonPorts, spawn, stop_on_signals

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REPOSITORY = REPO_ROOT / "model_repository" / "local"


class GatewayProcess:
    """`python -m yolo_gateway` as a child process, configured through YOLO_GATEWAY_* env."""

    def __init__(
        self,
        port: int,
        env: dict[str, str],
        log_path: str | Path | None = None,
        launcher: Sequence[str] = (),
        ca_file: str | Path | None = None,
    ) -> None:
        self.port = port
        self.env = env
        # With YOLO_GATEWAY_TLS_* in env: the CA that signed its certificate (url is then https)
        self.ca_file = str(ca_file) if ca_file else None
        self.launcher = list(launcher)  # a command prefix, e.g. one that joins a memory cgroup
        self.log_path = Path(log_path) if log_path else None
        self.process: subprocess.Popen[bytes] | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"{'https' if self.ca_file else 'http'}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0, wait_ready: bool = True) -> GatewayProcess:
        env = {**os.environ, **self.env, "YOLO_GATEWAY_PORT": str(self.port), "YOLO_GATEWAY_HOST": "127.0.0.1"}
        out = subprocess.DEVNULL
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
            out = self._log
        self.process = spawn(
            [*self.launcher, sys.executable, "-m", "yolo_gateway"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        self.wait("/readyz" if wait_ready else "/healthz", timeout)
        return self

    def wait(self, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with code {self.process.returncode}; log: {self.log_path}")
            try:
                context = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else None
                with urllib.request.urlopen(self.url + path, timeout=1, context=context) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"gateway {path} not 200 after {timeout:.0f}s; log: {self.log_path}")

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> int | None:
        proc, self.process = self.process, None
        code = None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait(5)
        if self._log:
            self._log.close()
            self._log = None
        return code

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalStack:
    """Triton on the model repository, then the gateway in front of it."""

    def __init__(
        self,
        model_repository: str | Path = DEFAULT_REPOSITORY,
        model_name: str = "yolo",
        gateway_port: int | None = None,
        triton_ports: TritonPorts | None = None,
        log_dir: str | Path | None = None,
        gateway_env: dict[str, str] | None = None,
    ) -> None:
        log_dir = Path(log_dir) if log_dir else None
        self.triton = LocalTriton(model_repository, triton_ports, log_path=log_dir / "triton.log" if log_dir else None)
        env = {"YOLO_GATEWAY_TRITON_URL": self.triton.grpc_target, "YOLO_GATEWAY_MODEL_NAME": model_name}
        self.gateway = GatewayProcess(
            gateway_port or int(os.environ.get("GATEWAY_PORT", 8080)),
            {**env, **(gateway_env or {})},
            log_path=log_dir / "gateway.log" if log_dir else None,
        )

    def start(self) -> LocalStack:
        try:  # a signal (SystemExit) or a failure at any point still stops what was started
            self.triton.start()
            self.gateway.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        try:
            self.gateway.stop()
        finally:
            self.triton.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _ports_from_env() -> TritonPorts:
    return TritonPorts(
        int(os.environ.get("TRITON_HTTP_PORT", 8000)),
        int(os.environ.get("TRITON_GRPC_PORT", 8001)),
        int(os.environ.get("TRITON_METRICS_PORT", 8002)),
    )


def serve(args: argparse.Namespace) -> None:
    stack = LocalStack(args.model_repository, args.model, triton_ports=_ports_from_env(), log_dir=args.log_dir)
    stop_on_signals()
    with stack:
        print(f"gateway: {stack.gateway.url}  (docs: {stack.gateway.url}/docs)", flush=True)
        print(f"triton:  grpc {stack.triton.grpc_target}, metrics {stack.triton.metrics_url}", flush=True)
        print(
            f"try:     curl -s -H 'content-type: image/jpeg' --data-binary @image.jpg {stack.gateway.url}/v1/detect",
            flush=True,
        )
        try:
            while stack.gateway.process and stack.gateway.process.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            print("\nstopping", flush=True)


def demo(args: argparse.Namespace) -> None:
    import cv2  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    from .synthetic import CLASS_NAMES, encode, make_scene  # noqa: PLC0415

    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    scene = make_scene(np.random.default_rng(args.seed), 1280, 720, max_objects=8, min_objects=4)
    jpeg = encode(scene)
    print("starting Triton (PyPI tritonserver, python backend + onnxruntime) and the gateway ...", flush=True)
    with LocalStack(args.model_repository, args.model, triton_ports=_ports_from_env(), log_dir=args.log_dir) as stack:
        req = urllib.request.Request(
            f"{stack.gateway.url}/v1/detect",
            data=jpeg,
            headers={"content-type": "image/jpeg", "x-request-id": "demo-1"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            result = json.loads(r.read())
    print(
        f"POST /v1/detect ({len(jpeg)} bytes, {scene.width}x{scene.height} JPEG) -> {len(result['detections'])} detections"
    )
    print(f"{'class':<10} {'conf':>5}  box (x1, y1, x2, y2) in image pixels")
    img = scene.image.copy()
    for d in result["detections"]:
        b = d["box"]
        print(
            f"{d['class_name']:<10} {d['confidence']:>5.2f}  ({b['x1']:.0f}, {b['y1']:.0f}, {b['x2']:.0f}, {b['y2']:.0f})"
        )
        p1, p2 = (round(b["x1"]), round(b["y1"])), (round(b["x2"]), round(b["y2"]))
        cv2.rectangle(img, p1, p2, (0, 255, 0), 2)
        cv2.putText(
            img,
            f"{d['class_name']} {d['confidence']:.2f}",
            (p1[0], max(12, p1[1] - 5)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.6,
            (0, 255, 0),
            2,
        )
    truth = ", ".join(CLASS_NAMES[c] for c in scene.classes)
    print(f"ground truth: {len(scene.classes)} shapes ({truth})")
    print(f"timings (ms): {result['timings_ms']}")
    cv2.imwrite(str(out), img)
    print(f"annotated image: {out}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["serve", "demo"])
    ap.add_argument("--model-repository", default=str(DEFAULT_REPOSITORY))
    ap.add_argument("--model", default="yolo")
    ap.add_argument("--log-dir", default=str(REPO_ROOT / ".cache" / "logs"))
    ap.add_argument("--output", default=str(REPO_ROOT / ".cache" / "demo" / "detections.png"))
    ap.add_argument("--seed", type=int, default=int(time.time()))
    args = ap.parse_args(argv)
    {"serve": serve, "demo": demo}[args.command](args)


if __name__ == "__main__":
    main()
