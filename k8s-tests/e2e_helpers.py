"""Helpers shared by the end-to-end tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import cluster
import yaml

ROOT = Path(__file__).resolve().parents[1]

CHART = ROOT / "charts" / "yolo-operator"
RELEASE, RELEASE_NS = "yolo-operator", "yolo-system"
SA = "yolo-operator"
GROUP = "serving.yolo.dev"


def run(
    *cmd: str, check: bool = True, input_text: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, input=input_text, env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


class Kube:
    """kubectl and helm against the test cluster, as admin."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig

    def kubectl(
        self, *args: str, check: bool = True, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run("kubectl", f"--kubeconfig={self.kubeconfig}", *args, check=check, input_text=input_text)

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(str(cluster.BIN / "helm"), f"--kubeconfig={self.kubeconfig}", *args, check=check)

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        args = ["get", kind, name, "-o", "json"] + (["-n", namespace] if namespace else [])
        r = self.kubectl(*args, check=False)
        if r.returncode != 0:
            if "NotFound" in r.stderr or "not found" in r.stderr:
                return None
            raise AssertionError(r.stderr)
        return json.loads(r.stdout)

    def items(self, kind: str, namespace: str | None = None, selector: str | None = None) -> list[dict[str, Any]]:
        args = (
            ["get", kind, "-o", "json"]
            + (["-n", namespace] if namespace else ["-A"])
            + (["-l", selector] if selector else [])
        )
        return json.loads(self.kubectl(*args).stdout)["items"]

    def apply(self, obj: dict[str, Any] | str, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        text = obj if isinstance(obj, str) else json.dumps(obj)
        return self.kubectl("apply", "-f", "-", *extra, input_text=text, check=check)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 90.0, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except AssertionError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last}")


def install_chart(kube: Kube, *helm_args: str) -> None:
    """helm install (or upgrade) the chart's release, then wait for the YoloService CRD to be Established."""
    kube.helm(
        "upgrade", "--install", RELEASE, str(CHART), "-n", RELEASE_NS, "--create-namespace", "--wait=false", *helm_args
    )
    wait_for(
        "the CRD to be Established",
        lambda: any(
            c["type"] == "Established" and c["status"] == "True"
            for c in (kube.get("crd", f"yoloservices.{GROUP}") or {}).get("status", {}).get("conditions", [])
        ),
    )


def sa_kubeconfig(kube: Kube, path: Path) -> Path:
    """A kubeconfig that authenticates as the chart's ServiceAccount (a bound token), not as admin."""
    token = kube.kubectl("create", "token", SA, "-n", RELEASE_NS, "--duration=3h").stdout.strip()
    admin = yaml.safe_load(kube.kubeconfig.read_text())
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": SA, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": admin["clusters"][0]["name"], "user": SA}}],
        "current-context": "sa",
    }
    path.write_text(json.dumps(cfg))
    return path


class OperatorProcess:
    """`python -m yolo_operator`, the same code the image runs, as the chart's ServiceAccount."""

    started: ClassVar[list[OperatorProcess]] = []  # so that the in-cluster operator's fixture can stop them first

    def __init__(
        self, kubeconfig: Path, log: Path, identity: str | None = None, resync_seconds: float = 3, verbose: bool = True
    ) -> None:
        self.kubeconfig = kubeconfig
        self.verbose = verbose
        self.resync_seconds = resync_seconds
        self.log = log
        # kopf's peering identity, kept across restarts as a pod's name is (the chart sets POD_ID)
        self.identity = identity or f"local-{log.stem}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "YOLO_OPERATOR_RESYNC_SECONDS": str(self.resync_seconds),
            "YOLO_OPERATOR_WAIT_SECONDS": "1",
            "POD_ID": self.identity,
            "PYTHONUNBUFFERED": "1",
        }
        out = open(self.log, "ab")  # noqa: SIM115 - kept for the child's life
        cmd = [sys.executable, "-m", "yolo_operator", "--all-namespaces", "--peering=yolo-operator", "--liveness="] + (
            ["--verbose"] if self.verbose else []
        )
        self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        OperatorProcess.started.append(self)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_since(self, offset: int = 0) -> str:
        """Its log from byte `offset` on (take `self.log.stat().st_size` as a mark)."""
        with self.log.open(errors="replace") as f:
            f.seek(offset)
            return f.read()

    def forbidden(self) -> list[str]:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [line for line in text.splitlines() if "403" in line and "orbidden" in line]


def patch_spec(obj: dict[str, Any], name: str, **patch: Any) -> dict[str, Any]:
    """`obj` renamed, with dotted-path values set in its spec (e.g. "triton.replicas": 2)."""
    obj["metadata"]["name"] = name
    for dotted, value in patch.items():
        node = obj["spec"]
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return obj


def sample(name: str, **patch: Any) -> dict[str, Any]:
    """examples/yoloservice.yaml with dotted patches, on the HPA engine unless a patch says otherwise:
    the cluster serves KEDA too (test_pods_autoscale.py runs that path on the real node), and these
    tests hold the operator's own HPAs (the prometheus-adapter path) to their contract."""
    obj = patch_spec(yaml.safe_load((ROOT / "examples" / "yoloservice.yaml").read_text()), name, **patch)
    for tier in ("triton", "gateway"):
        obj["spec"].setdefault(tier, {}).setdefault("autoscaling", {}).setdefault("engine", "hpa")
    return obj


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions", []):
        if c["type"] == kind:
            return c
    return {}


def wait_reason(kube: Kube, name: str, namespace: str, kind: str, reason: str, timeout: float = 180) -> dict[str, Any]:
    """Wait (bounded) until the YoloService's `kind` condition has `reason`; that condition."""

    def has() -> dict[str, Any] | None:
        c = condition(kube.get("yoloservice", name, namespace), kind)
        return c if c.get("reason") == reason else None

    return wait_for(f"{name}: {kind} {reason}", has, timeout=timeout, interval=1)
