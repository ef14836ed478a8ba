"""Start the real `tritonserver` from the PyPI wheel nvidia-pytriton on this machine.

The wheel (0.7.0, Triton 2.51) ships the server binary, the python backend and
one backend stub per Python version. Triton wants the stub beside
`libtriton_python.so`, so a backend folder is assembled once under a cache
directory. The stub runs the Python of this interpreter, so numpy and
onnxruntime come from the current environment.

    python -m yolo_tools.local_triton --model-repository model_repository/local

Used by `make serve`, `make demo`, the test fixtures and the benchmarks.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class TritonNotAvailable(RuntimeError):
    """The nvidia-pytriton wheel (or its stub for this Python) is missing."""


def _wheel_root() -> Path:
    try:
        import pytriton  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise TritonNotAvailable(
            "pip install nvidia-pytriton==0.7.0 (the 'local' extra) to run Triton locally"
        ) from exc
    return Path(pytriton.__file__).resolve().parent


ONNX_BACKEND = Path(__file__).resolve().parents[2] / "model_repository" / "python_backend" / "onnx_model.py"


def backend_directory(cache: Path) -> Path:
    """Assemble <cache>/python/{libtriton_python.so, utils, stub} and return <cache>. Also
    <cache>/onnxruntime/model.py: a python-based backend that serves `platform: "onnxruntime_onnx"`
    configs (what the operator generates) with onnxruntime, as the CPU Triton image does."""
    root = _wheel_root() / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise TritonNotAvailable(f"nvidia-pytriton has no python backend stub for Python {version}")
    target = cache / "python"
    target.mkdir(parents=True, exist_ok=True)
    for src in [*sorted((root / "backends" / "python").glob("*.*")), stub]:
        dst = target / src.name
        if not dst.exists() or dst.stat().st_size != src.stat().st_size:
            shutil.copy2(src, dst)
    if ONNX_BACKEND.exists():  # a source checkout (the runtime images assemble their own)
        (cache / "onnxruntime").mkdir(exist_ok=True)
        shutil.copy2(ONNX_BACKEND, cache / "onnxruntime" / "model.py")
    return cache


def die_with_parent() -> list[str]:
    """A command prefix that makes the child get SIGTERM when this process dies, however it dies:
    `setpriv --pdeathsig TERM --` (util-linux), or nothing where setpriv is missing.

    Not a `preexec_fn`: one makes subprocess fork() and run Python in the child before exec, and
    a gRPC client live in this process (the tests' gateways and Triton clients) has fork handlers
    whose threads then crash some children before they exec (SIGSEGV or SIGABRT, "epoll_wait
    error: Bad file descriptor"; 9 of 400 starts beside a busy client). Without one, subprocess
    uses vfork, which runs no fork handlers. The kernel ties the signal to the thread that
    starts the child, so only starts from the main thread use it."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or threading.current_thread() is not threading.main_thread():
        return []
    return [setpriv, "--pdeathsig", "TERM", "--"]


def spawn(command: list[str], **popen: Any) -> subprocess.Popen[bytes]:
    """Start `command` as a child that dies with this process (see `die_with_parent`)."""
    return subprocess.Popen([*die_with_parent(), *command], **popen)


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP unwind the main thread once (closing servers through their context
    managers); repeats, as `timeout`, systemd or a container runtime may send, are ignored
    so that they cannot interrupt the clean-up itself."""

    def handler(signum: int, _frame: object) -> None:
        for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(s, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, handler)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class TritonPorts:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002

    @classmethod
    def free(cls) -> TritonPorts:
        return cls(free_port(), free_port(), free_port())


class LocalTriton:
    """A tritonserver child process with a lifetime: start, wait for readiness, stop."""

    def __init__(
        self,
        model_repository: str | Path,
        ports: TritonPorts | None = None,
        cache_dir: str | Path | None = None,
        log_path: str | Path | None = None,
        extra_args: tuple[str, ...] = (),
        address: str = "127.0.0.1",
    ) -> None:
        self.address = address  # any loopback address: several servers can share one port
        self.model_repository = Path(model_repository).resolve()
        self.ports = ports or TritonPorts()
        self.cache_dir = Path(cache_dir or os.environ.get("YOLO_CACHE_DIR", ".cache")).resolve() / "triton-backends"
        self.log_path = Path(log_path) if log_path else None
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file = None

    @property
    def grpc_target(self) -> str:
        return f"{self.address}:{self.ports.grpc}"

    @property
    def http_url(self) -> str:
        return f"http://{self.address}:{self.ports.http}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.address}:{self.ports.metrics}/metrics"

    def command(self) -> list[str]:
        binary = _wheel_root() / "tritonserver" / "bin" / "tritonserver"
        return [
            str(binary),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backend_directory(self.cache_dir)}",
            f"--http-port={self.ports.http}",
            f"--grpc-port={self.ports.grpc}",
            f"--metrics-port={self.ports.metrics}",
            f"--http-address={self.address}",
            f"--grpc-address={self.address}",
            f"--metrics-address={self.address}",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            "--strict-readiness=true",
            "--exit-timeout-secs=10",
            "--log-verbose=0",
            *self.extra_args,
        ]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        libs = [str(_wheel_root().parent / "nvidia_pytriton.libs"), str(sysconfig.get_config_var("LIBDIR"))]
        if env.get("LD_LIBRARY_PATH"):
            libs.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = ":".join(libs)
        # The stub embeds this interpreter's libpython; put this environment's
        # python (with numpy and onnxruntime) first on PATH and on PYTHONPATH.
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        site = sysconfig.get_paths()["purelib"]
        env["PYTHONPATH"] = f"{site}:{env['PYTHONPATH']}" if env.get("PYTHONPATH") else site
        return env

    def start(self, timeout: float = 120.0) -> LocalTriton:
        if self.process and self.process.poll() is None:
            return self
        out = subprocess.DEVNULL
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
            out = self._log_file
        self.process = spawn(
            self.command(),
            env=self.environment(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_ready(timeout)
        return self

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=1) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"tritonserver exited with code {self.process.returncode}; log: {self.log_path}")
            if self.ready():
                return
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"tritonserver not ready after {timeout:.0f}s; log: {self.log_path}")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the server's process group (server and stubs), SIGKILL after timeout."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            except ProcessLookupError:
                pass
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):  # stubs may outlive a killed server
                os.killpg(proc.pid, signal.SIGKILL)
        if self._log_file:
            self._log_file.close()
            self._log_file = None

    def kill(self) -> None:
        """Hard-kill the server and its stubs, as a crash would."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.stop()

    def __enter__(self) -> LocalTriton:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class CpuQuota:
    """A CPU quota for a process group (a tritonserver and its backend stubs), as a pod's CPU limit
    is one: a cgroup with a CFS quota (v1 `cpu` or v2 `cpu.max`), the group's processes moved in.

        with CpuQuota("slow-triton", 0.25) as quota:
            quota.add_group(triton.process.pid)

    Needs root and a writable cgroup tree; `available()` says whether there is one."""

    ROOTS = ((Path("/sys/fs/cgroup/cpu"), "cpu.cfs_quota_us"), (Path("/sys/fs/cgroup"), "cpu.max"))

    def __init__(self, name: str, cpus: float, period_us: int = 100_000) -> None:
        self.name, self.cpus, self.period_us = name, cpus, period_us
        self.path: Path | None = None

    @classmethod
    def _usable(cls, root: Path, knob: str) -> bool:
        return os.access(root, os.W_OK) and ((root / knob).exists() or (root / "cgroup.controllers").exists())

    @classmethod
    def available(cls) -> bool:
        return any(cls._usable(root, knob) for root, knob in cls.ROOTS)

    def __enter__(self) -> CpuQuota:
        quota = max(1000, int(self.cpus * self.period_us))
        for root, knob in self.ROOTS:
            if not self._usable(root, knob):
                continue
            path = root / f"yolo-{self.name}-{os.getpid()}"
            path.mkdir(exist_ok=True)
            if knob == "cpu.max":
                (path / "cpu.max").write_text(f"{quota} {self.period_us}")
            else:
                (path / "cpu.cfs_period_us").write_text(str(self.period_us))
                (path / "cpu.cfs_quota_us").write_text(str(quota))
            self.path = path
            return self
        raise RuntimeError("no writable cgroup with a CPU controller here (root is needed)")

    def add_group(self, pgid: int) -> list[int]:
        """Move every process of a process group in; returns their pids."""
        assert self.path is not None
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid:  # field 5 of stat: the process group
                    pid = int(stat.parent.name)
                    (self.path / "cgroup.procs").write_text(str(pid))
                    pids.append(pid)
        return pids

    def throttled_seconds(self) -> float:
        """Time the group spent throttled (cpu.stat), in seconds."""
        assert self.path is not None
        stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines())
        if "throttled_usec" in stat:
            return int(stat["throttled_usec"]) / 1e6
        return int(stat.get("throttled_time", 0)) / 1e9

    def __exit__(self, *exc: object) -> None:
        if self.path is None:
            return
        parent = self.path.parent / "cgroup.procs"
        for pid in (self.path / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):
                parent.write_text(pid)
        with contextlib.suppress(OSError):
            self.path.rmdir()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Run the PyPI tritonserver against a model repository.")
    ap.add_argument("--model-repository", default="model_repository/local")
    ap.add_argument("--http-port", type=int, default=int(os.environ.get("TRITON_HTTP_PORT", 8000)))
    ap.add_argument("--grpc-port", type=int, default=int(os.environ.get("TRITON_GRPC_PORT", 8001)))
    ap.add_argument("--metrics-port", type=int, default=int(os.environ.get("TRITON_METRICS_PORT", 8002)))
    args = ap.parse_args(argv)
    triton = LocalTriton(args.model_repository, TritonPorts(args.http_port, args.grpc_port, args.metrics_port))
    stop_on_signals()
    with triton:
        print(f"triton ready: grpc {triton.grpc_target}, http {triton.http_url}", flush=True)
        try:
            while triton.process and triton.process.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
