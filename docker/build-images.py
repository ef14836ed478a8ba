#!/usr/bin/env python3
"""Build the project's images with buildah, offline, from docker/*.Dockerfile (`make images`).

    python3 docker/build-images.py [--push|--no-push] [--verify|--no-verify] [IMAGE ...]

No pulls (the builds read only the local base image and wheelhouses):
  1. base      a bookworm rootfs from mmdebstrap (the host's Debian mirror) imported as
               localhost/yolo-operator/base-python:bookworm; cached by a hash of its recipe.
  2. wheels    per requirement set, built on the host (whose pip trusts the system CA bundle)
               into .cache/images/wheels/<set>-<hash>/; the builds install from there with
               --no-index (--build-arg WHEELS=...). The Dockerfiles default to PyPI elsewhere.
  3. build     buildah bud --layers, BASE_IMAGE = the local base; tags localhost/yolo-operator/<name>:dev.
  4. verify    the images run for real (buildah run, host network, loopback only, uid 1000): the
               operator image renders a YoloService's model config and init container; the
               model-fetcher runs that init container against local http, S3 and GCS stand-ins;
               triton-cpu serves the fetched model and model_repository/local; the gateway
               detects through it. Any failure fails the build. Skipped when nothing changed.
  5. export    an oci-archive per image: .cache/images/<name>.tar (skipped when the image is unchanged).
  6. push      when the local cluster runs (make cluster-up): the four images to its registry as
               localhost:15000/yolo-operator/<name>:dev-<hash of the four image IDs>, with its
               credentials, recorded (tag, ref@digest) in .cluster/registry/dev-images.json. The
               real node's containerd pulls them from there, as any node pulls from its registry
               (the pods' imagePullSecrets, the default pull policy); nothing is imported by hand.

Storage: overlay under .cache/images/storage (IMAGES_STORAGE_DRIVER=vfs to change it).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "images"
STORAGE_DRIVER = os.environ.get("IMAGES_STORAGE_DRIVER", "overlay")
STORAGE = Path(os.environ.get("IMAGES_STORAGE", CACHE / "storage"))
RUNROOT = Path(os.environ.get("IMAGES_RUNROOT", "/run/yolo-operator-images"))
POLICY = CACHE / "policy.json"
CLUSTER_STATE = Path(os.environ.get("YOLO_CLUSTER_DIR", ROOT / ".cluster"))  # k8s-tests/cluster/procs.py STATE
REGISTRY = "localhost:15000"  # the local cluster's registry (k8s-tests/cluster/registry.py REGISTRY; a test ties them)
DEV_IMAGES = CLUSTER_STATE / "registry" / "dev-images.json"
PREFIX = "localhost/yolo-operator"
TAG = os.environ.get("IMAGES_TAG", "dev")
BASE_REF = f"{PREFIX}/base-python:bookworm"
RECIPE_LABEL = "dev.yolo-operator.recipe"

# ------------------------------------------------------------------------------------- base recipe
# Everything that defines the base rootfs; its hash names the cached tarball and labels the image.
BASE_RECIPE = {
    "suite": "bookworm",
    "variant": "minbase",
    "include": ["python3", "python3-venv", "libpython3.11", "ca-certificates", "curl", "netbase"],
    "mirrors": [
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    ],
    "hooks": ["/usr/share/mmdebstrap/hooks/merged-usr"],
    "aptopt": ['Acquire::Check-Valid-Until "false"', 'APT::Install-Recommends "false"'],
    "dpkgopt": [
        "path-exclude=/usr/share/man/*",
        "path-exclude=/usr/share/info/*",
        "path-exclude=/usr/share/locale/*",
        "path-exclude=/usr/share/doc/*",
        "path-include=/usr/share/doc/*/copyright",
    ],
    "customize": ['rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*.log "$1"/var/log/apt/*'],
    "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"],
    "revision": 1,
}
if os.environ.get("DEBIAN_MIRROR"):  # e.g. a snapshot; part of the recipe, so of its hash
    BASE_RECIPE["mirrors"] = [
        m.replace("http://deb.debian.org", os.environ["DEBIAN_MIRROR"]) for m in BASE_RECIPE["mirrors"]
    ]


@dataclass
class WheelSet:
    name: str
    requirements: list[str]
    no_deps: list[str] = field(default_factory=list)  # downloaded as they are, without dependencies

    def key(self) -> str:
        text = json.dumps([sys.version_info[:2], "linux_x86_64", self.requirements, self.no_deps])
        return f"{self.name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


@dataclass
class Image:
    name: str
    dockerfile: str
    wheels: WheelSet

    @property
    def ref(self) -> str:
        return f"{PREFIX}/{self.name}:{TAG}"

    @property
    def archive(self) -> Path:
        return CACHE / f"{self.name}.tar"


def _pyproject_requirements(*extras: str) -> list[str]:
    sys.path.insert(0, str(ROOT / "docker"))
    from requirements import requirements  # docker/requirements.py, also used inside the builds

    return requirements(str(ROOT / "pyproject.toml"), list(extras))


def _requirements_file(path: str) -> list[str]:
    lines = (ROOT / path).read_text().splitlines()
    return [ln.split("#", 1)[0].strip() for ln in lines if ln.split("#", 1)[0].strip()]


BUILD_TOOLS = ["setuptools>=68"]  # the project's build backend, for `pip install --no-index .`


def images() -> list[Image]:
    return [
        Image(
            "operator",
            "docker/operator.Dockerfile",
            WheelSet("operator", _pyproject_requirements("operator") + BUILD_TOOLS),
        ),
        Image(
            "gateway",
            "docker/gateway.Dockerfile",
            WheelSet("gateway", _pyproject_requirements("gateway") + BUILD_TOOLS),
        ),
        Image(
            "model-fetcher",
            "docker/model-fetcher.Dockerfile",
            WheelSet("model-fetcher", _requirements_file("docker/model-fetcher/requirements.txt") + BUILD_TOOLS),
        ),
        Image(
            "triton-cpu",
            "docker/triton-cpu.Dockerfile",
            WheelSet(
                "triton-cpu", _requirements_file("docker/triton-cpu/requirements.txt"), ["nvidia-pytriton==0.7.0"]
            ),
        ),
    ]


# ------------------------------------------------------------------------------------- helpers


def log(msg: str) -> None:
    print(f"[images {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: list[str], *, capture: bool = False, check: bool = True, **kw) -> subprocess.CompletedProcess:
    if not capture:
        log("$ " + " ".join(cmd))
    return subprocess.run(cmd, check=check, text=True, capture_output=capture, **kw)


def buildah(*args: str, capture: bool = False, check: bool = True) -> subprocess.CompletedProcess:
    cmd = ["buildah", "--root", str(STORAGE), "--runroot", str(RUNROOT), "--storage-driver", STORAGE_DRIVER, *args]
    return run(cmd, capture=capture, check=check)


def ensure_tools(need_mmdebstrap: bool) -> None:
    missing = [
        p
        for p, b in (("buildah", "buildah"), ("mmdebstrap", "mmdebstrap"))
        if shutil.which(b) is None and (p != "mmdebstrap" or need_mmdebstrap)
    ]
    if missing:
        log(f"installing {' '.join(missing)} from the Debian mirror")
        run(["apt-get", "update", "-qq"])
        run(["apt-get", "install", "-y", "-qq", *missing], env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if not POLICY.exists():  # no /etc/containers/policy.json on this machine; nothing is pulled anyway
        POLICY.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))


def image_info(ref: str) -> dict | None:
    r = buildah("inspect", "--type", "image", ref, capture=True, check=False)
    return json.loads(r.stdout) if r.returncode == 0 else None


def image_id(ref: str) -> str:
    info = image_info(ref)
    if info is None:
        raise SystemExit(f"image {ref} missing after its build")
    return info["FromImageID"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stamp(path: Path, value: str | None = None) -> str | None:
    if value is None:
        return path.read_text().strip() if path.exists() else None
    path.write_text(value + "\n")
    return value


# ------------------------------------------------------------------------------------- 1. base


def build_base() -> None:
    digest = hashlib.sha256(json.dumps(BASE_RECIPE, sort_keys=True).encode()).hexdigest()[:16]
    info = image_info(BASE_REF)
    if info and (info.get("OCIv1", {}).get("config", {}).get("Labels") or {}).get(RECIPE_LABEL) == digest:
        log(f"base {BASE_REF} is current (recipe {digest})")
        return
    rootfs = CACHE / "base" / f"rootfs-{digest}.tar"
    if not rootfs.exists():
        ensure_tools(need_mmdebstrap=True)
        rootfs.parent.mkdir(parents=True, exist_ok=True)
        r = BASE_RECIPE
        tmp = rootfs.with_suffix(".partial")
        cmd = [
            "mmdebstrap",
            f"--variant={r['variant']}",
            "--format=tar",
            "--skip=output/dev",
            f"--include={','.join(r['include'])}",
        ]
        cmd += [f"--hook-dir={h}" for h in r["hooks"]]
        cmd += [f"--aptopt={o}" for o in r["aptopt"]] + [f"--dpkgopt={o}" for o in r["dpkgopt"]]
        cmd += [f"--customize-hook={c}" for c in r["customize"]]
        t0 = time.monotonic()
        run([*cmd, r["suite"], str(tmp), *r["mirrors"]])
        tmp.rename(rootfs)
        log(f"base rootfs {rootfs.name}: {rootfs.stat().st_size / 1e6:.0f} MB in {time.monotonic() - t0:.0f}s")
    ctr = buildah("from", "--signature-policy", str(POLICY), "scratch", capture=True).stdout.strip()
    try:
        buildah("add", ctr, str(rootfs), "/")
        cfg = ["config", "--cmd", "python3", "--label", f"{RECIPE_LABEL}={digest}"]
        cfg += ["--label", "org.opencontainers.image.title=yolo-operator base (Debian bookworm, python3)"]
        for e in BASE_RECIPE["env"]:
            cfg += ["--env", e]
        buildah(*cfg, ctr)
        buildah("commit", "--signature-policy", str(POLICY), "--rm", ctr, BASE_REF)
    except BaseException:
        buildah("rm", ctr, check=False)
        raise
    log(f"base {BASE_REF} imported (recipe {digest})")


# ------------------------------------------------------------------------------------- 2. wheels


def build_wheels(ws: WheelSet) -> Path:
    target = CACHE / "wheels" / ws.key()
    if (target / ".complete").exists():
        return target
    if sys.version_info[:2] != (3, 11):
        raise SystemExit(
            "the wheelhouses are built by the host's pip for the images' Python 3.11: run this with python3.11"
        )
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "requirements.txt").write_text("\n".join(ws.requirements) + "\n")
    pip = [sys.executable, "-m", "pip"]
    t0 = time.monotonic()
    run([*pip, "wheel", "-q", "--prefer-binary", "--wheel-dir", str(tmp), "-r", str(tmp / "requirements.txt")])
    if ws.no_deps:
        run([*pip, "download", "-q", "--no-deps", "--only-binary=:all:", "--dest", str(tmp), *ws.no_deps])
    (tmp / ".complete").write_text("")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    size = sum(p.stat().st_size for p in target.glob("*.whl"))
    log(
        f"wheelhouse {target.name}: {len(list(target.glob('*.whl')))} wheels, {size / 1e6:.0f} MB in {time.monotonic() - t0:.0f}s"
    )
    return target


# ------------------------------------------------------------------------------------- 3. build, 5. export


# What the builds read from the context (a superset of their COPY lines): when none of it changed,
# nor the base or the wheelhouse, the image is not even handed to buildah (seconds saved per image).
INPUTS = {
    "operator": ["operator", "modelprep"],
    "gateway": ["gateway"],
    "model-fetcher": ["modelprep"],
    "triton-cpu": ["model_repository/python_backend"],
}
COMMON_INPUTS = ["docker", ".dockerignore", "pyproject.toml", "README.md", "VERSION"]
SKIP_PARTS = {"__pycache__", "tests", "wheelhouse", ".pytest_cache", "build-images.py"}  # not read by the builds


def inputs_digest(img: Image, wheels: Path) -> str:
    h = hashlib.sha256(json.dumps([img.dockerfile, img.ref, wheels.name, image_id(BASE_REF)]).encode())
    for top in COMMON_INPUTS + INPUTS[img.name]:
        base = ROOT / top
        paths = (
            [base]
            if base.is_file()
            else sorted(p for p in base.rglob("*") if p.is_file() and not SKIP_PARTS & set(p.relative_to(ROOT).parts))
        )
        for p in paths:
            st = p.lstat()
            h.update(f"{p.relative_to(ROOT)}\0{st.st_mode:o}\0".encode())
            h.update(os.readlink(p).encode() if p.is_symlink() else p.read_bytes())
    return h.hexdigest()


def build_image(img: Image) -> str:
    wheels = build_wheels(img.wheels)
    digest = inputs_digest(img, wheels)
    inputs = CACHE / f"{img.name}.inputs"
    info = image_info(img.ref)
    if info and stamp(inputs) == f"{digest} {info['FromImageID']}":
        log(f"{img.ref} = {info['FromImageID'][:12]} (inputs unchanged)")
        return info["FromImageID"]
    t0 = time.monotonic()
    buildah(
        "bud", "--layers", "--pull-never", "--signature-policy", str(POLICY),
        "-f", img.dockerfile,
        "--build-arg", f"BASE_IMAGE={BASE_REF}",
        "--build-arg", f"WHEELS={wheels.relative_to(ROOT)}",
        "-t", img.ref,
        str(ROOT),
    )  # fmt: skip
    iid = image_id(img.ref)
    stamp(inputs, f"{digest} {iid}")
    log(f"{img.ref} = {iid[:12]} ({time.monotonic() - t0:.0f}s)")
    return iid


def prune_if_large() -> None:
    """--layers keeps every intermediate image, and a cached storage grows with each change. Drop
    the dangling ones (the layer cache of older builds) past IMAGES_PRUNE_GB (default 8) of storage,
    or when the disk has less than IMAGES_MIN_FREE_GB (default 12) free: a build writes its layers
    and its temporary blobs (/var/tmp) to a disk that CI machines sometimes have little of."""
    limit = float(os.environ.get("IMAGES_PRUNE_GB", "8"))
    min_free = float(os.environ.get("IMAGES_MIN_FREE_GB", "12"))
    used = int(run(["du", "-sb", str(STORAGE)], capture=True).stdout.split()[0]) / 1e9 if STORAGE.exists() else 0.0
    free = shutil.disk_usage(STORAGE if STORAGE.exists() else CACHE).free / 1e9
    if used > limit or free < min_free:
        log(f"storage {used:.1f} GB, {free:.1f} GB free on its disk: pruning dangling images (older builds' layers)")
        buildah("rmi", "--prune", capture=True, check=False)
        log(f"{shutil.disk_usage(CACHE).free / 1e9:.1f} GB free after pruning")


def export_image(img: Image, iid: str) -> None:
    idfile = img.archive.with_suffix(".tar.id")
    if img.archive.exists() and stamp(idfile) == iid:
        return
    tmp = img.archive.with_suffix(".tar.partial")
    tmp.unlink(missing_ok=True)
    buildah("push", "--signature-policy", str(POLICY), "--quiet", img.ref, f"oci-archive:{tmp}:{img.ref}")
    tmp.rename(img.archive)
    stamp(idfile, iid)
    log(f"{img.archive.relative_to(ROOT)}: {img.archive.stat().st_size / 1e6:.0f} MB")


# ------------------------------------------------------------------------------------- 6. push
# The local cluster's registry (k8s-tests/cluster/registry.py), as a node's registry: the real node's
# containerd pulls the images from it with the pods' imagePullSecrets, under their pull policies.


def registry_credentials() -> tuple[str, str] | None:
    """(user, password) of the running local cluster's registry, or None when no cluster runs."""
    f = CLUSTER_STATE / "registry" / "credentials.json"
    if not f.exists():
        return None
    c = json.loads(f.read_text())
    return c["username"], c["password"]


