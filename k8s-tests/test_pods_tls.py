"""TLS on real pods (issue 25, item 4): a YoloService whose gateway serves the certificate of a
kubernetes.io/tls Secret, and whose gateway calls Triton's gRPC over TLS (verified with the
Secret's ca.crt), is Ready and detects over HTTPS only, the cluster's
Prometheus still scrapes it, a rotated Secret is served to new connections by the same pods
(no restart), Triton's rotated Secret is taken up by a rolling restart under load with no request
lost, and a Secret without its key is a GatewayReady=False TLSInvalid condition that
names the key."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import numpy as np
import pytest
import trustme
from e2e_helpers import Kube, cluster, condition, wait_for, wait_reason
from load import Load, summary
from pod_helpers import Store, cpu_sample, pods, rollout_done, wait_ready

from yolo_operator.builders.common import TRITON_GRPC
from yolo_tools.synthetic import encode, make_scene

pytestmark = pytest.mark.timeout(600)

CHEAP = {
    "triton.resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
    "gateway.resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
    "gateway.replicas": 1,
    "gateway.autoscaling": {"enabled": False},
}


def tls_secret(name: str, cert: trustme.LeafCert | None, key: bool = True) -> dict[str, Any]:
    data = {}
    if cert is not None:
        data["tls.crt"] = base64.b64encode(cert.cert_chain_pems[0].bytes()).decode()
        if key:
            data["tls.key"] = base64.b64encode(cert.private_key_pem.bytes()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "Opaque" if not key else "kubernetes.io/tls",
        "data": data,
    }


def triton_tls_secret(ca: trustme.CA, service: str, extra: str) -> dict[str, Any]:
    """Triton's Secret: a leaf for its Service's name (and `extra`, to tell leaves apart) with the CA."""
    secret = tls_secret("triton-cert", ca.issue_cert(service, extra))
    secret["data"]["ca.crt"] = base64.b64encode(ca.cert_pem.bytes()).decode()
    return secret


def presented(host: str, port: int, ca: trustme.CA, name: str) -> set[str]:
    """The DNS names in the certificate a new connection is given (verified against `ca`)."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with (
        socket.create_connection((host, port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname=name) as s,
    ):
        cert = s.getpeercert()
    assert cert is not None
    return {v for k, v in cert["subjectAltName"] if k == "DNS"}


