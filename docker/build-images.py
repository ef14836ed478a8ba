#!/usr/bin/env python3
"""Build the project's images with buildah, offline, from docker/*.Dockerfile (`make images`).

    python3 docker/build-images.py [--push|--no-push] [--platform linux/amd64,linux/arm64] [IMAGE ...]

No pulls (the builds read only the local base image and wheelhouses):
  1. base      a bookworm rootfs from mmdebstrap (the host's Debian mirror) imported as
               localhost/yolo-operator/base-python:bookworm; cached by a hash of its recipe.
  2. wheels    per requirement set, built on the host (whose pip trusts the system CA bundle)
               into .cache/images/wheels/<set>-<hash>/; the builds install from there with
               --no-index (--build-arg WHEELS=...). The Dockerfiles default to PyPI elsewhere.
  3. build     buildah bud --layers, BASE_IMAGE = the local base; tags localhost/yolo-operator/<name>:dev.
  4. (checks)  that the images run for real is tested, not checked here: docker/tests/test_images.py
               (pods tier) runs them with buildah run and fails on what this script used to refuse.
  5. export    an oci-archive per image: .cache/images/<name>.tar (skipped when the image is unchanged).
  6. push      when the local cluster runs (make cluster-up): the four images to its registry as
               localhost:15000/yolo-operator/<name>:dev-<hash of the four image IDs>, with its
               credentials, recorded (tag, ref@digest) in .cluster/registry/dev-images.json. The
               real node's containerd pulls them from there, as any node pulls from its registry
               (the pods' imagePullSecrets, the default pull policy); nothing is imported by hand.

Platforms: the host's by default. Another (--platform linux/arm64 on an amd64 host) is built the same
way under qemu-user (registered with binfmt_misc; Debian trixie's qemu 10 when the host has none
or one older than 8.2, which crashes onnxruntime: ensure_emulation): its own base
(mmdebstrap --architectures), a wheelhouse of that platform's wheels (pip download --platform, binary
only), `buildah bud --platform`, tagged <name>:<tag>-<arch>. It is neither exported nor pushed to the
cluster (no node here runs it); `make release` pushes it in a multi-platform index with the host's.

Storage: overlay under .cache/images/storage (IMAGES_STORAGE_DRIVER=vfs to change it).
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
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

# ------------------------------------------------------------------------------------- platforms


@dataclass(frozen=True)
class Platform:
    arch: str  # OCI's and Debian's name: amd64, arm64
    machine: str  # the kernel's and pip's: x86_64, aarch64

    @property
    def name(self) -> str:
        return f"linux/{self.arch}"

    @property
    def native(self) -> bool:
        return self.machine == os.uname().machine

    @property
    def suffix(self) -> str:
        """Appended to a foreign platform's tags (the host's keep theirs): yolo_tools.release.local_ref."""
        return "" if self.native else f"-{self.arch}"

    def pip_platforms(self) -> list[str]:
        """The wheel tags the images' glibc (bookworm: 2.36) takes, for `pip download --platform`."""
        return [f"manylinux_2_{v}_{self.machine}" for v in range(36, 16, -1)] + [f"manylinux2014_{self.machine}"]


PLATFORMS = {p.name: p for p in (Platform("amd64", "x86_64"), Platform("arm64", "aarch64"))}


def native_platform() -> Platform:
    for p in PLATFORMS.values():
        if p.native:
            return p
    raise SystemExit(f"no image platform for this host's {os.uname().machine}: {', '.join(PLATFORMS)}")


def parse_platforms(text: str) -> list[Platform]:
    """'linux/amd64,linux/arm64' (or 'amd64,arm64') -> platforms, the host's first when present."""
    out: list[Platform] = []
    for part in filter(None, (t.strip() for t in text.split(","))):
        key = part if "/" in part else f"linux/{part}"
        if key not in PLATFORMS:
            raise SystemExit(f"unknown platform {part!r}: these are built here: {', '.join(PLATFORMS)}")
        if PLATFORMS[key] not in out:
            out.append(PLATFORMS[key])
    if not out:
        raise SystemExit("--platform: no platform given")
    return sorted(out, key=lambda p: not p.native)


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

    def key(self, platform: Platform) -> str:
        text = json.dumps([sys.version_info[:2], f"linux_{platform.machine}", self.requirements, self.no_deps])
        return f"{self.name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


@dataclass
class Image:
    name: str
    dockerfile: str
    wheels: WheelSet

    @property
    def ref(self) -> str:
        """The host platform's image."""
        return f"{PREFIX}/{self.name}:{TAG}"

    def ref_for(self, platform: Platform) -> str:
        return self.ref + platform.suffix

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


# qemu before 8.2 (bookworm has 7.2) hands aarch64 programs the host's x86 /proc/cpuinfo, and
# onnxruntime's cpuinfo then segfaults on import: the arm64 triton-cpu image could be built but not
# run. Emulation therefore uses qemu from Debian trixie (10.0), which shows an ARM /proc/cpuinfo.
QEMU_SUITE = "trixie"
QEMU_MIN = (8, 2)


