"""Running the built images for real, for docker/tests: buildah run on the host network, loopback
only, as uid 1000 (the user every Deployment runs them as), from the storage `make images` wrote.

Also the stand-in for the three remote stores (an HTTP server on loopback that answers as a plain
HTTP server, S3 and GCS would for one model file) and the small HTTP helpers the checks use.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from yolo_tools.release import build_images_module, buildah  # the same storage flags `make images` builds with

ROOT = Path(__file__).resolve().parents[2]


def build_module() -> ModuleType:
    """docker/build-images.py as a module: the storage, the image list and where it keeps them."""
    return build_images_module()


# The platform whose images the checks run: the host's, or IMAGES_TEST_PLATFORM (linux/arm64 on an
# amd64 host runs them under qemu-user, as `make release` does for each platform before it pushes).
PLATFORM_ENV = "IMAGES_TEST_PLATFORM"


def platform() -> Any:
    """build-images.py's Platform under test."""
    b = build_module()
    name = os.environ.get(PLATFORM_ENV, "").strip()
    return b.parse_platforms(name)[0] if name else b.native_platform()


def slowdown() -> float:
    """How much longer than natively the checks may wait: emulated images run 10-100x slower
    (a python-backend inference: about 2 s under qemu against 20 ms natively)."""
    return 1.0 if platform().native else 5.0


def build_images() -> dict[str, str]:
    """`make images` for the platform under test without a push (cached: seconds when nothing
    changed); image name -> reference. A foreign platform's emulation is registered even when its
    build was cached, since its images are about to run."""
    b, plat = build_module(), platform()
    r = subprocess.run(
        [sys.executable, str(ROOT / "docker" / "build-images.py"), "--no-push", "--platform", plat.name],
        text=True,
        capture_output=True,
    )
    assert r.returncode == 0, f"make images failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    b.ensure_emulation(plat)
    return {img.name: img.ref_for(plat) for img in b.images()}


def image_config(ref: str) -> dict:
    info = build_module().image_info(ref)
    assert info is not None, f"{ref} is not in the image store"
    return dict(info["OCIv1"]["config"])


@contextlib.contextmanager
def _container(ref: str) -> Iterator[str]:
    b = build_module()
    new = subprocess.run(
        [*buildah(), "from", "--pull-never", "--signature-policy", str(b.POLICY), ref],
        text=True,
        capture_output=True,
    )
    assert new.returncode == 0, f"buildah from {ref}: {new.stderr[-2000:]}"
    ctr_id = new.stdout.strip()
    try:
        yield ctr_id
    finally:
        subprocess.run([*buildah(), "rm", ctr_id], capture_output=True)


def _run_args(env: dict[str, str] | None, volumes: list[str]) -> list[str]:
    args = ["run", "--network", "host", "--user", "1000:1000"]
    for k, v in (env or {}).items():
        args += ["--env", f"{k}={v}"]
    for v in volumes:
        args += ["--volume", v]
    return args


def run_in(
    ref: str, cmd: list[str], *, env: dict[str, str] | None = None, volumes: list[str] = (), timeout: float = 300
) -> subprocess.CompletedProcess:
    """CMD in a fresh container of REF (host network, uid 1000, the image's own env); its result."""
    with _container(ref) as ctr_id:
        full = [*buildah(), *_run_args(env, list(volumes)), ctr_id, "--", *cmd]
        return subprocess.run(full, text=True, capture_output=True, timeout=timeout * slowdown())


def check_in(ref: str, cmd: list[str], **kw) -> str:
    """run_in, which must exit 0; its stdout."""
    r = run_in(ref, cmd, **kw)
    assert r.returncode == 0, f"{ref}: {' '.join(cmd)} exited {r.returncode}\n{r.stdout[-3000:]}{r.stderr[-3000:]}"
    return r.stdout


@contextlib.contextmanager
def background(
    ref: str, cmd: list[str], work: Path, name: str, env: dict[str, str] | None = None, volumes: list[str] = ()
) -> Iterator[tuple[subprocess.Popen, Path]]:
    """A long-running container (host pid namespace, so its pid file names a host pid to signal)."""
    log_path = work / f"{name}.log"
    pid_path = work / f"{name}.pid"
    with _container(ref) as ctr_id:
        args = [*buildah(), *_run_args(env, [*volumes, f"{work}:/work"]), "--pid", "host"]
        script = 'echo $$ > "$0"; exec "$@"'
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(
                [*args, ctr_id, "--", "/bin/sh", "-c", script, f"/work/{name}.pid", *cmd],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            yield proc, log_path
        finally:
            with contextlib.suppress(ValueError, OSError):
                os.kill(int(pid_path.read_text()), signal.SIGTERM)
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ValueError, OSError):
                    os.kill(int(pid_path.read_text()), signal.SIGKILL)
                proc.wait(10)


