"""The gateway over HTTPS, a real process in front of the real Triton: it detects, it refuses
clear text, and a rotated certificate is served to the next connection without a restart."""

from __future__ import annotations

import os
import ssl
import time
from pathlib import Path

import httpx
import trustme
from test_tls import write_pair

from yolo_tools.local_triton import LocalTriton, free_port
from yolo_tools.stack import GatewayProcess
from yolo_tools.synthetic import encode, make_scene


def presented_names(port: int, ca_file: Path) -> set[str]:
    """The DNS names of the certificate the gateway presents to a new connection."""
    import socket  # noqa: PLC0415

    context = ssl.create_default_context(cafile=str(ca_file))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname="127.0.0.1") as tls_sock,
    ):
        cert = tls_sock.getpeercert()
    assert cert is not None
    return {v for k, v in cert["subjectAltName"] if k == "DNS"}


def test_https_detects_refuses_clear_text_and_follows_a_rotation(triton: LocalTriton, tmp_path: Path) -> None:
    import numpy as np  # noqa: PLC0415

    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    files = write_pair(tmp_path / "tls", ca.issue_cert("127.0.0.1", "first.yolo.test"))
    env = {
        "YOLO_GATEWAY_TRITON_URL": triton.grpc_target,
        "YOLO_GATEWAY_MODEL_NAME": "yolo",
        "YOLO_GATEWAY_TLS_CERTFILE": str(files.certfile),
        "YOLO_GATEWAY_TLS_KEYFILE": str(files.keyfile),
        "YOLO_GATEWAY_TLS_RELOAD_S": "0.5",
    }
    port = free_port()
    jpeg = encode(make_scene(np.random.default_rng(5), 640, 480, min_objects=2, max_objects=3), ".jpg", 90)
    with GatewayProcess(port, env, log_path=tmp_path / "gw.log", ca_file=ca_file):
        with httpx.Client(verify=ssl.create_default_context(cafile=str(ca_file)), timeout=30) as client:
            r = client.post(f"https://127.0.0.1:{port}/v1/detect", content=jpeg, headers={"content-type": "image/jpeg"})
            assert r.status_code == 200, r.text
            assert r.json()["detections"], "the scene's shapes are detected over HTTPS"
        # Clear text on the same port is not served: the TLS server drops it.
        try:
            plain = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            assert plain.status_code != 200, "clear text was answered"
        except httpx.TransportError:
            pass
        assert "first.yolo.test" in presented_names(port, ca_file)

        write_pair(tmp_path / "tls", ca.issue_cert("127.0.0.1", "second.yolo.test"))
        deadline = time.monotonic() + 15
        while "second.yolo.test" not in presented_names(port, ca_file):
            assert time.monotonic() < deadline, "the rotated certificate was never served"
            time.sleep(0.2)
        with httpx.Client(verify=ssl.create_default_context(cafile=str(ca_file)), timeout=30) as client:
            r = client.post(f"https://127.0.0.1:{port}/v1/detect", content=jpeg, headers={"content-type": "image/jpeg"})
            assert r.status_code == 200, r.text
        assert "TLS certificate reloaded" in (tmp_path / "gw.log").read_text()
        assert os.path.exists(files.certfile)


def test_the_gateway_calls_a_triton_that_serves_grpc_over_tls_and_clear_text_does_not(
    single_model_repo: Path, tmp_path: Path
) -> None:
    """Triton's own gRPC SSL (the flags the operator writes), the gateway verifying it against the
    CA under the Service's name while dialling 127.0.0.1; a gateway in clear text is never ready."""
    import numpy as np  # noqa: PLC0415

    from yolo_tools.local_triton import TritonPorts  # noqa: PLC0415

    ca = trustme.CA()
    ca_file = tmp_path / "ca.crt"
    ca.cert_pem.write_to_path(str(ca_file))
    files = write_pair(tmp_path / "triton-tls", ca.issue_cert("yolo-triton.ns.svc"))
    ssl_args = ("--grpc-use-ssl=true", f"--grpc-server-cert={files.certfile}", f"--grpc-server-key={files.keyfile}")
    jpeg = encode(make_scene(np.random.default_rng(6), 640, 480, min_objects=2, max_objects=3), ".jpg", 90)
    with LocalTriton(single_model_repo, TritonPorts.free(), log_path=tmp_path / "triton.log", extra_args=ssl_args) as t:
        env = {
            "YOLO_GATEWAY_TRITON_URL": t.grpc_target,
            "YOLO_GATEWAY_MODEL_NAME": "yolo",
            "YOLO_GATEWAY_TRITON_CA_FILE": str(ca_file),
            "YOLO_GATEWAY_TRITON_TLS_NAME": "yolo-triton.ns.svc",
        }
        with GatewayProcess(free_port(), env, log_path=tmp_path / "gw.log") as gw:
            r = httpx.post(f"{gw.url}/v1/detect", content=jpeg, headers={"content-type": "image/jpeg"}, timeout=30)
            assert r.status_code == 200, r.text
            assert r.json()["detections"]
        clear = {k: v for k, v in env.items() if "TLS_NAME" not in k and "CA_FILE" not in k}
        gw = GatewayProcess(free_port(), clear, log_path=tmp_path / "gw-clear.log").start(wait_ready=False)
        try:
            time.sleep(3)
            r = httpx.get(f"{gw.url}/readyz", timeout=5)
            assert r.status_code == 503, "a clear-text gateway must not be ready in front of a TLS-only Triton"
        finally:
            gw.stop()
