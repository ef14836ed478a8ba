"""The control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok's
fake nodes; `up` also starts the parts in the sibling modules (the real node, the registry,
NetworkPolicy enforcement, Prometheus and KEDA) where they were built, and `down` stops them all.
The package's docstring (`python -m cluster --help`) says what runs and where.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import metrics_pipeline as metrics
from . import netpol, procs, realnode, registry
from .certs import kubeconfig, make_pki
from .procs import BIN, STATE, ClusterError, binary, kubectl

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


@dataclass(frozen=True)
class Ports:
    apiserver: int = int(os.environ.get("YOLO_CLUSTER_API_PORT", 16443))
    etcd: int = int(os.environ.get("YOLO_CLUSTER_ETCD_PORT", 12379))
    etcd_peer: int = int(os.environ.get("YOLO_CLUSTER_ETCD_PEER_PORT", 12380))


# Every request the operator's ServiceAccount makes, at Metadata level (verb, resource, user, code),
# nothing else: how many API calls the operator costs (k8s-tests/scale_bench.py, the e2e tests).
OPERATOR_USER = "system:serviceaccount:yolo-system:yolo-operator"
AUDIT_LOG = STATE / "audit" / "operator.log"


def audit_flags() -> list[str]:
    AUDIT_LOG.parent.mkdir(parents=True, exist_ok=True)
    policy = AUDIT_LOG.parent / "policy.yaml"
    policy.write_text(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n"
        f"  - level: Metadata\n    users: [{OPERATOR_USER}]\n  - level: None\n"
    )
    return [
        f"--audit-policy-file={policy}",
        f"--audit-log-path={AUDIT_LOG}",
        "--audit-log-maxsize=200",
        "--audit-log-maxbackup=1",
        "--audit-log-format=json",
    ]


def gpu_node(name: str, gpus: int) -> dict:
    return node_manifest(
        name,
        {
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
            "node.kubernetes.io/instance-type": "gpu",
        },
        {"nvidia.com/gpu": str(gpus)},
        [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
    )


def cpu_node(name: str) -> dict:
    return node_manifest(name, {"node.kubernetes.io/instance-type": "cpu"}, {}, [])


def node_manifest(name: str, labels: dict, extra: dict, taints: list) -> dict:
    resources = {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "500Gi", **extra}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                **labels,
            },
        },
        "spec": {"taints": taints},
        "status": {"allocatable": resources, "capacity": resources},
    }


def node_marker() -> Path:
    return STATE / "real-node"


def _want_node() -> bool:
    """Whether this `up` adds the real node (YOLO_REAL_NODE, see realnode.mode)."""
    mode = realnode.mode()
    if mode == "off":
        return False
    lack = realnode.missing(BIN)
    if not lack:
        return True
    if mode == "on":
        raise ClusterError(f"YOLO_REAL_NODE=1 but the real node cannot run here; missing: {', '.join(lack)}")
    print(f"cluster: no real node (missing: {', '.join(lack)}); kwok nodes only", file=sys.stderr)
    return False


def metrics_marker() -> Path:
    return STATE / "metrics-pipeline"


def registry_marker() -> Path:
    return STATE / "registry" / "config.yml"


def netpol_marker() -> Path:
    return STATE / "netpol"


def components() -> tuple[str, ...]:
    node = realnode.COMPONENTS if node_marker().exists() else ()
    reg = registry.COMPONENTS if registry_marker().exists() else ()
    pol = netpol.COMPONENTS if netpol_marker().exists() else ()
    return COMPONENTS + node + reg + pol + (metrics.COMPONENTS if metrics_marker().exists() else ())


def _want(part: str, lack: list[str]) -> bool:
    """A part that runs with the real node, where built: an error when it is missing and
    YOLO_REAL_NODE=1 (its tests must run), else a line saying it is left out."""
    if lack and realnode.mode() == "on":
        raise ClusterError(f"YOLO_REAL_NODE=1 but {part} cannot run; missing: {', '.join(lack)}")
    if lack:
        print(f"cluster: no {part} (missing: {', '.join(lack)})", file=sys.stderr)
    return not lack


def _want_metrics(with_node: bool) -> bool:
    """Prometheus and KEDA scrape and scale the real node's pods."""
    return with_node and _want("Prometheus/KEDA", metrics.missing(BIN))


