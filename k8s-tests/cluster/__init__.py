"""The local test cluster: a real Kubernetes control plane on loopback, built from Go modules (see build.sh).

    PYTHONPATH=k8s-tests python -m cluster up       # make cluster-up
    PYTHONPATH=k8s-tests python -m cluster down     # make cluster-down
    PYTHONPATH=k8s-tests python -m cluster status

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

Modules: `procs` (state and binaries, starting, stopping and waiting for components), `certs`
(the CA, certificates, kubeconfigs), `controlplane` (up, down, status), `realnode` (containerd,
kubelet, kube-proxy, CoreDNS, the node's network and teardown), `registry` (the OCI registry),
`netpol` (NetworkPolicy enforcement), `metrics_pipeline` (Prometheus, KEDA) and `podsd` (a
script the pipeline runs). The tests and scripts in k8s-tests/ `import cluster`: k8s-tests/ is on
their path as their own folder (a script's, or pytest's rootdir-relative conftest folder).
"""

from __future__ import annotations

from . import metrics_pipeline as metrics
from . import netpol, realnode, registry
from .certs import kubeconfig
from .controlplane import (
    AUDIT_LOG,
    OPERATOR_USER,
    components,
    cpu_node,
    down,
    gpu_node,
    metrics_marker,
    netpol_marker,
    node_manifest,
    node_marker,
    registry_marker,
    status,
    up,
)
from .procs import BIN, ROOT, STATE, ClusterError, binary, kubectl

__all__ = [
    "AUDIT_LOG",
    "BIN",
    "OPERATOR_USER",
    "ROOT",
    "STATE",
    "ClusterError",
    "binary",
    "components",
    "cpu_node",
    "down",
    "gpu_node",
    "kubeconfig",
    "kubectl",
    "metrics",
    "metrics_marker",
    "netpol",
    "netpol_marker",
    "node_manifest",
    "node_marker",
    "realnode",
    "registry",
    "registry_marker",
    "status",
    "up",
]