def dev_tag(ids: dict[str, str]) -> str:
    """One tag for the four images, from their image IDs: a rebuild gets a new tag, so a node that
    holds an older build pulls (IfNotPresent, the default for such a tag) and one that holds this
    build does not; the chart's images all follow one tag (_helpers.tpl projectImage)."""
    return TAG + "-" + hashlib.sha256(json.dumps(ids, sort_keys=True).encode()).hexdigest()[:12]


def _manifest_exists(ref_path: str, auth: tuple[str, str]) -> bool:
    req = urllib.request.Request(f"http://127.0.0.1:{REGISTRY.rsplit(':', 1)[1]}/v2/{ref_path}", method="HEAD")
    req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    accept = (
        "vnd.oci.image.manifest.v1+json",
        "vnd.docker.distribution.manifest.v2+json",
        "vnd.oci.image.index.v1+json",
    )
    req.add_header("Accept", ", ".join("application/" + a for a in accept))
    try:
        with urllib.request.urlopen(req, timeout=10):  # noqa: S310 - the local cluster's loopback registry
            return True
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        raise SystemExit(f"the local registry at {REGISTRY} answered {exc.code} for {ref_path}") from exc
    except OSError as exc:
        raise SystemExit(f"the local registry at {REGISTRY} does not answer ({exc}): is the cluster up?") from exc


