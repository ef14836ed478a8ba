"""`make release`: publish one version of yolo-operator to an OCI registry, images and chart.

    python -m yolo_tools.release [--registry HOST[:PORT][/PATH]] [--version X.Y.Z] [--plain-http]
                                 [--platforms linux/amd64,linux/arm64]

One version source, the VERSION file, feeds everything a release publishes:

  1. images   the four images `make images` builds (operator, gateway, model-fetcher, triton-cpu),
              pushed as REGISTRY/yolo-operator/<name>:<VERSION> with buildah from the project's
              image store (.cache/images/storage). Each push prints the manifest digest. With more
              than one platform (`make release` builds linux/amd64 and linux/arm64), each name is
              one multi-platform image index over the platforms' images (the foreign ones built
              under qemu, tagged <tag>-<arch>: docker/build-images.py --platform), and its digest
              is the index's; a node pulls its own platform's image through it.
  2. chart    charts/yolo-operator packaged at version = appVersion = VERSION, its default image
              repository rewritten to REGISTRY/yolo-operator/operator (the other images follow it
              and the tag follows appVersion: _helpers.tpl projectImage), and pushed with
              `helm push` to oci://REGISTRY/charts.

A registry that asks for credentials: set REGISTRY_USERNAME and REGISTRY_PASSWORD (written to a
temporary auth file that buildah and helm both read, never onto a command line), or log in first
with `buildah login` and `helm registry login`.

It refuses a --version that is not the VERSION file's, a chart whose version or appVersion says
otherwise (run `make version`), and a version that is not SemVer. Users then install with

    helm install yolo-operator oci://REGISTRY/charts/yolo-operator --version VERSION

The default registry is the local cluster's (make cluster-up: localhost:15000, plain HTTP, its
credentials read from .cluster/registry/credentials.json); the tests release there; CI's release workflow runs the same command against ghcr.io on a v* tag.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "yolo-operator"
IMAGES = ("operator", "gateway", "model-fetcher", "triton-cpu")
LOCAL_PREFIX = "localhost/yolo-operator"
LOCAL_REGISTRY = "localhost:15000"  # the local cluster's (k8s-tests/cluster/registry.py; a test ties them)
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class ReleaseError(Exception):
    pass


@dataclass(frozen=True)
class Release:
    version: str
    registry: str  # host[:port][/path], no scheme
    plain_http: bool = False
    authfile: Path | None = None  # a docker config.json with the registry's credentials

    def image(self, name: str) -> str:
        return f"{self.registry}/yolo-operator/{name}:{self.version}"

    @property
    def chart_ref(self) -> str:
        return f"oci://{self.registry}/charts/yolo-operator"


def version_file() -> str:
    return (ROOT / "VERSION").read_text().strip()


def check(version: str | None, registry: str) -> str:
    """The version to release, after every refusal a release can meet before it pushes anything."""
    source = version_file()
    version = version or source
    if version != source:
        raise ReleaseError(f"--version {version} is not the VERSION file's {source}: run `make version V={version}`")
    if not SEMVER.match(version):
        raise ReleaseError(f"version {version!r} is not SemVer (X.Y.Z)")
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    if str(chart["version"]) != version or str(chart["appVersion"]) != version:
        raise ReleaseError(
            f"Chart.yaml says version {chart['version']}, appVersion {chart['appVersion']}, VERSION says {version}: run `make version`"
        )
    if not registry or "://" in registry or registry.endswith("/"):
        raise ReleaseError(f"--registry {registry!r}: give host[:port][/path], no scheme")
    return version


def release_values(values_text: str, release: Release) -> str:
    """values.yaml with the operator image moved to the release's registry, every comment kept:
    only the `repository:` line under the top-level `image:` block changes, and `tag` stays empty
    so that every image follows the chart's appVersion."""
    lines = values_text.splitlines(keepends=True)
    in_image, done = False, False
    for i, line in enumerate(lines):
        if re.match(r"^image:\s*$", line):
            in_image = True
            continue
        if in_image and re.match(r"^\S", line):
            break
        m = re.match(r"^(\s+)repository:\s*\S+", line) if in_image else None
        if m:
            lines[i] = f"{m.group(1)}repository: {release.registry}/yolo-operator/operator\n"
            done = True
            break
    if not done:
        raise ReleaseError("values.yaml has no image.repository line to point at the registry")
    out = "".join(lines)
    parsed = yaml.safe_load(out)
    if parsed["image"]["repository"] != f"{release.registry}/yolo-operator/operator":
        raise ReleaseError("rewriting image.repository in values.yaml did not take")
    if parsed["image"].get("tag"):
        raise ReleaseError(
            f"values.yaml pins image.tag {parsed['image']['tag']!r}: a release's images follow appVersion"
        )
    return out


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:
    print("+ " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd, text=True, capture_output=True, **kw)
    if r.returncode != 0:
        raise ReleaseError(f"{cmd[0]} failed ({r.returncode}):\n{(r.stderr or r.stdout)[-3000:]}")
    return r