def qemu_version(path: str) -> tuple[int, int] | None:
    """The version a qemu-user binary reports, or None when it does not run or say."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for word in out.split()[:4]:
        parts = word.split(".")
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            return int(parts[0]), int(parts[1])
    return None


def binfmt_line(conf: str, interpreter: Path) -> str:
    """A qemu binfmt.d line (`:name:type:offset:magic:mask:interpreter:flags`) with its interpreter
    replaced, and the F flag (the kernel opens the interpreter once, so containers need no copy)."""
    fields = conf.strip().split(":")
    if len(fields) != 8 or fields[0]:
        raise ValueError(f"not a binfmt_misc line: {conf.strip()[:80]!r}")
    fields[6] = str(interpreter)
    fields[7] = "".join(sorted(set(fields[7] + "F")))
    return ":".join(fields)


def fetch_qemu(machine: str) -> tuple[Path, str]:
    """qemu-<machine> from Debian trixie's qemu-user package and its binfmt_misc line, kept under
    .cache/images/qemu. apt fetches the package with a private state directory, so the host's
    sources are untouched and its keyring checks the release's signature."""
    qemu_dir = CACHE / "qemu"
    binary, conf = qemu_dir / f"qemu-{machine}", qemu_dir / f"qemu-{machine}.conf"
    if binary.exists() and conf.exists():
        return binary, conf.read_text().strip()
    state = qemu_dir / "apt"
    shutil.rmtree(state, ignore_errors=True)
    for d in ("lists/partial", "cache/archives/partial"):
        (state / d).mkdir(parents=True)
    mirror = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org")
    (state / "sources.list").write_text(f"deb {mirror}/debian {QEMU_SUITE} main\n")
    opts = [
        f"-oDir::Etc::SourceList={state / 'sources.list'}",
        "-oDir::Etc::SourceParts=/nonexistent",
        f"-oDir::State::Lists={state / 'lists'}",
        f"-oDir::Cache={state / 'cache'}",
        "-oDir::State::Status=/dev/null",
        "-oAPT::Sandbox::User=root",
        "-oDebug::NoLocking=1",
    ]
    log(f"fetching qemu-user from Debian {QEMU_SUITE}, to run {machine} binaries")
    run(["apt-get", "-qq", *opts, "update"])
    run(["apt-get", "-qq", *opts, "download", "qemu-user"], cwd=state)
    (deb,) = state.glob("qemu-user_*.deb")
    run(["dpkg-deb", "-x", str(deb), str(state / "root")])
    line = (state / "root" / "usr/share/qemu/binfmt.d" / f"qemu-{machine}.conf").read_text()
    shutil.copy2(state / "root" / "usr/bin" / f"qemu-{machine}", binary)
    conf.write_text(binfmt_line(line, binary) + "\n")
    shutil.rmtree(state)
    return binary, conf.read_text().strip()


def ensure_emulation(platform: Platform) -> None:
    """A foreign platform's binaries (its base's maintainer scripts, its builds' RUN steps, its
    images under test) run under qemu-user through binfmt_misc. A registration that runs qemu
    8.2 or newer is used as it is; otherwise qemu from Debian trixie is fetched and registered
    in its place, with the F flag so that it works inside the containers."""
    if platform.native:
        return
    register = Path("/proc/sys/fs/binfmt_misc/register")
    if not register.exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc"], check=False)
    entry = Path(f"/proc/sys/fs/binfmt_misc/qemu-{platform.machine}")
    try:
        if entry.exists():
            text = entry.read_text()
            interpreter = next((ln.split(None, 1)[1] for ln in text.splitlines() if ln.startswith("interpreter ")), "")
            found = qemu_version(os.path.realpath(interpreter)) if interpreter else None
            if text.startswith("enabled") and found and found >= QEMU_MIN:
                return
            log(
                f"qemu-{platform.machine} registered with binfmt_misc is {'.'.join(map(str, found or ())) or 'unknown'}"
                f" ({interpreter}); replacing it with Debian {QEMU_SUITE}'s: older qemu shows {platform.machine}"
                " programs the host's /proc/cpuinfo, and onnxruntime segfaults on import"
            )
            entry.write_text("-1")
        _, line = fetch_qemu(platform.machine)
        register.write_text(line)
    except OSError as exc:
        raise SystemExit(
            f"cannot register qemu-{platform.machine} with binfmt_misc ({exc}): building for {platform.name} "
            "needs it (a privileged host, or `docker run --privileged tonistiigi/binfmt --install all` once)"
        ) from exc
    log(f"qemu-{platform.machine} registered with binfmt_misc")


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


def stamp(path: Path, value: str | None = None) -> str | None:
    if value is None:
        return path.read_text().strip() if path.exists() else None
    path.write_text(value + "\n")
    return value


# ------------------------------------------------------------------------------------- 1. base


def base_ref(platform: Platform) -> str:
    return BASE_REF + platform.suffix