def push_images(all_images: dict[str, Image], ids: dict[str, str]) -> None:
    """Push the four images (`ids`: name -> image ID) to REGISTRY/yolo-operator/<name>:<dev tag> and
    record them in DEV_IMAGES (the tag and each image's ref@digest), which the pod tests and demos read."""
    auth = registry_credentials()
    if auth is None:
        log(f"no local cluster registry ({CLUSTER_STATE / 'registry'}): not pushing (make cluster-up first)")
        return
    tag = dev_tag(ids)
    recorded = json.loads(DEV_IMAGES.read_text()) if DEV_IMAGES.exists() else {}
    there = [_manifest_exists(f"yolo-operator/{n}/manifests/{tag}", auth) for n in all_images]  # and it answers
    if recorded.get("tag") == tag and all(there):
        log(f"{REGISTRY}/yolo-operator/*:{tag} already pushed")
        return
    pushed: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        authfile = Path(tmp) / "auth.json"
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        authfile.write_text(json.dumps({"auths": {REGISTRY: {"auth": token}}}))
        os.chmod(authfile, 0o600)
        for name, img in all_images.items():
            dest = f"{REGISTRY}/yolo-operator/{name}:{tag}"
            digest_file = Path(tmp) / f"{name}.digest"
            buildah(
                "push", "--quiet", "--signature-policy", str(POLICY), "--tls-verify=false",
                "--authfile", str(authfile), "--digestfile", str(digest_file), img.ref, f"docker://{dest}",
            )  # fmt: skip
            pushed[name] = f"{dest}@{digest_file.read_text().strip()}"
            log(f"pushed {pushed[name]}")
    DEV_IMAGES.write_text(json.dumps({"registry": REGISTRY, "tag": tag, "images": pushed}, indent=1) + "\n")