def buildah(*args: str) -> list[str]:
    storage = os.environ.get("IMAGES_STORAGE", str(ROOT / ".cache" / "images" / "storage"))
    runroot = os.environ.get("IMAGES_RUNROOT", "/run/yolo-operator-images")
    driver = os.environ.get("IMAGES_STORAGE_DRIVER", "overlay")
    return ["buildah", "--root", storage, "--runroot", runroot, "--storage-driver", driver, *args]


def build_images_module(*, fresh: bool = False) -> ModuleType:
    """docker/build-images.py as a module (its file name is not an identifier), for the tests that
    use its image list, storage and platforms. It reads YOLO_CLUSTER_DIR and IMAGES_* once, when
    loaded: `fresh` loads it again."""
    if not fresh and isinstance(sys.modules.get("build_images"), ModuleType):
        return sys.modules["build_images"]
    spec = importlib.util.spec_from_file_location("build_images", ROOT / "docker" / "build-images.py")
    if spec is None or spec.loader is None:
        raise ReleaseError("docker/build-images.py cannot be loaded")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["build_images"] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def native_platform() -> str:
    """The host's platform, as docker/build-images.py names it (its PLATFORMS: one list for both)."""
    try:
        return str(build_images_module().native_platform().name)
    except SystemExit as exc:
        raise ReleaseError(str(exc)) from exc


def parse_platforms(text: str | None) -> list[str]:
    """'linux/amd64,linux/arm64' -> the platforms, the host's first (docker/build-images.py's parsing);
    the default is the host's alone."""
    if not text:
        return [native_platform()]
    try:
        return [str(p.name) for p in build_images_module().parse_platforms(text)]
    except SystemExit as exc:
        raise ReleaseError(str(exc)) from exc


def local_ref(name: str, tag: str, platform: str, prefix: str = LOCAL_PREFIX) -> str:
    """The image docker/build-images.py built: the host's platform as <tag>, another as <tag>-<arch>."""
    return f"{prefix}/{name}:{tag}{build_images_module().PLATFORMS[platform].suffix}"


def image_exists(ref: str) -> bool:
    return subprocess.run(buildah("inspect", "--type", "image", ref), capture_output=True).returncode == 0


def push_images(
    release: Release,
    tag: str,
    platforms: list[str] | None = None,
    names: tuple[str, ...] = IMAGES,
    prefix: str = LOCAL_PREFIX,
) -> dict[str, str]:
    """Push each built image (one platform) or an index over the platforms' images (several); returns
    destination -> the digest the registry stored. Every source must exist before anything is pushed."""
    platforms = platforms or [native_platform()]
    sources = {name: {p: local_ref(name, tag, p, prefix) for p in platforms} for name in names}
    missing = [ref for refs in sources.values() for ref in refs.values() if not image_exists(ref)]
    if missing:
        hint = ",".join(platforms)
        raise ReleaseError(
            f"not built: {', '.join(missing)}: run `python3 docker/build-images.py --no-push --platform {hint}` "
            "(make release does): nothing was pushed"
        )
    policy = ROOT / ".cache" / "images" / "policy.json"
    flags = ["--signature-policy", str(policy)] if policy.exists() else []
    if release.plain_http:
        flags += ["--tls-verify=false"]
    if release.authfile:
        flags += ["--authfile", str(release.authfile)]
    pushed: dict[str, str] = {}
    for name, refs in sources.items():
        dest = release.image(name)
        with tempfile.TemporaryDirectory() as tmp:
            digest_file = Path(tmp) / "digest"
            if len(refs) == 1:
                (src,) = refs.values()
                run([*buildah("push", "--quiet", "--digestfile", str(digest_file), *flags), src, f"docker://{dest}"])
            else:
                push_index(list(refs.values()), dest, digest_file, flags)
            digest = digest_file.read_text().strip()
        if not DIGEST.fullmatch(digest):
            raise ReleaseError(f"pushing {dest} gave no digest ({digest!r})")
        pushed[dest] = digest
        print(f"{dest}@{digest}", flush=True)
        if len(refs) > 1:
            print(f"  an index over {', '.join(f'{p} ({r})' for p, r in refs.items())}", flush=True)
    return pushed


def push_index(sources: list[str], dest: str, digest_file: Path, flags: list[str]) -> None:
    """An OCI image index over `sources` (each image's os and architecture read from its config),
    pushed with its images to `dest`; the index's digest is written to `digest_file`. The list lives
    in the local store only while it is pushed."""
    index = f"localhost/yolo-operator-release/index-{os.getpid()}:{dest.rsplit(':', 1)[1]}"
    subprocess.run(buildah("manifest", "rm", index), capture_output=True)
    run(buildah("manifest", "create", index))
    try:
        for src in sources:
            run(buildah("manifest", "add", index, f"containers-storage:{src}"))
        cmd = buildah("manifest", "push", "--all", "--quiet", "--format", "oci", "--digestfile", str(digest_file))
        run([*cmd, *flags, index, f"docker://{dest}"])
    finally:
        subprocess.run(buildah("manifest", "rm", index), capture_output=True)