def _want_registry() -> bool:
    """The real node's containerd pulls from the OCI registry."""
    return _want("registry", registry.missing(BIN))


def _want_netpol(with_node: bool) -> bool:
    """NetworkPolicies are enforced on the real node's pods."""
    return with_node and _want("NetworkPolicy enforcement", netpol.missing(BIN))


def up(gpu_nodes: int = 2, cpu_nodes: int = 1, gpus_per_node: int = 4) -> Path:
    if status(quiet=True):
        print(f"cluster already running: {STATE / 'kubeconfig'}")
        return STATE / "kubeconfig"
    down(quiet=True)
    try:
        return _up(gpu_nodes, cpu_nodes, gpus_per_node)
    except BaseException as exc:  # a half-started cluster is stopped and cleaned, whatever failed
        down(quiet=True)
        if isinstance(exc, Exception) and not isinstance(exc, ClusterError):
            raise ClusterError(f"{type(exc).__name__}: {exc}") from exc
        raise


def _up(gpu_nodes: int, cpu_nodes: int, gpus_per_node: int) -> Path:
    ports = Ports()
    start = time.monotonic()
    with_node = _want_node()
    node = realnode.RealNode() if with_node else None
    pipeline = metrics.Metrics() if _want_metrics(with_node) else None
    policies = netpol.NetPol() if _want_netpol(with_node) else None
    pki = STATE / "pki"
    make_pki(pki, server_ips=("127.0.0.1", realnode.KUBERNETES_SERVICE_IP, realnode.NODE_IP))
    admin = kubeconfig(STATE / "kubeconfig", pki, "admin", ports.apiserver)
    cm_cfg = kubeconfig(STATE / "controller-manager.kubeconfig", pki, "controller-manager", ports.apiserver)
    sched_cfg = kubeconfig(STATE / "scheduler.kubeconfig", pki, "scheduler", ports.apiserver)
    kwok_cfg = kubeconfig(STATE / "kwok.kubeconfig", pki, "kwok", ports.apiserver)
    if node:
        node_marker().write_text(realnode.NODE_NAME + "\n")
        node.certs()
        node.network()
        node.start_containerd()  # starts while etcd and the apiserver do
    oci = registry.Registry(node.dir / "registry.d") if node and _want_registry() else None
    if oci:
        oci.start()

    etcd_url = f"http://127.0.0.1:{ports.etcd}"
    procs.start(
        "etcd",
        [
            binary("etcd"),
            f"--data-dir={STATE / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{ports.etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{ports.etcd_peer}",
            f"--initial-cluster=default=http://127.0.0.1:{ports.etcd_peer}",
            "--unsafe-no-fsync=true",
            "--quota-backend-bytes=2147483648",
            "--log-level=warn",
        ],
    )
    procs.wait_for("etcd", lambda: procs.run(["curl", "-sf", f"{etcd_url}/health"]) != "", name="etcd")

    if node:
        # Pods reach the apiserver on the node IP (through the kubernetes Service); the host keeps 127.0.0.1.
        address = [
            "--bind-address=0.0.0.0",
            f"--advertise-address={realnode.NODE_IP}",
            "--endpoint-reconciler-type=lease",
        ]
    else:
        address = ["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none"]
    procs.start(
        "kube-apiserver",
        [
            binary("kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            *address,
            *audit_flags(),
            f"--secure-port={ports.apiserver}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--api-audiences=https://kubernetes.default.svc.cluster.local",
            "--authorization-mode=Node,RBAC",
            f"--service-cluster-ip-range={realnode.SERVICE_CIDR}",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
            "--allow-privileged=false",
            # Aggregated APIs (KEDA's external metrics): the front proxy, and routing to the Service's endpoints.
            f"--requestheader-client-ca-file={pki / 'ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
            "--enable-aggregator-routing=true",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            "--v=1",
        ],
    )
    if node:
        node.wait_containerd()
    procs.wait_for(
        "kube-apiserver /readyz",
        lambda: kubectl("get", "--raw=/readyz", kubeconfig_path=admin).strip() == "ok",
        timeout=120,
        name="kube-apiserver",
    )

    procs.start(
        "kube-controller-manager",
        [
            binary("kube-controller-manager"),
            f"--kubeconfig={cm_cfg}",
            f"--authentication-kubeconfig={cm_cfg}",
            f"--authorization-kubeconfig={cm_cfg}",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            "--controllers=deployment-controller,replicaset-controller,garbage-collector-controller,namespace-controller,"
            "serviceaccount-controller,serviceaccount-token-controller,horizontal-pod-autoscaler-controller,"
            "disruption-controller,endpoints-controller,endpointslice-controller,pod-garbage-collector-controller,"
            "node-lifecycle-controller,root-ca-certificate-publisher-controller,job-controller",
            "--horizontal-pod-autoscaler-sync-period=2s",
            "--horizontal-pod-autoscaler-downscale-stabilization=10s",
            "--concurrent-deployment-syncs=10",
            "--concurrent-gc-syncs=20",
            "--v=1",
        ],
    )
    procs.start(
        "kube-scheduler",
        [
            binary("kube-scheduler"),
            f"--kubeconfig={sched_cfg}",
            f"--authentication-kubeconfig={sched_cfg}",
            f"--authorization-kubeconfig={sched_cfg}",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--leader-elect=false",
            "--v=1",
        ],
    )
    procs.start(
        "kwok",
        [
            binary("kwok"),
            f"--kubeconfig={kwok_cfg}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--node-ip=127.0.0.1",
            f"--cidr={realnode.KWOK_POD_CIDR}",
            "--node-lease-duration-seconds=40",
            "--server-address=127.0.0.1:0",
        ],
    )
    if policies:  # before the kubelet runs a pod: no pod ever runs unpoliced
        netpol_marker().write_text("kube-network-policies\n")
        policies.start(ports.apiserver)
        policies.wait_ready()
    if node:
        node.start_node(ports.apiserver)
    nodes = [gpu_node(f"gpu-node-{i}", gpus_per_node) for i in range(gpu_nodes)] + [
        cpu_node(f"cpu-node-{i}") for i in range(cpu_nodes)
    ]
    kubectl(
        "apply",
        "-f",
        "-",
        kubeconfig_path=admin,
        input_text=json.dumps({"apiVersion": "v1", "kind": "List", "items": nodes}),
    )

    def nodes_ready() -> bool:
        out = json.loads(kubectl("get", "nodes", "-o", "json", kubeconfig_path=admin))
        ready = [
            n
            for n in out["items"]
            if n["metadata"]["name"] in {x["metadata"]["name"] for x in nodes}
            and any(c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", []))
            and not any(t["key"].startswith("node.kubernetes.io/") for t in n.get("spec", {}).get("taints", []))
        ]
        return len(ready) == len(nodes)

    procs.wait_for(
        "kwok nodes Ready and untainted by the node lifecycle controller", nodes_ready, timeout=90, name="kwok"
    )
    if node:
        node.wait_ready()
    if oci:
        oci.wait_ready()
    if pipeline:
        metrics_marker().write_text("prometheus keda\n")
        pipeline.start()
        pipeline.wait_ready()
    procs.wait_for(
        "the default ServiceAccount",
        lambda: bool(kubectl("get", "serviceaccount", "default", "-o", "name", kubeconfig_path=admin)),
        timeout=60,
        name="kube-controller-manager",
    )
    for name in components():
        if not procs.alive(int(procs.pidfile(name).read_text())):
            raise ClusterError(f"{name} is not running; see {STATE / 'logs' / (name + '.log')}")
    extra = f" + real node {realnode.NODE_NAME} ({realnode.NODE_IP})" if node else ""
    extra += f" + registry {registry.REGISTRY}" if oci else ""
    extra += " + NetworkPolicy enforcement" if policies else ""
    extra += f" + Prometheus ({metrics.PROMETHEUS_URL}) and KEDA" if pipeline else ""
    print(f"cluster up in {time.monotonic() - start:.1f}s: {len(nodes)} kwok nodes{extra}; KUBECONFIG={admin}")
    return admin


def _node_traces() -> bool:
    return (
        node_marker().exists()
        or any(Path("/sys/class/net", link).exists() for link in (realnode.DUMMY, realnode.BRIDGE))
        or (realnode.RUN / "containerd").exists()
        or (STATE / "node" / "sysctl.orig.json").exists()
    )


def down(quiet: bool = False) -> None:
    """Stop every component (SIGTERM, then SIGKILL) and remove the state, keeping nothing running.

    With the real node: first the controllers (no new pods), then the node's pods are deleted while
    the kubelet still runs, then the kubelet, kube-proxy, CoreDNS and the control plane stop, and
    realnode.teardown() removes what is left (containers, mounts, links, iptables, cgroups)."""
    node = realnode.RealNode() if _node_traces() else None
    for name in ("kwok", "kube-scheduler", "kube-controller-manager", *metrics.COMPONENTS):
        procs.stop(name)
    metrics_marker().unlink(missing_ok=True)
    if node:
        if (
            procs.pidfile("kubelet").exists()
            and procs.pidfile("kube-apiserver").exists()
            and procs.alive(int(procs.pidfile("kubelet").read_text()))
        ):
            node.drain()
        for name in ("kubelet", "kube-proxy", "coredns"):
            procs.stop(name)
    for name in ("kube-apiserver", "etcd", *registry.COMPONENTS, *netpol.COMPONENTS):
        procs.stop(name)
    netpol_marker().unlink(missing_ok=True)
    if node:
        node.teardown()
        node_marker().unlink(missing_ok=True)
        for left in node.leftovers():
            print(f"cluster down: left behind: {left}", file=sys.stderr)
    for sub in ("etcd", "pids", "registry"):
        shutil.rmtree(STATE / sub, ignore_errors=True)
    if not quiet:
        print("cluster down")


def status(quiet: bool = False) -> bool:
    running = {}
    for name in components():
        pf = procs.pidfile(name)
        running[name] = pf.exists() and procs.alive(int(pf.read_text()))
    if not quiet:
        for name, ok in running.items():
            print(f"{name:<24} {'running' if ok else 'stopped'}")
        if node_marker().exists():
            if metrics_marker().exists():
                print(
                    f"metrics: Prometheus {metrics.PROMETHEUS_URL}, KEDA (external metrics API), ScaledObjects in any namespace"
                )
            if registry_marker().exists():
                print(
                    f"registry: {registry.REGISTRY}, user {registry.USER}, password in {STATE / 'registry' / 'credentials.json'} (`make release` pushes there by default)"
                )
            print(
                f"real node {realnode.NODE_NAME}: node IP {realnode.NODE_IP}, pods {realnode.POD_CIDR}, Services {realnode.SERVICE_CIDR}, DNS {realnode.DNS_IP}, containerd {realnode.CONTAINERD_SOCK}"
            )
        elif not all(running.values()) and os.geteuid() == 0 and _node_traces():
            print("real node: traces of an earlier run are left; `down` removes them")
    return all(running.values())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m cluster",
        description=sys.modules[__package__].__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("command", choices=["up", "down", "status"])
    ap.add_argument("--gpu-nodes", type=int, default=2)
    ap.add_argument("--cpu-nodes", type=int, default=1)
    args = ap.parse_args(argv)
    try:
        if args.command == "up":
            up(args.gpu_nodes, args.cpu_nodes)
        elif args.command == "down":
            down()
        else:
            sys.exit(0 if status() else 1)
    except ClusterError as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        if args.command == "up":
            down(quiet=True)
        sys.exit(1)