# ------------------------------------------------------------------------------------- 4. verify
# Stand-ins for the three remote stores, on loopback. Each serves the bytes of one model file.


class _Store(http.server.BaseHTTPRequestHandler):
    blob: bytes = b""
    hits: list[str] = []

    def log_message(self, *a) -> None:  # quiet
        pass

    def _send(self, head_only: bool) -> None:
        path = urllib.parse.urlsplit(self.path).path
        ok = path in (
            "/models/yolo.onnx",
            "/bucket/models/yolo.onnx",
            "/download/storage/v1/b/bucket/o/models%2Fyolo.onnx",
        )
        self.hits.append(f"{self.command} {self.path} auth={self.headers.get('Authorization', '-')[:40]}")
        if not ok:
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
        md5 = hashlib.md5(self.blob).digest()
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", f'"{md5.hex()}"')
        self.send_header("Last-Modified", "Tue, 01 Dec 2026 00:00:00 GMT")
        self.send_header("x-goog-hash", f"md5={base64.b64encode(md5).decode()}")
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._send(False)

    def do_HEAD(self) -> None:
        self._send(True)

    def do_POST(self) -> None:  # an OAuth2 token endpoint, for a service-account key file
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.hits.append(f"POST {self.path}")
        body = json.dumps({"access_token": "smoke-token", "expires_in": 3600, "token_type": "Bearer"}).encode()
        self.send_response(200 if self.path == "/token" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def store(blob: bytes):
    handler = type("Store", (_Store,), {"blob": blob, "hits": []})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield srv.server_address[1], handler.hits
    finally:
        srv.shutdown()
        srv.server_close()


def brun(
    ref: str,
    cmd: list[str],
    *,
    env: dict[str, str] | None = None,
    volumes: list[str] = (),
    capture: bool = True,
    timeout: float = 300,
) -> str:
    """Run CMD in a fresh container of REF: host network, uid 1000, the image's own env."""
    ctr_id = buildah("from", "--pull-never", "--signature-policy", str(POLICY), ref, capture=True).stdout.strip()
    try:
        args = ["run", "--network", "host", "--user", "1000:1000"]
        for k, v in (env or {}).items():
            args += ["--env", f"{k}={v}"]
        for v in volumes:
            args += ["--volume", v]
        full = [
            "buildah",
            "--root",
            str(STORAGE),
            "--runroot",
            str(RUNROOT),
            "--storage-driver",
            STORAGE_DRIVER,
            *args,
            ctr_id,
            "--",
            *cmd,
        ]
        r = subprocess.run(full, text=True, capture_output=capture, timeout=timeout)
        if r.returncode != 0:
            raise SystemExit(f"FAILED in {ref}: {' '.join(cmd)}\n{r.stdout or ''}{r.stderr or ''}")
        return r.stdout or ""
    finally:
        buildah("rm", ctr_id, capture=True, check=False)


def _png(width: int, height: int) -> bytes:
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


def _http(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 10
) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _infer(base: str, model: str, image: bytes) -> tuple[list[int], bytes]:
    """One KServe v2 HTTP inference with a binary input and output: a [1,320,320,3] uint8 tensor."""
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
            "outputs": [{"name": "output0", "parameters": {"binary_data": True}}],
        }
    ).encode()
    req = urllib.request.Request(
        f"{base}/v2/models/{model}/infer",
        data=header + image,
        headers={"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            body, n = r.read(), int(r.headers.get("Inference-Header-Content-Length", 0))
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"FAILED: triton infer on {model}: {exc.code} {exc.read()[:300]!r}") from None
    meta = json.loads(body[:n])
    return meta["outputs"][0]["shape"], body[n:]


def _errors(log_path: Path) -> str:
    """The lines of a container log worth showing: errors, not Triton's tables."""
    lines = [
        ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip() and not ln.startswith(("|", "+"))
    ]
    bad = [ln for ln in lines if ln[:1] in "EF" or "rror" in ln or "Traceback" in ln]
    return "\n".join((bad or lines)[-40:])


def _wait(url: str, proc: subprocess.Popen, what: str, timeout: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"FAILED: {what} exited with {proc.returncode}; log: {log_path}\n{_errors(log_path)}")
        with contextlib.suppress(OSError):
            if _http(url, timeout=2)[0] == 200:
                return
        time.sleep(0.5)
    raise SystemExit(f"FAILED: {what} not ready after {timeout:.0f}s; log: {log_path}\n{_errors(log_path)}")


@contextlib.contextmanager
def background(
    ref: str, cmd: list[str], work: Path, name: str, env: dict[str, str] | None = None, volumes: list[str] = ()
):
    """A long-running container (host pid namespace, so its pid file names a host pid we can signal)."""
    ctr_id = buildah("from", "--pull-never", "--signature-policy", str(POLICY), ref, capture=True).stdout.strip()
    log_path = work / f"{name}.log"
    pidfile = f"/work/{name}.pid"
    args = ["buildah", "--root", str(STORAGE), "--runroot", str(RUNROOT), "--storage-driver", STORAGE_DRIVER]
    args += ["run", "--network", "host", "--pid", "host", "--user", "1000:1000", "--volume", f"{work}:/work"]
    for k, v in (env or {}).items():
        args += ["--env", f"{k}={v}"]
    for v in volumes:
        args += ["--volume", v]
    script = 'echo $$ > "$0"; exec "$@"'
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [*args, ctr_id, "--", "/bin/sh", "-c", script, pidfile, *cmd], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield proc, log_path
    finally:
        pid_path = work / f"{name}.pid"
        with contextlib.suppress(ValueError, OSError):
            os.kill(int(pid_path.read_text()), signal.SIGTERM)
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ValueError, OSError):
                os.kill(int(pid_path.read_text()), signal.SIGKILL)
            proc.wait(10)
        buildah("rm", ctr_id, capture=True, check=False)


