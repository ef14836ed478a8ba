"""The real node (kubelet + containerd + kube-proxy + CoreDNS on this machine) runs real pods:
a static HTTP server built from scratch answers the host on its pod IP and through a ClusterIP
Service, another pod finds it by its cluster DNS name, pods reach the apiserver through the
`kubernetes` Service, `kubectl logs` and `exec` work, and a namespace that enforces the
restricted Pod Security Standard admits these pods (and refuses a root one)."""

from __future__ import annotations

import ipaddress
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from cluster import realnode
from e2e_helpers import Kube, cluster, run, wait_for

NS = "real-node"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def echo_image() -> str:
    return (cluster.BIN / "node-images" / "echo.ref").read_text().strip()


def pod(
    name: str, args: list[str], labels: dict[str, str] | None = None, restart: str = "Always", probe: bool = False
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "echo",
        "image": echo_image(),
        "imagePullPolicy": "Never",
        "args": args,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
    }
    if probe:
        container["ports"] = [{"containerPort": 8080, "name": "http"}]
        container["readinessProbe"] = {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 1}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels or {}},
        "spec": {
            "nodeSelector": {realnode.NODE_LABEL: "true"},
            "tolerations": [{"key": realnode.NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
            "restartPolicy": restart,
            "terminationGracePeriodSeconds": 2,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65534,
                "runAsGroup": 65534,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
        },
    }


def http_get(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:  # noqa: S310 - a pod or Service of our own cluster
            return json.loads(r.read())
    except OSError:
        return None


def finished(kube: Kube, name: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        p = kube.get("pod", name, NS)
        return p if p and p["status"].get("phase") in ("Succeeded", "Failed") else None

    p = wait_for(f"pod {name} to finish", check, timeout=90)
    assert p["status"]["phase"] == "Succeeded", (
        kube.kubectl("logs", name, "-n", NS, check=False).stdout + json.dumps(p["status"])[-2000:]
    )
    return p


@pytest.fixture(scope="module")
def ns(kube: Kube) -> Iterator[str]:
    if not cluster.node_marker().exists():
        pytest.skip(f"this cluster has no real node ({', '.join(realnode.missing(cluster.BIN)) or 'YOLO_REAL_NODE=0'})")
    # the node's own test server, imported as its pause image is (the project's images come from the registry)
    run(
        "ctr",
        "-a",
        str(realnode.CONTAINERD_SOCK),
        "-n",
        "k8s.io",
        "images",
        "import",
        str((cluster.BIN / "node-images" / "echo.oci.tar").resolve()),
    )
    if kube.get("namespace", NS):  # from a run that was interrupted: start clean
        kube.kubectl("delete", "namespace", NS, "--wait=false")
        wait_for(
            f"the old namespace {NS} to be gone", lambda: kube.get("namespace", NS) is None, timeout=120, interval=1
        )
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": NS,
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                },
            },
        }
    )
    wait_for("kube-root-ca.crt in the namespace", lambda: kube.get("configmap", "kube-root-ca.crt", NS), timeout=30)
    wait_for("the default ServiceAccount", lambda: kube.get("serviceaccount", "default", NS), timeout=30)
    yield NS
    kube.kubectl("delete", "namespace", NS, "--wait=false", check=False)
    wait_for(f"namespace {NS} to be gone", lambda: kube.get("namespace", NS) is None, timeout=120, interval=1)

    def nothing_runs() -> bool:  # the kubelet removes the stopped containers' records later (its GC runs each minute)
        ctr = ("ctr", "-a", str(realnode.CONTAINERD_SOCK), "-n", "k8s.io")
        ours = set(run(*ctr, "containers", "ls", "-q", f"labels.io.kubernetes.pod.namespace=={NS}").stdout.split())
        return not ours & set(run(*ctr, "tasks", "ls", "-q").stdout.split())

    wait_for("the namespace's containers to stop", nothing_runs, timeout=60, interval=1)


@pytest.fixture(scope="module")
def server(kube: Kube, ns: str) -> dict[str, Any]:
    kube.apply(pod("echo", ["serve", ":8080"], labels={"app": "echo"}, probe=True))
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {"selector": {"app": "echo"}, "ports": [{"port": 80, "targetPort": 8080}]},
        }
    )

    def ready() -> dict[str, Any] | None:
        p = kube.get("pod", "echo", ns)
        ok = (
            p
            and p["status"].get("phase") == "Running"
            and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
        )
        return p if ok else None

    return wait_for("the echo pod Running and Ready on the real node", ready, timeout=120, interval=1)