def build_base(platform: Platform) -> None:
    recipe = BASE_RECIPE if platform.native else {**BASE_RECIPE, "architecture": platform.arch}
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    ref = base_ref(platform)
    info = image_info(ref)
    if info and (info.get("OCIv1", {}).get("config", {}).get("Labels") or {}).get(RECIPE_LABEL) == digest:
        log(f"base {ref} is current (recipe {digest})")
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
        if not platform.native:  # its maintainer scripts run under qemu (ensure_emulation checked it; no arch-test)
            cmd += [f"--architectures={platform.arch}", "--skip=check/qemu"]
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
        cfg += ["--os", "linux", "--arch", platform.arch]
        cfg += ["--label", "org.opencontainers.image.title=yolo-operator base (Debian bookworm, python3)"]
        for e in BASE_RECIPE["env"]:
            cfg += ["--env", e]
        buildah(*cfg, ctr)
        buildah("commit", "--signature-policy", str(POLICY), "--rm", ctr, ref)
    except BaseException:
        buildah("rm", ctr, check=False)
        raise
    log(f"base {ref} imported (recipe {digest})")


# ------------------------------------------------------------------------------------- 2. wheels


def build_wheels(ws: WheelSet, platform: Platform) -> Path:
    """The host's wheelhouse is built by its pip (sdists too); a foreign platform's is downloaded,
    wheels only (each requirement here publishes them for arm64)."""
    target = CACHE / "wheels" / ws.key(platform)
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
    if platform.native:
        run([*pip, "wheel", "-q", "--prefer-binary", "--wheel-dir", str(tmp), "-r", str(tmp / "requirements.txt")])
        target_args: list[str] = []
    else:
        target_args = [a for p in platform.pip_platforms() for a in ("--platform", p)]
        target_args += ["--python-version", "3.11", "--implementation", "cp"]
        download = [*pip, "download", "-q", "--only-binary=:all:", *target_args, "--dest", str(tmp)]
        run([*download, "-r", str(tmp / "requirements.txt")])
    if ws.no_deps:
        run([*pip, "download", "-q", "--no-deps", "--only-binary=:all:", *target_args, "--dest", str(tmp), *ws.no_deps])
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


def inputs_digest(img: Image, wheels: Path, platform: Platform) -> str:
    ref = img.ref_for(platform)
    h = hashlib.sha256(json.dumps([img.dockerfile, ref, wheels.name, image_id(base_ref(platform))]).encode())
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


def build_image(img: Image, platform: Platform) -> str:
    wheels = build_wheels(img.wheels, platform)
    digest = inputs_digest(img, wheels, platform)
    ref = img.ref_for(platform)
    inputs = CACHE / f"{img.name}{platform.suffix}.inputs"
    info = image_info(ref)
    if info and stamp(inputs) == f"{digest} {info['FromImageID']}":
        log(f"{ref} = {info['FromImageID'][:12]} (inputs unchanged)")
        return info["FromImageID"]
    t0 = time.monotonic()
    foreign = [] if platform.native else ["--platform", platform.name]
    buildah(
        "bud", "--layers", "--pull-never", "--signature-policy", str(POLICY), *foreign,
        "-f", img.dockerfile,
        "--build-arg", f"BASE_IMAGE={base_ref(platform)}",
        "--build-arg", f"WHEELS={wheels.relative_to(ROOT)}",
        "-t", ref,
        str(ROOT),
    )  # fmt: skip
    iid = image_id(ref)
    stamp(inputs, f"{digest} {iid}")
    log(f"{ref} = {iid[:12]} ({time.monotonic() - t0:.0f}s)")
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


# ------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
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
        "--platform",
        default=os.environ.get("IMAGES_PLATFORMS", ""),
        help="comma-separated, e.g. linux/amd64,linux/arm64 (default: the host's); foreign ones build under qemu",
    )
    # Accepted, and ignored, for callers of older versions of this script (yolo_tools.previous builds an
    # older release with `--no-load --no-verify`): the checks are docker/tests now, and --no-load (the
    # previous release's images go to the registry through `make release`, never as dev images)
    # means --no-push.
    ap.add_argument("--verify", "--no-verify", dest="_checks", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--no-load", dest="push", action="store_false", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main() -> None:
    args = parse_args()
    if os.geteuid() != 0:
        raise SystemExit("buildah here runs as root (overlay storage, buildah run): run as root")
    all_images = {i.name: i for i in images()}
    chosen = [all_images[n] for n in args.names] if args.names else list(all_images.values())
    platforms = parse_platforms(args.platform) if args.platform else [native_platform()]
    CACHE.mkdir(parents=True, exist_ok=True)
    RUNROOT.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        t0 = time.monotonic()
        ensure_tools(need_mmdebstrap=False)
        prune_if_large()
        ids: dict[str, str] = {}  # the host platform's, which are exported and pushed
        for platform in platforms:
            ensure_emulation(platform)
            build_base(platform)
            built = {img.name: build_image(img, platform) for img in chosen}
            if platform.native:
                ids = built
        prune_if_large()
        if not platforms[0].native:
            log(f"done in {time.monotonic() - t0:.0f}s (only foreign platforms: nothing exported or pushed)")
            return
        present = {n: info["FromImageID"] for n, i in all_images.items() if (info := image_info(i.ref))}
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
