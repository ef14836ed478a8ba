"""NetworkPolicy enforcement on the real node: kind's kube-network-policies, built by build.sh.

    kube-network-policies   the upstream controller (informers on pods, namespaces and
                            NetworkPolicies; the policy evaluation; nfqueue verdicts) as a host
                            process, user system:kube-network-policies with its own ClusterRole.

How packets reach it. Upstream loads nftables rules that queue new connections of pods under a
policy. This kernel has no nft_queue (CONFIG_NFT_QUEUE unset: `nft ... queue` answers "No such
file or directory"), so those rules fail to load (the engine logs it at each sync) and the same
hand-over is made here with iptables' NFQUEUE target (xt, through nft_compat, which the kernel
has), in mangle chain YOLO-NETPOL from POSTROUTING, mirroring upstream's rules: established and
related packets, DNS, and packets of the host's root processes (the kubelet's probes, the host's
Prometheus, the tests) are not queued; every other new connection to or from the pod range goes to
the engine, which accepts or drops it. Pod-to-pod packets on the node's bridge pass these hooks
only with bridge-nf-call-iptables=1, which start() requires.

`--queue-bypass` (and the engine's FailOpen) let packets through while nothing reads the queue, so
start-up and teardown never cut the node's traffic; a dead engine shows as stopped in `cluster
status`. realnode's teardown removes the YOLO-* chains.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from . import certs, procs, realnode

COMPONENTS = ("kube-network-policies",)
QUEUE = 100
CHAIN = "YOLO-NETPOL"
USER = "system:kube-network-policies"
BRIDGE_NF = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")


def missing(bin_dir: Path) -> list[str]:
    return [] if (bin_dir / "kube-network-policies").exists() else [str(bin_dir / "kube-network-policies")]


def rules(pod_cidr: str = realnode.POD_CIDR, queue: int = QUEUE) -> list[list[str]]:
    """The chain's rules, in order (iptables arguments after `-A CHAIN`)."""
    to_engine = ["-j", "NFQUEUE", "--queue-num", str(queue), "--queue-bypass"]
    return [
        ["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"],
        ["-p", "udp", "--dport", "53", "-j", "RETURN"],
        ["-p", "tcp", "--dport", "53", "-j", "RETURN"],
        ["-m", "owner", "--uid-owner", "0", "-j", "RETURN"],
        ["-d", pod_cidr, *to_engine],
        ["-s", pod_cidr, *to_engine],
    ]


def rbac() -> list[dict]:
    """What the engine reads (upstream's DaemonSet ClusterRole), bound to its user."""
    name = "yolo-kube-network-policies"
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": [
                {"apiGroups": [""], "resources": ["pods", "namespaces", "nodes"], "verbs": ["list", "watch"]},
                {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["list", "watch"]},
                {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch", "update"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}],
        },
    ]


def _iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["iptables", "-w", *args], capture_output=True, text=True, check=check, timeout=60)


class NetPol:
    def __init__(self) -> None:
        self.pki = procs.STATE / "pki"

    def certs(self) -> None:
        certs.cert(self.pki, "kube-network-policies", f"/CN={USER}")

    def start(self, api_port: int) -> None:
        """RBAC, the engine, then the chain: after the API serves, before the kubelet runs pods."""
        if not BRIDGE_NF.exists() or BRIDGE_NF.read_text().strip() != "1":
            raise procs.ClusterError(
                f"{BRIDGE_NF} is not 1: pod-to-pod packets on the node's bridge would bypass the "
                "NetworkPolicy engine (modprobe br_netfilter; sysctl net.bridge.bridge-nf-call-iptables=1)"
            )
        admin = procs.STATE / "kubeconfig"
        procs.kubectl(
            "apply",
            "-f",
            "-",
            kubeconfig_path=admin,
            input_text=json.dumps({"apiVersion": "v1", "kind": "List", "items": rbac()}),
        )
        self.certs()
        cfg = certs.kubeconfig(
            procs.STATE / "kube-network-policies.kubeconfig", self.pki, "kube-network-policies", api_port
        )
        procs.start(
            "kube-network-policies",
            [
                procs.binary("kube-network-policies"),
                f"--kubeconfig={cfg}",
                f"--hostname-override={realnode.NODE_NAME}",
                f"--nfqueue-id={QUEUE}",
                "--fail-open=true",
                "--v=2",
            ],
        )
        _iptables("-t", "mangle", "-N", CHAIN, check=False)
        _iptables("-t", "mangle", "-F", CHAIN)
        for rule in rules():
            _iptables("-t", "mangle", "-A", CHAIN, *rule)
        if _iptables("-t", "mangle", "-C", "POSTROUTING", "-j", CHAIN, check=False).returncode != 0:
            _iptables("-t", "mangle", "-A", "POSTROUTING", "-j", CHAIN)

    def wait_ready(self) -> None:
        """The engine reads its queue once its informers have synced (nfnetlink_queue lists it)."""

        def bound() -> bool:
            try:
                lines = Path("/proc/net/netfilter/nfnetlink_queue").read_text().splitlines()
            except OSError:
                return False
            return any(line.split() and line.split()[0] == str(QUEUE) for line in lines)

        procs.wait_for(f"the NetworkPolicy engine on nfqueue {QUEUE}", bound, timeout=60, name="kube-network-policies")