def test_real_node_is_ready(kube: Kube):
    if not cluster.node_marker().exists():
        pytest.skip("this cluster has no real node")
    node = kube.get("node", realnode.NODE_NAME)
    assert node["metadata"]["labels"][realnode.NODE_LABEL] == "true"
    assert {"key": realnode.NODE_LABEL, "value": "true", "effect": "NoSchedule"} in node["spec"]["taints"]
    assert "kwok.x-k8s.io/node" not in node["metadata"].get("annotations", {}), "kwok must not manage the real node"
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
    assert {"type": "InternalIP", "address": realnode.NODE_IP} in node["status"]["addresses"]
    info = node["status"]["nodeInfo"]
    assert info["kubeletVersion"] == "v1.33.13" and info["containerRuntimeVersion"].startswith("containerd://")
    svc = kube.get("service", "kubernetes", "default")
    assert svc["spec"]["clusterIP"] == realnode.KUBERNETES_SERVICE_IP


def test_pod_answers_the_host_on_its_pod_ip(kube: Kube, server: dict[str, Any]):
    assert server["spec"]["nodeName"] == realnode.NODE_NAME
    ip = server["status"]["podIP"]
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(realnode.POD_CIDR)
    body = wait_for("the pod to answer on its IP", lambda: http_get(f"http://{ip}:8080/hello"), timeout=30)
    assert body["pod"] == "echo" and body["path"] == "/hello"


def test_cluster_ip_service_answers_the_host(kube: Kube, server: dict[str, Any]):
    ip = kube.get("service", "web", NS)["spec"]["clusterIP"]
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(realnode.SERVICE_CIDR)
    body = wait_for(
        "the Service's ClusterIP to answer (kube-proxy)", lambda: http_get(f"http://{ip}/via-service"), timeout=60
    )
    assert body["pod"] == "echo" and body["path"] == "/via-service"


def test_a_pod_finds_the_service_by_its_dns_name(kube: Kube, server: dict[str, Any]):
    name = f"web.{NS}.svc.cluster.local"
    kube.apply(pod("client", ["get", f"http://{name}/from-client"], restart="Never"))
    finished(kube, "client")
    out = kube.kubectl("logs", "client", "-n", NS).stdout
    assert json.loads(out)["pod"] == "echo", out
    # and the short name, through the pod's search path, by exec into the server
    cluster_ip = kube.get("service", "web", NS)["spec"]["clusterIP"]
    resolved = kube.kubectl("exec", "echo", "-n", NS, "--", "/yolo-echo", "resolve", "web").stdout.split()
    assert resolved == [cluster_ip]


def test_a_pod_reaches_the_apiserver_through_the_kubernetes_service(kube: Kube, ns: str):
    kube.apply(
        pod(
            "apiserver-client",
            ["get", "https://kubernetes.default.svc/version", f"{SA_DIR}/ca.crt", f"{SA_DIR}/token"],
            restart="Never",
        )
    )
    finished(kube, "apiserver-client")
    version = json.loads(kube.kubectl("logs", "apiserver-client", "-n", NS).stdout)
    assert version["gitVersion"] == "v1.33.13"


def test_kubectl_logs_show_the_requests(kube: Kube, server: dict[str, Any]):
    assert http_get(f"http://{server['status']['podIP']}:8080/for-the-log")

    def logged() -> str | None:
        out = kube.kubectl("logs", "echo", "-n", NS).stdout
        return out if "request GET /for-the-log" in out else None

    logs = wait_for("the request in the pod's log", logged, timeout=30)
    assert "serving on :8080 as echo" in logs


def test_restricted_namespace_refuses_a_root_pod(kube: Kube, ns: str):
    bad = pod("root", ["serve"])
    del bad["spec"]["securityContext"]
    bad["spec"]["containers"][0]["securityContext"] = {"allowPrivilegeEscalation": True}
    r = kube.apply(bad, "--dry-run=server", check=False)
    assert r.returncode != 0 and "violates PodSecurity" in r.stderr, r.stderr
