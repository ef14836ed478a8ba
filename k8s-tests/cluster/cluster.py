"""A real Kubernetes control plane on loopback, built from Go modules (see build.sh).

    python k8s-tests/cluster/cluster.py up      # make cluster-up
    python k8s-tests/cluster/cluster.py down    # make cluster-down
    python k8s-tests/cluster/cluster.py status

etcd, kube-apiserver (RBAC, generated certificates and service-account keys),
kube-controller-manager (deployment, replicaset, garbage collector, namespace,
service accounts, HPA with short sync periods, disruption, endpoints),
kube-scheduler, and kwok, which runs fake nodes: GPU nodes that advertise
`nvidia.com/gpu` (tainted, as GPU pools are) and CPU-only nodes. State lives in
`.cluster/` (git-ignored); the admin kubeconfig is `.cluster/kubeconfig`
(https://127.0.0.1:16443).

Where it can (root, and build.sh built the node's parts), a real node joins too:
containerd, kubelet, kube-proxy and CoreDNS on this machine (see realnode.py). Then the
apiserver also listens on the node IP 198.18.255.1, the address it advertises to pods
(the `kubernetes` Service, 198.19.0.1:443). YOLO_REAL_NODE=0 leaves the node out; =1 makes it
an error when the node cannot run. Without the node everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import metrics_pipeline as metrics
import netpol
import realnode
import registry

ROOT = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("YOLO_CLUSTER_DIR", ROOT / ".cluster"))
BIN = Path(os.environ.get("YOLO_CLUSTER_BIN", ROOT / ".bin"))
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
PKI_REV = "3"  # bump when the certificates change (names, SANs): the next `up` makes new ones


class ClusterError(RuntimeError):
    pass


@dataclass(frozen=True)
class Ports:
    apiserver: int = int(os.environ.get("YOLO_CLUSTER_API_PORT", 16443))
    etcd: int = int(os.environ.get("YOLO_CLUSTER_ETCD_PORT", 12379))
    etcd_peer: int = int(os.environ.get("YOLO_CLUSTER_ETCD_PEER_PORT", 12380))


def binary(name: str) -> str:
    path = BIN / name
    if not path.exists():
        raise ClusterError(
            f"{path} is missing: run `make cluster-build` (needs Go; builds from the Go module proxy) or set YOLO_K8S_BIN"
        )
    return str(path)


def _run(cmd: list[str], **kw: object) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout  # type: ignore[call-overload]  # **kw holds only subprocess.run's own keywords


# --------------------------------------------------------------------------- PKI


def _cert(
    pki: Path, name: str, subject: str, ca: bool = False, server_ips: tuple[str, ...] = (), dns: tuple[str, ...] = ()
) -> None:
    key, crt = pki / f"{name}.key", pki / f"{name}.crt"
    if crt.exists():
        return
    _run(["openssl", "genrsa", "-out", str(key), "2048"])
    if ca:
        _run(
            [
                "openssl",
                "req",
                "-x509",
                "-new",
                "-nodes",
                "-key",
                str(key),
                "-sha256",
                "-days",
                "3650",
                "-subj",
                subject,
                "-out",
                str(crt),
            ]
        )
        return
    ext = pki / f"{name}.ext"
    lines = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment"]
    if server_ips or dns:
        alt = [f"IP:{ip}" for ip in server_ips] + [f"DNS:{d}" for d in dns]
        lines += ["extendedKeyUsage=serverAuth,clientAuth", "subjectAltName=" + ",".join(alt)]
    else:
        lines.append("extendedKeyUsage=clientAuth")
    ext.write_text("\n".join(lines) + "\n")
    csr = pki / f"{name}.csr"
    _run(["openssl", "req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr)])
    _run(
        [
            "openssl",
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(pki / "ca.crt"),
            "-CAkey",
            str(pki / "ca.key"),
            "-CAcreateserial",
            "-days",
            "3650",
            "-sha256",
            "-extfile",
            str(ext),
            "-out",
            str(crt),
        ]
    )


def make_pki(pki: Path) -> None:
    rev = pki / "rev"
    if pki.exists() and (not rev.exists() or rev.read_text().strip() != PKI_REV):
        shutil.rmtree(pki)
    pki.mkdir(parents=True, exist_ok=True)
    rev.write_text(PKI_REV + "\n")
    _cert(pki, "ca", "/CN=yolo-operator-test-ca", ca=True)
    _cert(
        pki,
        "apiserver",
        "/CN=kube-apiserver",
        server_ips=("127.0.0.1", realnode.KUBERNETES_SERVICE_IP, realnode.NODE_IP),
        dns=(
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ),
    )
    _cert(pki, "apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client")
    _cert(pki, "admin", "/O=system:masters/CN=kubernetes-admin")
    _cert(pki, "controller-manager", "/CN=system:kube-controller-manager")
    _cert(pki, "scheduler", "/CN=system:kube-scheduler")
    _cert(pki, "kwok", "/O=system:masters/CN=kwok")
    _cert(pki, "front-proxy-client", "/CN=front-proxy-client")  # the apiserver's client cert toward aggregated APIs
    if not (pki / "sa.key").exists():
        _run(["openssl", "genrsa", "-out", str(pki / "sa.key"), "2048"])
        _run(["openssl", "rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub")])


def kubeconfig(path: Path, pki: Path, user: str, port: int) -> Path:
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "yolo-local",
                "cluster": {"server": f"https://127.0.0.1:{port}", "certificate-authority": str(pki / "ca.crt")},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate": str(pki / f"{user}.crt"), "client-key": str(pki / f"{user}.key")},
            }
        ],
        "contexts": [{"name": "yolo-local", "context": {"cluster": "yolo-local", "user": user}}],
        "current-context": "yolo-local",
    }
    path.write_text(json.dumps(cfg, indent=2))
    return path


# --------------------------------------------------------------------------- processes


def _pidfile(name: str) -> Path:
    return STATE / "pids" / f"{name}.pid"


def _alive(pid: int) -> bool:
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


def _start(name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
    (STATE / "pids").mkdir(parents=True, exist_ok=True)
    (STATE / "logs").mkdir(parents=True, exist_ok=True)
    log = open(STATE / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=env
    )
    _pidfile(name).write_text(str(proc.pid))


def _stop(name: str, grace: float = 10) -> None:
    """SIGTERM the component's process group, SIGKILL it after `grace` seconds."""
    pf = _pidfile(name)
    if not pf.exists():
        return
    pid = int(pf.read_text())
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pf.unlink(missing_ok=True)
        return
    deadline = time.monotonic() + grace
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    pf.unlink(missing_ok=True)