def detect_https(host: str, port: int, ca: trustme.CA, name: str, image: bytes) -> tuple[int, bytes]:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.check_hostname = False  # the ClusterIP is dialled; the chain is still verified against the CA
    req = urllib.request.Request(
        f"https://{host}:{port}/v1/detect", data=image, method="POST", headers={"content-type": "image/jpeg"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30, context=context) as r:  # noqa: S310 - our gateway Service
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_the_gateway_serves_https_from_a_secret_rotates_it_without_a_restart_and_says_what_is_wrong(
    real_node: Kube, store: Store, pods_ns: str, in_cluster_operator: str
) -> None:
    kube, ns = real_node, pods_ns
    kube.apply(store.secret(ns))  # the sample's model comes from the cluster's S3 store
    name = f"tls.{ns}.svc.cluster.local"
    ca = trustme.CA()
    kube.apply(tls_secret("gw-cert", ca.issue_cert(name, "first.yolo.test")), "-n", ns)
    kube.apply(tls_secret("gw-cert-nokey", ca.issue_cert(name), key=False), "-n", ns)
    # Triton's gRPC over TLS too: its certificate names its Service; the gateway gets ca.crt only.
    triton_name = f"tls-triton.{ns}.svc"
    kube.apply(triton_tls_secret(ca, triton_name, "first-triton.yolo.test"), "-n", ns)
    services = {
        "tls": {
            "gateway.tls": {"secretRef": {"name": "gw-cert"}},
            "triton.tls": {"secretRef": {"name": "triton-cert"}},
        },
        "tls-nokey": {"gateway.tls": {"secretRef": {"name": "gw-cert-nokey"}}},
        "tls-nosecret": {"gateway.tls": {"secretRef": {"name": "gw-cert-missing"}}},
    }
    try:
        for svc, patch in services.items():
            kube.apply(cpu_sample(svc, **patch, **CHEAP), "-n", ns)
        wait_ready(kube, "tls", ns, timeout=300)
        service = kube.get("service", "tls", ns)
        host, port = service["spec"]["clusterIP"], service["spec"]["ports"][0]["port"]
        image = encode(make_scene(np.random.default_rng(7), 480, 360, min_objects=2, max_objects=3), ".jpg")

        def answers() -> tuple[int, bytes] | None:
            try:
                return detect_https(host, port, ca, name, image)
            except OSError:
                return None  # kube-proxy programs the Service a moment after Ready

        status, body = wait_for("the Service to answer over HTTPS", answers, timeout=30, interval=0.5)
        assert status == 200 and "detections" in json.loads(body), body[:300]
        with pytest.raises(OSError):  # clear text on the same port is dropped, never answered
            urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=5)  # noqa: S310 - our gateway Service
        assert "first.yolo.test" in presented(host, port, ca, name)

        # The cluster's Prometheus scrapes the gateway over HTTPS (prometheus.io/scheme).
        (gateway,) = pods(kube, ns, "tls", "gateway")
        query = f'up{{namespace="{ns}",pod="{gateway["metadata"]["name"]}"}}'

        def scraped() -> bool:
            url = f"{cluster.metrics.PROMETHEUS_URL}/api/v1/query?" + urllib.parse.urlencode({"query": query})
            with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - the cluster's own Prometheus
                result = json.loads(r.read())["data"]["result"]
            return bool(result) and result[0]["value"][1] == "1"

        wait_for("Prometheus to scrape the HTTPS gateway", scraped, timeout=90, interval=2)

        # Rotation: the Secret changes, the kubelet updates the volume, the same pod serves the new pair.
        t0 = time.monotonic()
        kube.apply(tls_secret("gw-cert", ca.issue_cert(name, "second.yolo.test")), "-n", ns)
        wait_for(
            "the rotated certificate to be served",
            lambda: "second.yolo.test" in presented(host, port, ca, name),
            timeout=180,
            interval=2,
        )
        print(f"\nrotation served after {time.monotonic() - t0:.0f} s")
        (after,) = pods(kube, ns, "tls", "gateway")
        assert after["metadata"]["uid"] == gateway["metadata"]["uid"], "the gateway pod was replaced"
        assert all(cs.get("restartCount", 0) == 0 for cs in after["status"]["containerStatuses"])
        status, body = detect_https(host, port, ca, name, image)
        assert status == 200, body[:300]

        # Triton reads its pair once, at start: a rotated Secret (a new leaf of the same CA, as
        # cert-manager renews) takes effect with a rolling restart, under load, with nothing lost.
        (triton,) = pods(kube, ns, "tls", "triton")
        assert "first-triton.yolo.test" in presented(triton["status"]["podIP"], TRITON_GRPC, ca, triton_name)
        kube.apply(triton_tls_secret(ca, triton_name, "second-triton.yolo.test"), "-n", ns)
        context = ssl.create_default_context()
        ca.configure_trust(context)
        context.check_hostname = False  # the ClusterIP is dialled; the chain is still verified
        with Load(f"https://{host}:{port}", [image], clients=2, rate=4, context=context) as load:
            load.wait_count(20, timeout=60)
            kube.kubectl("rollout", "restart", "deployment/tls-triton", "-n", ns)
            rollout_done(kube, ns, "tls", "triton", {triton["metadata"]["uid"]})
            n = load.count()
            load.wait_count(n + 20, timeout=60)  # a few seconds through the new pod alone
        print(f"triton rotation by rolling restart: {summary(load.requests)}")
        assert all(r.status == 200 for r in load.requests), summary(load.requests)
        (triton,) = pods(kube, ns, "tls", "triton")
        assert "second-triton.yolo.test" in presented(triton["status"]["podIP"], TRITON_GRPC, ca, triton_name)

        # A Secret without tls.key, and no Secret at all: the condition names what is missing.
        for svc, says in (("tls-nokey", "tls.key is missing"), ("tls-nosecret", "tls.crt is missing")):
            c = wait_reason(kube, svc, ns, "GatewayReady", "TLSInvalid")
            print(f"{svc}: GatewayReady {c['reason']}: {c['message']}")
            assert c["status"] == "False" and says in c["message"], c
            assert condition(kube.get("yoloservice", svc, ns), "Ready")["status"] == "False"
    finally:
        for svc in services:
            kube.kubectl("delete", "ys", svc, "-n", ns, "--wait=true", "--timeout=90s", check=False)
        for secret in ("gw-cert", "gw-cert-nokey", "triton-cert"):
            kube.kubectl("delete", "secret", secret, "-n", ns, check=False)