def package_chart(release: Release, helm: str, into: Path) -> Path:
    work = into / "yolo-operator"
    shutil.copytree(CHART, work, ignore=shutil.ignore_patterns("ci"))
    values = work / "values.yaml"
    values.write_text(release_values(values.read_text(), release))
    run([helm, "lint", str(work)])
    out = run([helm, "package", str(work), "--destination", str(into)]).stdout
    pkg = into / f"yolo-operator-{release.version}.tgz"
    if not pkg.exists():
        raise ReleaseError(f"helm package wrote no {pkg.name}: {out}")
    return pkg


def push_chart(release: Release, helm: str, pkg: Path) -> str:
    cmd = [helm, "push", str(pkg), f"oci://{release.registry}/charts"]
    if release.plain_http:
        cmd.append("--plain-http")
    if release.authfile:
        cmd += ["--registry-config", str(release.authfile)]
    r = run(cmd)
    found = DIGEST.search(r.stdout + r.stderr)
    if not found:
        raise ReleaseError(f"helm push printed no digest:\n{r.stdout}{r.stderr}")
    return found.group(0)


def docker_config(host: str, username: str, password: str) -> dict[str, Any]:
    """A docker config.json's content for one registry (an authfile, or a dockerconfigjson Secret)."""
    return {"auths": {host: {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}}}


def write_authfile(host: str, username: str, password: str, path: Path) -> Path:
    """A docker config.json: buildah's --authfile and helm's --registry-config read the same format."""
    path.write_text(json.dumps(docker_config(host, username, password)))
    os.chmod(path, 0o600)
    return path


def find_helm() -> str:
    for candidate in (os.environ.get("HELM"), str(ROOT / ".bin" / "helm"), shutil.which("helm")):
        if candidate and Path(candidate).exists():
            return candidate
    raise ReleaseError("no helm: run `make cluster-build` (it builds helm into .bin) or set HELM")


def local_credentials(registry: str) -> tuple[str, str] | None:
    """The local cluster registry's user and password (k8s-tests/cluster/registry.py), when
    `registry` is that registry and the cluster made them."""
    if registry.split("/", 1)[0] != LOCAL_REGISTRY:
        return None
    path = Path(os.environ.get("YOLO_CLUSTER_DIR", ROOT / ".cluster")) / "registry" / "credentials.json"
    if not path.exists():
        return None
    c = json.loads(path.read_text())
    return str(c["username"]), str(c["password"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--registry",
        default=LOCAL_REGISTRY,
        help=f"host[:port][/path] the images and chart go to (default: the local cluster's, {LOCAL_REGISTRY})",
    )
    ap.add_argument("--version", default=None, help="must equal the VERSION file (the default)")
    ap.add_argument(
        "--plain-http", action="store_true", help="the registry speaks HTTP (implied for the local cluster's)"
    )
    ap.add_argument("--from-tag", default=os.environ.get("IMAGES_TAG", "dev"), help="the local images' tag")
    ap.add_argument(
        "--platforms",
        default=None,
        help="comma-separated, e.g. linux/amd64,linux/arm64: one index per image (default: the host's alone)",
    )
    args = ap.parse_args(argv)
    plain_http = args.plain_http or args.registry.split("/", 1)[0] == LOCAL_REGISTRY
    try:
        version = check(args.version, args.registry)
        platforms = parse_platforms(args.platforms)
        helm = find_helm()
        with tempfile.TemporaryDirectory() as tmp:
            authfile = None
            user, password = os.environ.get("REGISTRY_USERNAME"), os.environ.get("REGISTRY_PASSWORD")
            if bool(user) != bool(password):
                raise ReleaseError("set both REGISTRY_USERNAME and REGISTRY_PASSWORD, or neither")
            creds = (user, password) if user and password else local_credentials(args.registry)
            if creds:
                authfile = write_authfile(args.registry.split("/", 1)[0], *creds, Path(tmp) / "auth.json")
            release = Release(version, args.registry, plain_http, authfile)
            images = push_images(release, args.from_tag, platforms)
            pkg = package_chart(release, helm, Path(tmp))
            chart_digest = push_chart(release, helm, pkg)
    except ReleaseError as exc:
        print(f"release: {exc}", file=sys.stderr)
        return 1
    print(
        f"released {version}: {len(images)} images ({', '.join(platforms)}), chart {release.chart_ref}:{version}@{chart_digest}"
    )
    print(f"install: helm install yolo-operator {release.chart_ref} --version {version}")
    print(f"{release.chart_ref}:{version}")  # the last line: the chart's reference
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