RENDER = r"""
import json, sys
from yolo_operator import builders
from yolo_operator.spec import parse_spec
uri, name, image, secret = sys.argv[1:5]
source = {"uri": uri, **({"secretRef": {"name": secret}} if secret else {})}
spec = parse_spec({"model": {"name": name, "source": source},  # the file says the rest
                   "triton": {"image": image, "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}}})
init = builders.fetcher_container(spec)
plans = builders.build_model_configmap(spec, builders.Meta("smoke", "default"))["data"]
print(json.dumps({"plans": plans, "command": init["command"], "env": init["env"],
                  "triton_args": builders.build_triton_deployment(spec, builders.Meta("smoke", "default"))["spec"]["template"]["spec"]["containers"][0]["args"]}))
"""

GATEWAY_PROBE = r"""
import importlib.util, sys, yolo_gateway.app, cv2, simplejpeg, orjson, tritonclient.grpc, uvicorn, PIL
# the runtime only: no development tooling, no operator
for other in ("yolo_tools", "yolo_operator", "onnx", "pytriton"):
    assert importlib.util.find_spec(other) is None, f"the gateway image carries {other}"
print("gateway imports ok", cv2.__version__)
"""


def verify(imgs: dict[str, Image]) -> None:
    t0 = time.monotonic()
    op, gw, fetcher, triton = (imgs[n].ref for n in ("operator", "gateway", "model-fetcher", "triton-cpu"))
    onnx = (ROOT / "model_repository" / "local" / "yolo" / "1" / "model.onnx").read_bytes()
    work = CACHE / "verify"  # kept after a failure: the containers' logs are there
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    os.chmod(work, 0o777)
    if True:
        # The operator image: imports, CLI, and what it renders for a YoloService (config + init container).
        brun(op, ["python", "-m", "yolo_operator", "--help"])
        with store(onnx) as (port, hits):
            rendered = {
                scheme: json.loads(
                    brun(op, ["python", "-c", RENDER, uri, "yolo_" + scheme, triton, secret]).strip().splitlines()[-1]
                )
                for scheme, uri, secret in (
                    ("http", f"http://127.0.0.1:{port}/models/yolo.onnx", ""),
                    ("s3", "s3://bucket/models/yolo.onnx", "s3-credentials"),
                    ("gs", "gs://bucket/models/yolo.onnx", ""),
                    ("gskey", "gs://bucket/models/yolo.onnx", "gcs-key"),
                )
            }
            log("operator image: renders model configs and init containers")

            # The model-fetcher runs the operator's init-container command for each scheme.
            stand_in = {
                "http": {},
                "s3": {
                    "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                    "AWS_ACCESS_KEY_ID": "smoke",
                    "AWS_SECRET_ACCESS_KEY": "smoke-secret",
                    "AWS_REGION": "us-east-1",
                },
                "gs": {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}"},
                "gskey": {"GCS_ENDPOINT_URL": f"http://127.0.0.1:{port}"},
            }
            creds = work / "credentials"  # a service-account key whose token_uri is the stand-in
            creds.mkdir()
            pem = run(["openssl", "genrsa", "2048"], capture=True).stdout
            key = {
                "type": "service_account",
                "project_id": "smoke",
                "private_key_id": "1",
                "private_key": pem,
                "client_email": "smoke@smoke.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": f"http://127.0.0.1:{port}/token",
            }
            (creds / "key.json").write_text(json.dumps(key))
            os.chmod(creds / "key.json", 0o644)
            models = work / "models"
            for scheme, r in rendered.items():
                cfg = work / f"config-{scheme}"
                cfg.mkdir()
                for key, text in r["plans"].items():
                    (cfg / key).write_text(text)
                models.mkdir(exist_ok=True)
                os.chmod(models, 0o777)
                env = {e["name"]: e["value"] for e in r["env"]} | stand_in[scheme]
                if scheme == "gskey" and env.get("GOOGLE_APPLICATION_CREDENTIALS") != "/credentials/key.json":
                    raise SystemExit(f"FAILED: the operator's gs:// init container with a secretRef has env {env}")
                brun(
                    fetcher,
                    r["command"],
                    env=env,
                    volumes=[f"{models}:/models", f"{cfg}:/config:ro", f"{work}:/tmp", f"{creds}:/credentials:ro"],
                )
                got = models / f"yolo_{scheme}" / "1" / "model.onnx"
                if not got.exists() or got.read_bytes() != onnx:
                    raise SystemExit(
                        f"FAILED: the model-fetcher's {scheme} fetch did not write {got}; requests: {hits}"
                    )
                if 'name: "images"' not in (got.parent.parent / "config.pbtxt").read_text():
                    raise SystemExit(f"FAILED: yolo-model-prepare wrote no config for {got} in the model-fetcher image")
            # fetch-model itself, with a checksum, and its refusal of a wrong one.
            url = f"http://127.0.0.1:{port}/models/yolo.onnx"
            brun(
                fetcher,
                ["fetch-model", "--sha256", hashlib.sha256(onnx).hexdigest(), url, "/tmp/direct/model.onnx"],
                volumes=[f"{work}:/tmp"],
            )
            brun(
                fetcher,
                ["fetch-model", "s3://bucket/models/yolo.onnx", "/tmp/direct-s3/model.onnx"],
                env=stand_in["s3"],
                volumes=[f"{work}:/tmp"],
            )
            for got in (work / "direct" / "model.onnx", work / "direct-s3" / "model.onnx"):
                if got.read_bytes() != onnx:
                    raise SystemExit(f"FAILED: fetch-model wrote a different {got}")
            try:
                brun(
                    fetcher, ["fetch-model", "--sha256", "0" * 64, url, "/tmp/bad/model.onnx"], volumes=[f"{work}:/tmp"]
                )
            except SystemExit:
                pass
            else:
                raise SystemExit("FAILED: fetch-model accepted a wrong sha256")
            if not any("auth=AWS4-HMAC-SHA256 Credential=smoke/" in h for h in hits) or not any(
                "auth=Bearer " in h for h in hits
            ):
                raise SystemExit(f"FAILED: the s3 / gs key-file fetches did not authenticate: {hits}")
            log(
                f"model-fetcher image: http, s3 (AWS_ENDPOINT_URL, signed), gs (STORAGE_EMULATOR_HOST; key file + GCS_ENDPOINT_URL) ok ({len(hits)} requests)"
            )

        # triton-cpu: the operator's own args on the fetched repository, plus model_repository/local.
        http_port, grpc_port, metrics_port, gw_port = free_port(), free_port(), free_port(), free_port()
        args = [
            a
            for a in rendered["http"]["triton_args"]
            if not a.startswith(("--http-port", "--grpc-port", "--metrics-port"))
        ]
        args += [f"--http-port={http_port}", f"--grpc-port={grpc_port}", f"--metrics-port={metrics_port}"]
        args += [
            "--model-repository=/srv/repo/local",
            "--http-address=127.0.0.1",
            "--grpc-address=127.0.0.1",
            "--metrics-address=127.0.0.1",
        ]
        vols = [f"{models}:/models:ro", f"{ROOT / 'model_repository'}:/srv/repo:ro"]
        with background(triton, ["tritonserver", *args], work, "triton", volumes=vols) as (proc, tlog):
            base = f"http://127.0.0.1:{http_port}"
            _wait(f"{base}/v2/health/ready", proc, "tritonserver", 180, tlog)
            for model in ("yolo", "yolo_end2end", "yolo_http", "yolo_s3", "yolo_gs", "yolo_gskey"):
                status, body = _http(f"{base}/v2/models/{model}/ready")
                if status != 200:
                    raise SystemExit(
                        f"FAILED: triton model {model} not ready ({status} {body[:200]!r}):\n{tlog.read_text()[-3000:]}"
                    )
            for model in ("yolo", "yolo_http"):
                shape, data = _infer(base, model, bytes(range(256)) * 1200)
                if shape != [1, 7, 2100] or len(data) != 4 * 7 * 2100:
                    raise SystemExit(f"FAILED: triton infer on {model}: shape {shape}, {len(data)} bytes")
            log(
                "triton-cpu image: python backend (model_repository/local) and the onnxruntime platform (operator config) serve"
            )

            # gateway: the real server in its image, detecting through that Triton over gRPC.
            brun(gw, ["python", "-c", GATEWAY_PROBE])
            genv = {
                "YOLO_GATEWAY_TRITON_URL": f"127.0.0.1:{grpc_port}",
                "YOLO_GATEWAY_MODEL_NAME": "yolo_http",
                "YOLO_GATEWAY_HOST": "127.0.0.1",
                "YOLO_GATEWAY_PORT": str(gw_port),
            }
            with background(
                gw, ["python", "-m", "yolo_gateway"], work, "gateway", env=genv, volumes=[f"{work}:/tmp"]
            ) as (gproc, glog):
                _wait(f"http://127.0.0.1:{gw_port}/readyz", gproc, "gateway", 90, glog)
                status, body = _http(
                    f"http://127.0.0.1:{gw_port}/v1/detect", _png(480, 360), {"Content-Type": "image/png"}, 30
                )
                if status != 200 or "detections" not in json.loads(body):
                    raise SystemExit(f"FAILED: gateway /v1/detect: {status} {body[:300]!r}\n{glog.read_text()[-3000:]}")
                log(
                    f"gateway image: /v1/detect through triton-cpu answered 200 ({len(json.loads(body)['detections'])} detections)"
                )
    # The entrypoints and users the Deployments rely on.
    for img, entry in (
        (gw, ["python", "-m", "yolo_gateway"]),
        (op, ["python", "-m", "yolo_operator"]),
        (triton, ["tritonserver"]),
        (fetcher, ["fetch-model"]),
    ):
        cfg = image_info(img)["OCIv1"]["config"]
        if cfg.get("Entrypoint") != entry or cfg.get("User") != "1000:1000":
            raise SystemExit(f"FAILED: {img}: entrypoint {cfg.get('Entrypoint')} user {cfg.get('User')}")
    log(f"verified all images in {time.monotonic() - t0:.0f}s")