def errors(log_path: Path) -> str:
    """The lines of a container log worth showing: errors, not Triton's tables."""
    lines = [
        ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip() and not ln.startswith(("|", "+"))
    ]
    bad = [ln for ln in lines if ln[:1] in "EF" or "rror" in ln or "Traceback" in ln]
    return "\n".join((bad or lines)[-40:])


def http_call(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 10
) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, headers=headers or {})  # noqa: S310 - loopback only
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(url: str, proc: subprocess.Popen, what: str, timeout: float, log_path: Path) -> None:
    """Until URL answers 200; a clear failure with the log's errors when the process ends or time runs out."""
    timeout *= slowdown()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{what} exited with {proc.returncode}; log: {log_path}\n{errors(log_path)}"
        with contextlib.suppress(OSError):
            if http_call(url, timeout=2)[0] == 200:
                return
        time.sleep(0.5)
    raise AssertionError(f"{what} not ready after {timeout:.0f}s; log: {log_path}\n{errors(log_path)}")


def infer_v2(base: str, model: str, image: bytes, output: str = "output0") -> tuple[list[int], bytes]:
    """One KServe v2 HTTP inference with a binary input and output: a [1,320,320,3] uint8 tensor in,
    OUTPUT's shape and bytes out."""
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "images",
                    "shape": [1, 320, 320, 3],
                    "datatype": "UINT8",
                    "parameters": {"binary_data_size": len(image)},
                }
            ],
            "outputs": [{"name": output, "parameters": {"binary_data": True}}],
        }
    ).encode()
    req = urllib.request.Request(  # noqa: S310 - loopback only
        f"{base}/v2/models/{model}/infer",
        data=header + image,
        headers={"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))},
    )
    try:
        with urllib.request.urlopen(req, timeout=60 * slowdown()) as r:  # noqa: S310
            body, n = r.read(), int(r.headers.get("Inference-Header-Content-Length", 0))
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"triton infer on {model}: {exc.code} {exc.read()[:300]!r}") from None
    meta = json.loads(body[:n])
    return meta["outputs"][0]["shape"], body[n:]


def png(width: int, height: int) -> bytes:
    """A small RGB PNG: a gradient with a filled square (stdlib only)."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)
        for x in range(width):
            inside = width // 4 <= x < 3 * width // 4 and height // 4 <= y < 3 * height // 4
            rows += bytes((230, 40, 40) if inside else (x * 255 // width, y * 255 // height, 128))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes((8, 2, 0, 0, 0))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(rows))) + chunk(b"IEND", b"")
    )


# ------------------------------------------------------------------------------------- the stores' stand-in
STORE_PATHS = (
    "/models/yolo.onnx",  # http
    "/bucket/models/yolo.onnx",  # s3, path style
    "/download/storage/v1/b/bucket/o/models%2Fyolo.onnx",  # gs, the JSON API's media download
)


class _Store(http.server.BaseHTTPRequestHandler):
    blob: bytes = b""
    hits: list[str] = []

    def log_message(self, *a: object) -> None:  # quiet
        pass

    def _send(self, head_only: bool) -> None:
        path = urllib.parse.urlsplit(self.path).path
        self.hits.append(f"{self.command} {self.path} auth={self.headers.get('Authorization', '-')[:40]}")
        if path not in STORE_PATHS:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body, status = self.blob, 200
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            a, _, b = rng[6:].partition("-")
            start, end = int(a or 0), int(b) if b else len(body) - 1
            body, status = body[start : end + 1], 206
        md5 = hashlib.md5(self.blob).digest()  # noqa: S324 - the ETag S3 and GCS give, not security
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", f'"{md5.hex()}"')
        self.send_header("Last-Modified", "Tue, 01 Dec 2026 00:00:00 GMT")
        self.send_header("x-goog-hash", f"md5={base64.b64encode(md5).decode()}")
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's names
        self._send(False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._send(True)

    def do_POST(self) -> None:  # noqa: N802 - an OAuth2 token endpoint, for a service-account key file
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.hits.append(f"POST {self.path}")
        body = json.dumps({"access_token": "smoke-token", "expires_in": 3600, "token_type": "Bearer"}).encode()
        self.send_response(200 if self.path == "/token" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def store(blob: bytes) -> Iterator[tuple[int, list[str]]]:
    """The stand-in on a free loopback port serving BLOB: (port, the requests it saw)."""
    handler = type("Store", (_Store,), {"blob": blob, "hits": []})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield srv.server_address[1], handler.hits
    finally:
        srv.shutdown()
        srv.server_close()
