"""The local stack (`make serve`) stops whole, however it is stopped: SIGTERM to its process group
(as `timeout`, systemd or a container runtime send it), during start-up too, or SIGKILL of the
stack's own process. tritonserver runs in a session of its own, so only the stack can stop it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from yolo_tools.local_triton import free_port


def _pids_with(arg: str) -> list[int]:
    """Processes whose command line contains `arg`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if arg.encode() in cmdline:
                pids.append(int(entry.name))
    return pids


def _wait_for(predicate, limit_s: float, what: str) -> None:
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {limit_s:.0f}s")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


class Stack:
    def __init__(self, tmp_path: Path) -> None:
        self.ports = {
            k: free_port() for k in ("GATEWAY_PORT", "TRITON_HTTP_PORT", "TRITON_GRPC_PORT", "TRITON_METRICS_PORT")
        }
        env = {**os.environ, **{k: str(v) for k, v in self.ports.items()}}
        cmd = [sys.executable, "-m", "yolo_tools.stack", "serve", "--log-dir", str(tmp_path)]
        self.log = open(tmp_path / "stack.out", "wb")  # noqa: SIM115 - closed in finish()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.triton_arg = f"--grpc-port={self.ports['TRITON_GRPC_PORT']}"

    def triton_pids(self) -> list[int]:
        return _pids_with(self.triton_arg)

    def gateway_ready(self) -> bool:
        return _ready(f"http://127.0.0.1:{self.ports['GATEWAY_PORT']}/readyz")

    def finish(self) -> None:
        """Assert that nothing is left: no tritonserver, no stack, every port free."""
        try:
            self.proc.wait(60)
            _wait_for(lambda: not self.triton_pids(), 30, "tritonserver gone")
            _wait_for(lambda: all(_port_free(p) for p in self.ports.values()), 30, "every port free")
        finally:
            for pid in self.triton_pids():  # never leave one behind, even when the test fails
                os.kill(pid, signal.SIGKILL)
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.log.close()


def test_sigterm_to_the_process_group_stops_tritonserver_too(tmp_path):
    stack = Stack(tmp_path)
    _wait_for(stack.gateway_ready, 120, "the stack ready")
    assert len(stack.triton_pids()) == 1
    os.killpg(stack.proc.pid, signal.SIGTERM)  # what `timeout make serve` does
    os.killpg(stack.proc.pid, signal.SIGTERM)  # and a second one, as impatient supervisors do
    stack.finish()
    assert stack.proc.returncode is not None


def test_sigterm_during_start_up_stops_tritonserver_too(tmp_path):
    stack = Stack(tmp_path)
    _wait_for(lambda: bool(stack.triton_pids()), 60, "tritonserver started")
    assert not stack.gateway_ready()
    os.killpg(stack.proc.pid, signal.SIGTERM)  # while Triton is still loading its models
    stack.finish()


def test_sigkill_of_the_stack_process_still_stops_tritonserver(tmp_path):
    stack = Stack(tmp_path)
    _wait_for(stack.gateway_ready, 120, "the stack ready")
    os.kill(stack.proc.pid, signal.SIGKILL)  # no clean-up code runs: the kernel's parent-death signal does it
    stack.finish()