# ------------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="images to build (default: all)")
    ap.add_argument(
        "--push",
        dest="push",
        action="store_true",
        default=None,
        help="push to the local cluster's registry (default: when the cluster runs); fail if it cannot",
    )
    ap.add_argument("--no-push", dest="push", action="store_false")
    ap.add_argument(
        "--verify",
        dest="verify",
        action="store_true",
        default=None,
        help="run the smoke checks even if no image changed",
    )
    ap.add_argument("--no-verify", dest="verify", action="store_false")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("buildah here runs as root (overlay storage, buildah run): run as root")
    all_images = {i.name: i for i in images()}
    chosen = [all_images[n] for n in args.names] if args.names else list(all_images.values())
    CACHE.mkdir(parents=True, exist_ok=True)
    RUNROOT.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        t0 = time.monotonic()
        ensure_tools(need_mmdebstrap=False)
        prune_if_large()
        build_base()
        ids = {img.name: build_image(img) for img in chosen}
        prune_if_large()
        # Verify before exporting: a failed check leaves the last good archives in place.
        verified = CACHE / "verified"
        present = {n: info["FromImageID"] for n, i in all_images.items() if (info := image_info(i.ref))}
        key = json.dumps(present, sort_keys=True)
        if args.verify is False:
            log("not verifying (--no-verify)")
        elif len(present) < len(all_images):
            log("not verifying: the smoke checks need all four images")
        elif args.verify or stamp(verified) != key:
            verified.unlink(missing_ok=True)
            verify(all_images)
            stamp(verified, key)
        else:
            log("images unchanged since their last verification")
        for img in chosen:
            export_image(img, ids[img.name])
            log(f"{img.ref}  {img.archive.stat().st_size / 1e6:.0f} MB (oci-archive)")
        if args.push and registry_credentials() is None:
            raise SystemExit(f"--push: the local cluster's registry is not running ({CLUSTER_STATE / 'registry'})")
        if args.push is not False:
            if len(present) < len(all_images):
                log("not pushing: the cluster's images follow one tag, so all four must be built")
            else:
                push_images(all_images, present)
        log(f"done in {time.monotonic() - t0:.0f}s")


if __name__ == "__main__":
    main()
