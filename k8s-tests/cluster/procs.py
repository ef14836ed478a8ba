"""The local cluster's processes: where state and binaries live, and starting, stopping and
waiting for one component (a process group of its own, its pid in .cluster/pids, its output in
.cluster/logs)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("YOLO_CLUSTER_DIR", ROOT / ".cluster"))
BIN = Path(os.environ.get("YOLO_CLUSTER_BIN", ROOT / ".bin"))


class ClusterError(RuntimeError):
    pass


def binary(name: str) -> str:
    path = BIN / name
    if not path.exists():
        raise ClusterError(
            f"{path} is missing: run `make cluster-build` (needs Go; builds from the Go module proxy) or set YOLO_K8S_BIN"
        )
    return str(path)


def run(cmd: list[str], **kw: object) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout  # type: ignore[call-overload]  # **kw holds only subprocess.run's own keywords


def pidfile(name: str) -> Path:
    return STATE / "pids" / f"{name}.pid"


def alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):  # reap it when it is our own child (up and down in one process)
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def start(name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
    (STATE / "pids").mkdir(parents=True, exist_ok=True)
    (STATE / "logs").mkdir(parents=True, exist_ok=True)
    log = open(STATE / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=env
    )
    pidfile(name).write_text(str(proc.pid))


def stop(name: str, grace: float = 10) -> None:
    """SIGTERM the component's process group, SIGKILL it after `grace` seconds."""
    pf = pidfile(name)
    if not pf.exists():
        return
    pid = int(pf.read_text())
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pf.unlink(missing_ok=True)
        return
    deadline = time.monotonic() + grace
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    pf.unlink(missing_ok=True)


def wait_for(what: str, check: Callable[[], object], timeout: float = 90.0, name: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if name:
            pid = int(pidfile(name).read_text())
            if not alive(pid):
                tail = (STATE / "logs" / f"{name}.log").read_text(errors="replace")[-3000:]
                raise ClusterError(f"{name} exited during start-up:\n{tail}")
        try:
            if check():
                return
        except (subprocess.CalledProcessError, OSError, ClusterError) as exc:
            last = str(exc)
        time.sleep(0.3)
    raise ClusterError(f"timed out waiting for {what} {last}")


def kubectl(*args: str, kubeconfig_path: Path | None = None, input_text: str | None = None) -> str:
    cfg = kubeconfig_path or STATE / "kubeconfig"
    r = subprocess.run(["kubectl", f"--kubeconfig={cfg}", *args], capture_output=True, text=True, input=input_text)
    if r.returncode != 0:
        raise ClusterError(f"kubectl {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout
