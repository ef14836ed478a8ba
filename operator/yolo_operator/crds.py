"""Apply the chart's CRDs on `helm upgrade`: python -m yolo_operator.crds --version X.Y.Z DIR.

Helm installs the files in a chart's crds/ folder on first install and never again, so an upgrade
would leave the old YoloService schema in place (new fields pruned on write). The chart's
pre-upgrade hook Job (templates/crd-upgrade.yaml) runs this with the chart's CRD files mounted
from a ConfigMap:

  * each CRD is written with server-side apply (field manager `yolo-operator-crds`, forced: the
    first upgrade takes the fields over from Helm's create), and annotated with the chart version
    that wrote it;
  * a CRD that a newer chart version wrote is left as it is (a `helm upgrade` to an older chart,
    or a `helm rollback`'s later upgrade, never removes schema that stored objects may use);
  * it waits until every applied CRD is Established, so the new operator starts on the new schema.

Any API error ends it with exit 1 and one line saying which CRD and why: the hook fails, Helm
stops the upgrade before it changes anything else, and the previous release keeps serving.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client.exceptions import ApiException

from . import kube

FIELD_MANAGER = "yolo-operator-crds"
VERSION_ANNOTATION = "serving.yolo.dev/chart-version"
SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")


class CrdError(Exception):
    pass


def semver_key(version: str) -> tuple[Any, ...]:
    """A sort key in SemVer 2.0 precedence: a pre-release sorts before its release, numeric
    identifiers numerically and before alphanumeric ones."""
    m = SEMVER.match(version.strip())
    if not m:
        raise ValueError(f"not a SemVer version: {version!r}")
    core = tuple(int(x) for x in m.group(1, 2, 3))
    pre = m.group(4)
    if pre is None:
        return (core, 1, ())
    ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (core, 0, ids)


def newer(a: str, b: str) -> bool:
    """Whether version a is newer than b; a version that is not SemVer is never newer."""
    try:
        return semver_key(a) > semver_key(b)
    except ValueError:
        return False


def load(directory: Path) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for f in sorted(directory.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(f.read_text()) if d]
    crds = [d for d in docs if d.get("kind") == "CustomResourceDefinition"]
    if not crds:
        raise CrdError(f"no CustomResourceDefinition in {directory}/*.yaml")
    return crds


def plan(crd: dict[str, Any], existing: dict[str, Any] | None, version: str) -> tuple[bool, str]:
    """(apply?, why) for one CRD, given what the cluster holds."""
    name = crd["metadata"]["name"]
    if existing is None:
        return True, f"{name}: not in the cluster, creating it at {version}"
    have = ((existing.get("metadata") or {}).get("annotations") or {}).get(VERSION_ANNOTATION)
    if have and newer(have, version):
        return False, f"{name}: kept as chart {have} wrote it (newer than {version})"
    return True, f"{name}: {have or 'as first installed'} -> {version}"


def manifest(crd: dict[str, Any], version: str) -> dict[str, Any]:
    out = {k: v for k, v in crd.items() if k != "status"}
    md = dict(out["metadata"])
    md["annotations"] = {**(md.get("annotations") or {}), VERSION_ANNOTATION: version}
    out["metadata"] = md
    return out


def established(obj: dict[str, Any] | None) -> bool:
    conds = ((obj or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conds)


def _get(name: str) -> dict[str, Any] | None:
    return kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, name)


def upgrade(crds: list[dict[str, Any]], version: str, timeout: float = 60.0) -> list[str]:
    """Apply each CRD unless a newer chart wrote it; wait for the applied ones to be Established."""
    applied: list[str] = []
    for crd in crds:
        name = crd["metadata"]["name"]
        try:
            go, why = plan(crd, _get(name), version)
            print(why, flush=True)
            if go:
                kube.apply(manifest(crd, version), field_manager=FIELD_MANAGER)
                applied.append(name)
        except ApiException as exc:
            raise CrdError(f"{name}: the API server answered {exc.status} {exc.reason}: {_message(exc)}") from None
    deadline = time.monotonic() + timeout
    waiting = list(applied)
    while waiting:
        waiting = [n for n in waiting if not established(_get(n))]
        if waiting and time.monotonic() > deadline:
            raise CrdError(f"not Established after {timeout:.0f}s: {', '.join(waiting)}")
        if waiting:
            time.sleep(0.5)
    return applied


def _message(exc: ApiException) -> str:
    try:
        body = yaml.safe_load(exc.body or "") or {}
        return str(body.get("message") or exc.body)[:500]
    except yaml.YAMLError:
        return str(exc.body)[:500]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", required=True, help="the chart version applying them")
    ap.add_argument("directory", type=Path, help="a folder of CRD manifests (*.yaml)")
    args = ap.parse_args(argv)
    try:
        semver_key(args.version)
        applied = upgrade(load(args.directory), args.version)
    except (CrdError, ValueError) as exc:
        print(f"crd upgrade failed: {exc}", file=sys.stderr, flush=True)
        return 1
    print(f"crd upgrade: {len(applied)} applied and Established", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
