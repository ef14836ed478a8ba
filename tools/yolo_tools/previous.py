"""The previous release, built into a registry for the upgrade test (`make upgrade-test`).

    python -m yolo_tools.previous [--registry HOST:PORT]

The previous release is the newest `v*` tag of this repository that is older than VERSION. Until
one exists it is a pinned commit (PINNED: the last landed before NetworkPolicies, the CRD upgrade
hook and this file), stamped PINNED_VERSION with that commit's own `make version`.

Built as that commit builds itself, so the upgrade meets the real N-1: its source is exported with
`git archive` into .cache/previous/<commit>, its docker/build-images.py builds its four images
(tagged `prev-<commit>` in this checkout's image store, so layers the two versions share are
built once; its wheelhouses are this checkout's), and its own `yolo_tools.release` pushes them and
its chart to the registry. The last line printed is the chart's oci:// reference.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from yolo_tools import release as rel
from yolo_tools.release import ReleaseError

ROOT = rel.ROOT
PINNED = "9270eee01cdeac3908162720770708ca1532ef85"
PINNED_VERSION = "0.1.0-pre.1"
TAG = re.compile(r"^v(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?)$")


@dataclass(frozen=True)
class Previous:
    commit: str
    version: str

    @property
    def source(self) -> Path:
        return ROOT / ".cache" / "previous" / self.commit[:12]


def git(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["git", "-C", str(ROOT), *args], text=True, capture_output=True)
    if check and r.returncode != 0:
        raise ReleaseError(f"git {' '.join(args)} failed: {r.stderr.strip()}")
    return r


def find() -> Previous:
    """The newest v* tag older than VERSION, else the pinned commit."""
    from yolo_operator.crds import newer, semver_key  # SemVer precedence, one copy

    current = rel.version_file()
    tags = []
    for line in git("tag", "--list", "v*").stdout.split():
        m = TAG.match(line)
        if m and newer(current, m.group(1)):
            tags.append((semver_key(m.group(1)), m.group(1), line))
    if tags:
        _, version, tag = max(tags)
        return Previous(git("rev-list", "-n", "1", tag).stdout.strip(), version)
    return Previous(PINNED, PINNED_VERSION)


def ensure_commit(commit: str) -> None:
    """The commit must be in this clone; a shallow clone is deepened once."""
    if git("cat-file", "-e", f"{commit}^{{commit}}", check=False).returncode == 0:
        return
    if git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
        git("fetch", "--quiet", "--unshallow", check=False)
    if git("cat-file", "-e", f"{commit}^{{commit}}", check=False).returncode != 0:
        raise ReleaseError(f"commit {commit} is not in this clone: the previous release cannot be built")


def export(prev: Previous) -> Path:
    """The commit's tree in .cache/previous/<commit>, stamped with its version by its own Makefile."""
    src = prev.source
    done = src / ".exported"
    if done.exists() and done.read_text().strip() == prev.version:
        return src
    ensure_commit(prev.commit)
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    archive = subprocess.Popen(["git", "-C", str(ROOT), "archive", prev.commit], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(src)], stdin=archive.stdout, check=True)
    if archive.wait() != 0:
        raise ReleaseError(f"git archive {prev.commit} failed")
    # Twice: before 0.1.0, `make version V=...` stamped the chart with the VERSION it was replacing.
    for _ in range(2):
        r = subprocess.run(
            ["make", "-s", "-C", str(src), "version", f"V={prev.version}"], text=True, capture_output=True
        )
        if r.returncode != 0:
            raise ReleaseError(f"make version in {src} failed: {r.stderr[-2000:]}")
    # Shared with this checkout: the wheelhouses (keyed by their requirements; hard links, as the
    # builds COPY them and buildah follows no link out of its context), the base rootfs and the tools.
    images = ROOT / ".cache" / "images"
    (src / ".cache" / "images").mkdir(parents=True)
    if (images / "wheels").is_dir():
        subprocess.run(["cp", "-al", str(images / "wheels"), str(src / ".cache" / "images" / "wheels")], check=True)
    (images / "base").mkdir(parents=True, exist_ok=True)
    (src / ".cache" / "images" / "base").symlink_to(images / "base")
    (src / ".bin").symlink_to(ROOT / ".bin")
    done.write_text(prev.version + "\n")
    return src


# The flags the previous release's own docker/build-images.py is run with (the pinned commit's script
# knows them; today's accepts them too, tools/tests/test_release.py): build only, nothing to the node.
BUILD_FLAGS = ("--no-load", "--no-verify")


def build(prev: Previous, registry: str, env: dict[str, str]) -> str:
    """Build and push the previous release unless the registry has its chart; its oci:// reference."""
    ref = f"oci://{registry}/charts/yolo-operator:{prev.version}"
    src = export(prev)
    tag = f"prev-{prev.commit[:12]}"
    env = {
        **os.environ,
        **env,
        "IMAGES_TAG": tag,
        "IMAGES_STORAGE": os.environ.get("IMAGES_STORAGE", str(ROOT / ".cache" / "images" / "storage")),
        "YOLO_CLUSTER_DIR": os.environ.get("YOLO_CLUSTER_DIR", str(ROOT / ".cluster")),
        "PYTHONPATH": str(src / "tools"),
    }
    steps = [
        ["python3", str(src / "docker" / "build-images.py"), *BUILD_FLAGS],
        [sys.executable, "-m", "yolo_tools.release", "--registry", registry, "--from-tag", tag],
    ]
    for cmd in steps:
        print("+ " + " ".join(cmd), flush=True)
        r = subprocess.run(cmd, cwd=src, env=env, text=True, capture_output=True)
        if r.returncode != 0:
            raise ReleaseError(f"{' '.join(cmd[:2])} failed ({r.returncode}):\n{(r.stdout + r.stderr)[-4000:]}")
        print(r.stdout[-1500:], flush=True)
    if r.stdout.splitlines()[-1] != ref:
        raise ReleaseError(f"the previous release printed {r.stdout.splitlines()[-1]!r}, not {ref}")
    # The exported archives are the previous build's only large files; the images stay in the store.
    for tar in (src / ".cache" / "images").glob("*.tar"):
        tar.unlink()
    return ref


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--registry", default=rel.LOCAL_REGISTRY)
    args = ap.parse_args(argv)
    try:
        prev = find()
        print(f"previous release: {prev.version} ({prev.commit[:12]})", flush=True)
        ref = build(prev, args.registry, {})
    except ReleaseError as exc:
        print(f"previous: {exc}", file=sys.stderr)
        return 1
    print(ref)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