def _wait(what: str, check, timeout: float = 90.0, name: str | None = None) -> None:  # type: ignore[no-untyped-def]  # check is any zero-argument callable
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if name:
            pid = int(_pidfile(name).read_text())
            if not _alive(pid):
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
    return _node(
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
    return _node(name, {"node.kubernetes.io/instance-type": "cpu"}, {}, [])


def _node(name: str, labels: dict, extra: dict, taints: list) -> dict:
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


def _node_marker() -> Path:
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


def _metrics_marker() -> Path:
    return STATE / "metrics-pipeline"


def _registry_marker() -> Path:
    return STATE / "registry" / "config.yml"


def _netpol_marker() -> Path:
    return STATE / "netpol"


def components() -> tuple[str, ...]:
    node = realnode.COMPONENTS if _node_marker().exists() else ()
    reg = registry.COMPONENTS if _registry_marker().exists() else ()
    pol = netpol.COMPONENTS if _netpol_marker().exists() else ()
    return COMPONENTS + node + reg + pol + (metrics.COMPONENTS if _metrics_marker().exists() else ())


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
    node = realnode.RealNode(sys.modules[__name__]) if with_node else None
    pipeline = metrics.Metrics(sys.modules[__name__]) if _want_metrics(with_node) else None
    policies = netpol.NetPol(sys.modules[__name__]) if _want_netpol(with_node) else None
    pki = STATE / "pki"
    make_pki(pki)
    admin = kubeconfig(STATE / "kubeconfig", pki, "admin", ports.apiserver)
    cm_cfg = kubeconfig(STATE / "controller-manager.kubeconfig", pki, "controller-manager", ports.apiserver)
    sched_cfg = kubeconfig(STATE / "scheduler.kubeconfig", pki, "scheduler", ports.apiserver)
    kwok_cfg = kubeconfig(STATE / "kwok.kubeconfig", pki, "kwok", ports.apiserver)
    if node:
        _node_marker().write_text(realnode.NODE_NAME + "\n")
        node.certs()
        node.network()
        node.start_containerd()  # starts while etcd and the apiserver do
    oci = registry.Registry(sys.modules[__name__], node.dir / "registry.d") if node and _want_registry() else None
    if oci:
        oci.start()

    etcd_url = f"http://127.0.0.1:{ports.etcd}"
    _start(
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
    _wait("etcd", lambda: _run(["curl", "-sf", f"{etcd_url}/health"]) != "", name="etcd")

    if node:
        # Pods reach the apiserver on the node IP (through the kubernetes Service); the host keeps 127.0.0.1.
        address = [
            "--bind-address=0.0.0.0",
            f"--advertise-address={realnode.NODE_IP}",
            "--endpoint-reconciler-type=lease",
        ]
    else:
        address = ["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none"]
    _start(
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
    _wait(
        "kube-apiserver /readyz",
        lambda: kubectl("get", "--raw=/readyz", kubeconfig_path=admin).strip() == "ok",
        timeout=120,
        name="kube-apiserver",
    )

    _start(
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
    _start(
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
    _start(
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
        _netpol_marker().write_text("kube-network-policies\n")
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

    _wait("kwok nodes Ready and untainted by the node lifecycle controller", nodes_ready, timeout=90, name="kwok")
    if node:
        node.wait_ready()
    if oci:
        oci.wait_ready()
    if pipeline:
        _metrics_marker().write_text("prometheus keda\n")
        pipeline.start()
        pipeline.wait_ready()
    _wait(
        "the default ServiceAccount",
        lambda: bool(kubectl("get", "serviceaccount", "default", "-o", "name", kubeconfig_path=admin)),
        timeout=60,
        name="kube-controller-manager",
    )
    for name in components():
        if not _alive(int(_pidfile(name).read_text())):
            raise ClusterError(f"{name} is not running; see {STATE / 'logs' / (name + '.log')}")
    extra = f" + real node {realnode.NODE_NAME} ({realnode.NODE_IP})" if node else ""
    extra += f" + registry {registry.REGISTRY}" if oci else ""
    extra += " + NetworkPolicy enforcement" if policies else ""
    extra += f" + Prometheus ({metrics.PROMETHEUS_URL}) and KEDA" if pipeline else ""
    print(f"cluster up in {time.monotonic() - start:.1f}s: {len(nodes)} kwok nodes{extra}; KUBECONFIG={admin}")
    return admin


def _node_traces() -> bool:
    return (
        _node_marker().exists()
        or any(Path("/sys/class/net", link).exists() for link in (realnode.DUMMY, realnode.BRIDGE))
        or (realnode.RUN / "containerd").exists()
        or (STATE / "node" / "sysctl.orig.json").exists()
    )


def down(quiet: bool = False) -> None:
    """Stop every component (SIGTERM, then SIGKILL) and remove the state, keeping nothing running.

    With the real node: first the controllers (no new pods), then the node's pods are deleted while
    the kubelet still runs, then the kubelet, kube-proxy, CoreDNS and the control plane stop, and
    realnode.teardown() removes what is left (containers, mounts, links, iptables, cgroups)."""
    node = realnode.RealNode(sys.modules[__name__]) if _node_traces() else None
    for name in ("kwok", "kube-scheduler", "kube-controller-manager", *metrics.COMPONENTS):
        _stop(name)
    _metrics_marker().unlink(missing_ok=True)
    if node:
        if (
            _pidfile("kubelet").exists()
            and _pidfile("kube-apiserver").exists()
            and _alive(int(_pidfile("kubelet").read_text()))
        ):
            node.drain()
        for name in ("kubelet", "kube-proxy", "coredns"):
            _stop(name)
    for name in ("kube-apiserver", "etcd", *registry.COMPONENTS, *netpol.COMPONENTS):
        _stop(name)
    _netpol_marker().unlink(missing_ok=True)
    if node:
        node.teardown()
        _node_marker().unlink(missing_ok=True)
        for left in node.leftovers():
            print(f"cluster down: left behind: {left}", file=sys.stderr)
    for sub in ("etcd", "pids", "registry"):
        shutil.rmtree(STATE / sub, ignore_errors=True)
    if not quiet:
        print("cluster down")


def status(quiet: bool = False) -> bool:
    running = {}
    for name in components():
        pf = _pidfile(name)
        running[name] = pf.exists() and _alive(int(pf.read_text()))
    if not quiet:
        for name, ok in running.items():
            print(f"{name:<24} {'running' if ok else 'stopped'}")
        if _node_marker().exists():
            if _metrics_marker().exists():
                print(
                    f"metrics: Prometheus {metrics.PROMETHEUS_URL}, KEDA (external metrics API), ScaledObjects in any namespace"
                )
            if _registry_marker().exists():
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
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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


if __name__ == "__main__":
    main()
