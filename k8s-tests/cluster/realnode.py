"""A real node next to the kwok nodes: containerd + kubelet + kube-proxy + CoreDNS on this machine.

Used by controlplane.py. The node `yolo-node-0` (label and NoSchedule taint `yolo.dev/real-node=true`)
runs real pods with runc. Everything it needs lives in addresses of the RFC 2544 test range
198.18.0.0/15, which is routed to a dummy link so that none of it can leave the machine:

    node IP      198.18.255.1/32 on the link `yolo0`, a bridge without ports used as a dummy (this
                 kernel has no dummy driver); kubelet :10250, CoreDNS :53, apiserver :16443
    pods         198.18.0.0/24 on the CNI bridge `yolo-br0` (gateway 198.18.0.1)
    Services     198.19.0.0/16 (kubernetes = 198.19.0.1), proxied by kube-proxy in iptables mode
    containerd   /run/yolo-operator/containerd/containerd.sock (namespace k8s.io for the CRI)

Pods may talk to each other, to Services and to the node; forwarding anywhere else is dropped
(chain YOLO-FORWARD), and containerd cannot pull (its proxy is a closed loopback port): images are
imported with `ctr -a SOCK -n k8s.io images import FILE`. `teardown()` removes every process, mount,
network namespace, link, iptables chain, cgroup and sysctl change the node made, even after a crash.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from . import certs, procs

NODE_NAME = "yolo-node-0"
NODE_LABEL = "yolo.dev/real-node"
NODE_IP = "198.18.255.1"
DUMMY = "yolo0"
BRIDGE = "yolo-br0"
TEST_RANGE = "198.18.0.0/15"
POD_CIDR = "198.18.0.0/24"
POD_GATEWAY = "198.18.0.1"
SERVICE_CIDR = "198.19.0.0/16"
KUBERNETES_SERVICE_IP = "198.19.0.1"
KWOK_POD_CIDR = "198.18.128.0/17"  # fake pods' IPs: inside the test range, routed nowhere
DNS_IP = NODE_IP
CNI_NETWORK = "yolo-pods"
CNI_BIN = Path("/usr/lib/cni")
RUN = Path(os.environ.get("YOLO_NODE_RUN", "/run/yolo-operator"))
CONTAINERD_SOCK = RUN / "containerd" / "containerd.sock"
CGROUP_ROOT = "yolo-operator"
COMPONENTS = ("containerd", "coredns", "kube-proxy", "kubelet")
# The kubelet changes these on start (protectKernelDefaults=false), the CNI bridge turns on forwarding.
SYSCTLS = (
    "net/ipv4/ip_forward",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/conf/all/route_localnet",
)
CHAIN_PREFIXES = ("KUBE-", "YOLO-")  # ours alone; CNI-* chains are shared with other CNI users (podman, buildah)
HOSTPORT_CHAINS = ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ")


def mode() -> str:
    """YOLO_REAL_NODE: auto (default: the node when it can run here), 1 (it must), 0 (no node)."""
    value = os.environ.get("YOLO_REAL_NODE", "auto").lower()
    return {
        "0": "off",
        "false": "off",
        "no": "off",
        "off": "off",
        "1": "on",
        "true": "on",
        "yes": "on",
        "on": "on",
    }.get(value, "auto")


def missing(bin_dir: Path) -> list[str]:
    """What this machine lacks to run the node (empty: it can)."""
    lack = []
    if os.geteuid() != 0:
        lack.append("root")
    for b in ("kubelet", "kube-proxy", "coredns", "node-images/pause.oci.tar"):
        if not (bin_dir / b).exists():
            lack.append(str(bin_dir / b))
    for tool in ("containerd", "runc", "ctr", "ip", "iptables", "iptables-save", "iptables-restore"):
        if not shutil.which(tool):
            lack.append(tool)
    if not (CNI_BIN / "bridge").exists():
        lack.append(str(CNI_BIN / "bridge"))
    return lack


def _sh(
    *cmd: str, check: bool = True, timeout: float = 60, input_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input_text)
    except subprocess.TimeoutExpired:
        r = subprocess.CompletedProcess(cmd, 124, "", f"timed out after {timeout}s")
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip() or r.stdout.strip()}")
    return r


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _procs() -> list[tuple[int, str, str, str]]:
    """(pid, exe, cmdline, cgroup) of every process we can read."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cgroup = (d / "cgroup").read_text(errors="replace")
            try:
                exe = os.readlink(d / "exe")
            except OSError:
                exe = ""
        except OSError:
            continue
        out.append((int(d.name), exe, cmdline, cgroup))
    return out


def _kill(pids: list[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


class RealNode:
    def __init__(self) -> None:
        self.dir = procs.STATE / "node"
        self.pki = procs.STATE / "pki"
        self.containerd_root = self.dir / "containerd"
        self.kubelet_root = self.dir / "kubelet"
        self.pod_logs = self.dir / "pod-logs"
        self.cni_conf = self.dir / "cni" / "net.d"
        self.cni_ipam = self.dir / "cni" / "ipam"
        self.pause_ref = (
            (procs.BIN / "node-images" / "pause.ref").read_text().strip()
            if (procs.BIN / "node-images" / "pause.ref").exists()
            else ""
        )

    # ------------------------------------------------------------------ start

    def certs(self) -> None:
        pki = self.pki
        certs.cert(pki, "kubelet", f"/O=system:nodes/CN=system:node:{NODE_NAME}")
        certs.cert(pki, "kubelet-serving", f"/CN={NODE_NAME}", server_ips=(NODE_IP,), dns=(NODE_NAME,))
        certs.cert(pki, "kube-proxy", "/CN=system:kube-proxy")
        certs.cert(pki, "coredns", "/CN=system:coredns")

    def network(self) -> None:
        """The dummy link with the node IP, the test range routed to it, the forwarding guard."""
        self.dir.mkdir(parents=True, exist_ok=True)
        saved = self.dir / "sysctl.orig.json"
        if not saved.exists():  # first start since a clean teardown: these are the machine's own values
            values = {}
            for key in SYSCTLS:
                p = Path("/proc/sys", key)
                if p.exists():
                    values[key] = p.read_text().strip()
            saved.write_text(json.dumps(values))
        # no dummy driver here: a bridge without ports drops what is routed to it
        if not _link_exists(DUMMY) and _sh("ip", "link", "add", DUMMY, "type", "dummy", check=False).returncode != 0:
            _sh("ip", "link", "add", DUMMY, "type", "bridge")
        _sh("ip", "addr", "replace", f"{NODE_IP}/32", "dev", DUMMY)
        _sh("ip", "link", "set", DUMMY, "up")
        _sh("ip", "route", "replace", TEST_RANGE, "dev", DUMMY)
        _sh("iptables", "-w", "-N", "YOLO-FORWARD", check=False)
        _sh("iptables", "-w", "-F", "YOLO-FORWARD")
        for rule in (
            ("-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT"),
            ("-i", BRIDGE, "-j", "DROP"),
            ("-o", BRIDGE, "-j", "DROP"),
        ):
            _sh("iptables", "-w", "-A", "YOLO-FORWARD", *rule)
        if _sh("iptables", "-w", "-C", "FORWARD", "-j", "YOLO-FORWARD", check=False).returncode != 0:
            _sh("iptables", "-w", "-I", "FORWARD", "1", "-j", "YOLO-FORWARD")
        for d in (
            self.cni_conf,
            self.cni_ipam,
            self.pod_logs,
            self.kubelet_root,
            self.containerd_root,
            RUN / "containerd",
        ):
            d.mkdir(parents=True, exist_ok=True)
        conflist = {
            "cniVersion": "1.0.0",
            "name": CNI_NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR, "gateway": POD_GATEWAY}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.cni_ipam),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (self.cni_conf / "10-yolo-pods.conflist").write_text(json.dumps(conflist, indent=2))
        # cgroupfs: the kubelet's cgroupRoot must exist in every hierarchy (cpuset: with cpus and mems)
        for h in Path("/sys/fs/cgroup").iterdir():
            if h.is_dir() and not h.is_symlink() and (h / "cgroup.procs").exists():
                d = h / CGROUP_ROOT
                d.mkdir(exist_ok=True)
                for f in ("cpuset.cpus", "cpuset.mems"):
                    if (d / f).exists() and not (d / f).read_text().strip():
                        (d / f).write_text((h / f).read_text())

    def start_containerd(self) -> None:
        pause = self.pause_ref
        cfg = self.dir / "containerd.toml"
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        cfg.write_text(
            f"""version = 2
root = "{self.containerd_root}"
state = "{RUN / "containerd" / "state"}"
oom_score = 0
[grpc]
  address = "{CONTAINERD_SOCK}"
[ttrpc]
  address = "{CONTAINERD_SOCK}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{self.containerd_root / "opt"}"
[{cri}]
  sandbox_image = "{pause}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{RUN / "containerd" / "runc"}"
[{cri}.cni]
  bin_dir = "{CNI_BIN}"
  conf_dir = "{self.cni_conf}"
  max_conf_num = 1
[{cri}.registry]
  config_path = "{self.dir / "registry.d"}"
"""
        )
        (self.dir / "registry.d").mkdir(exist_ok=True)
        # No registry is reachable or allowed: every pull goes to a closed loopback port and fails at once.
        env = {
            **os.environ,
            "HTTP_PROXY": "http://127.0.0.1:9",
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "NO_PROXY": "",
            "http_proxy": "",
            "https_proxy": "",
            "no_proxy": "",
        }
        procs.start("containerd", ["containerd", f"--config={cfg}"], env=env)

    def wait_containerd(self) -> None:
        procs.wait_for(
            "containerd", lambda: self.ctr("version", check=False).returncode == 0, timeout=60, name="containerd"
        )
        self._remove_containers()  # records a crashed run left behind: this node starts empty
        archive = procs.BIN / "node-images" / "pause.oci.tar"
        if self.pause_ref not in self.ctr("images", "ls", "-q").stdout.split():
            self.ctr("images", "import", str(archive.resolve()))

    def _remove_containers(self) -> None:
        """Kill and delete every container in containerd's k8s.io namespace (the images stay)."""
        tasks = self.ctr("tasks", "ls", "-q", check=False, timeout=30).stdout.split()
        for t in tasks:
            self.ctr("tasks", "kill", "-s", "SIGKILL", t, check=False, timeout=30)
        for t in tasks:
            self.ctr("tasks", "delete", "-f", t, check=False, timeout=30)
        for cid in self.ctr("containers", "ls", "-q", check=False, timeout=30).stdout.split():
            self.ctr("containers", "delete", cid, check=False, timeout=30)

    def ctr(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return _sh("ctr", "-a", str(CONTAINERD_SOCK), "-n", "k8s.io", *args, check=check, timeout=timeout)

    def start_node(self, api_port: int) -> None:
        """CoreDNS, kube-proxy and the kubelet; the apiserver is up."""
        pki = self.pki
        admin = procs.STATE / "kubeconfig"
        rbac = {
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRole",
                    "metadata": {"name": "yolo:coredns"},
                    "rules": [
                        {
                            "apiGroups": [""],
                            "resources": ["endpoints", "services", "pods", "namespaces"],
                            "verbs": ["list", "watch"],
                        },
                        {
                            "apiGroups": ["discovery.k8s.io"],
                            "resources": ["endpointslices"],
                            "verbs": ["list", "watch"],
                        },
                    ],
                },
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding",
                    "metadata": {"name": "yolo:coredns"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "yolo:coredns"},
                    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:coredns"}],
                },
            ],
        }
        procs.kubectl("apply", "-f", "-", kubeconfig_path=admin, input_text=json.dumps(rbac))

        dns_cfg = certs.kubeconfig(self.dir / "coredns.kubeconfig", pki, "coredns", api_port)
        corefile = self.dir / "Corefile"
        corefile.write_text(
            f""".:53 {{
    bind {DNS_IP}
    ready 127.0.0.1:18181
    health 127.0.0.1:18080
    errors
    cache 5
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {dns_cfg} yolo-local
        pods insecure
        ttl 5
        fallthrough in-addr.arpa ip6.arpa
    }}
}}
"""
        )
        procs.start("coredns", [procs.binary("coredns"), "-conf", str(corefile)])

        proxy_cfg = self.dir / "kube-proxy.json"
        proxy_cfg.write_text(
            json.dumps(
                {
                    "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
                    "kind": "KubeProxyConfiguration",
                    "clientConnection": {
                        "kubeconfig": str(
                            certs.kubeconfig(self.dir / "kube-proxy.kubeconfig", pki, "kube-proxy", api_port)
                        )
                    },
                    "mode": "iptables",
                    "hostnameOverride": NODE_NAME,
                    "bindAddress": NODE_IP,
                    "clusterCIDR": POD_CIDR,
                    "healthzBindAddress": "127.0.0.1:10256",
                    "metricsBindAddress": "127.0.0.1:10249",
                    "nodePortAddresses": [f"{NODE_IP}/32"],
                    "iptables": {"syncPeriod": "10s", "minSyncPeriod": "0s"},
                    # leave the machine's conntrack settings alone
                    "conntrack": {
                        "maxPerCore": 0,
                        "min": 0,
                        "tcpEstablishedTimeout": "0s",
                        "tcpCloseWaitTimeout": "0s",
                    },
                },
                indent=2,
            )
        )
        procs.start("kube-proxy", [procs.binary("kube-proxy"), f"--config={proxy_cfg}", "--v=1"])

        kubelet_cfg = self.dir / "kubelet.json"
        kubelet_cfg.write_text(
            json.dumps(
                {
                    "apiVersion": "kubelet.config.k8s.io/v1beta1",
                    "kind": "KubeletConfiguration",
                    "address": NODE_IP,
                    "port": 10250,
                    "readOnlyPort": 0,
                    "healthzBindAddress": "127.0.0.1",
                    "healthzPort": 10248,
                    "authentication": {
                        "anonymous": {"enabled": False},
                        "webhook": {"enabled": True},
                        "x509": {"clientCAFile": str(pki / "ca.crt")},
                    },
                    "authorization": {"mode": "Webhook"},
                    "tlsCertFile": str(pki / "kubelet-serving.crt"),
                    "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
                    "cgroupDriver": "cgroupfs",
                    "cgroupRoot": f"/{CGROUP_ROOT}",
                    "failSwapOn": False,
                    "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCK}",
                    "clusterDNS": [DNS_IP],
                    "clusterDomain": "cluster.local",
                    "resolvConf": "",
                    "maxPods": 60,
                    "podLogsDir": str(self.pod_logs),
                    "volumePluginDir": str(self.kubelet_root / "volume-plugins"),
                    "evictionHard": {
                        "memory.available": "100Mi",
                        "nodefs.available": "1%",
                        "nodefs.inodesFree": "1%",
                        "imagefs.available": "1%",
                    },
                    "imageGCHighThresholdPercent": 100,  # imported images cannot be pulled again: never collect them
                    "imageGCLowThresholdPercent": 99,
                    "serializeImagePulls": False,
                    "enableControllerAttachDetach": False,
                    "registerWithTaints": [{"key": NODE_LABEL, "value": "true", "effect": "NoSchedule"}],
                    "syncFrequency": "10s",
                    "fileCheckFrequency": "10s",
                    "nodeStatusUpdateFrequency": "5s",
                    "shutdownGracePeriod": "0s",
                },
                indent=2,
            )
        )
        procs.start(
            "kubelet",
            [
                procs.binary("kubelet"),
                f"--config={kubelet_cfg}",
                f"--kubeconfig={certs.kubeconfig(self.dir / 'kubelet.kubeconfig', pki, 'kubelet', api_port)}",
                f"--root-dir={self.kubelet_root}",
                f"--cert-dir={self.kubelet_root / 'pki'}",
                f"--node-ip={NODE_IP}",
                f"--hostname-override={NODE_NAME}",
                f"--node-labels={NODE_LABEL}=true",
                "--v=1",
            ],
        )

    def wait_ready(self) -> None:
        admin = procs.STATE / "kubeconfig"

        def ready() -> bool:
            node = json.loads(procs.kubectl("get", "node", NODE_NAME, "-o", "json", kubeconfig_path=admin))
            ok = any(
                x["type"] == "Ready" and x["status"] == "True" for x in node.get("status", {}).get("conditions", [])
            )
            return ok and not any(
                t["key"].startswith("node.kubernetes.io/") for t in node.get("spec", {}).get("taints", [])
            )

        procs.wait_for(f"node {NODE_NAME} Ready", ready, timeout=120, name="kubelet")
        procs.wait_for(
            "CoreDNS ready",
            lambda: procs.run(["curl", "-sf", "http://127.0.0.1:18181/ready"]) != "",
            timeout=60,
            name="coredns",
        )
        procs.wait_for(
            "kube-proxy healthy",
            lambda: procs.run(["curl", "-sf", "http://127.0.0.1:10256/healthz"]) != "",
            timeout=60,
            name="kube-proxy",
        )

    # ------------------------------------------------------------------ stop

    def drain(self, timeout: float = 30) -> None:
        """Delete the node's pods while the kubelet runs, so that it stops them properly (CNI DEL, unmounts)."""
        admin = procs.STATE / "kubeconfig"
        sel = f"spec.nodeName={NODE_NAME}"
        try:
            procs.kubectl(
                "delete",
                "pods",
                "-A",
                "--field-selector",
                sel,
                "--grace-period=2",
                "--wait=false",
                kubeconfig_path=admin,
            )
        except procs.ClusterError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if not procs.kubectl(
                    "get", "pods", "-A", "--field-selector", sel, "-o", "name", kubeconfig_path=admin
                ).strip():
                    break
            except procs.ClusterError:
                break
            time.sleep(0.5)

    def teardown(self) -> None:
        """Remove everything the node made; safe to run any number of times, and after a crash."""
        if CONTAINERD_SOCK.exists() and self.ctr("version", check=False, timeout=10).returncode == 0:
            self._remove_containers()
        procs.stop("containerd")
        # leftovers of a crash: our components without pid files, shims, and the pods' processes (by cgroup)
        ours = {
            str((procs.BIN / b).resolve()) for b in ("kubelet", "kube-proxy", "coredns") if (procs.BIN / b).exists()
        }
        cfg = str(self.dir / "containerd.toml")
        for _ in range(3):
            victims = [
                pid
                for pid, exe, cmdline, cgroup in _procs()
                if pid != os.getpid()
                and (
                    exe in ours
                    or (cfg in cmdline and "containerd" in exe)
                    or ("containerd-shim" in cmdline and str(CONTAINERD_SOCK) in cmdline)
                    or any(line.split(":", 2)[-1].startswith(f"/{CGROUP_ROOT}/") for line in cgroup.splitlines())
                )
            ]
            if not victims:
                break
            _kill(victims)
            time.sleep(0.5)
        self._unmount()
        for d in (RUN / "containerd",):
            shutil.rmtree(d, ignore_errors=True)
        if RUN.exists() and not any(RUN.iterdir()):
            RUN.rmdir()
        # links: veths left on the bridge, the bridge, the dummy (its routes go with it)
        if _link_exists(BRIDGE):
            for line in _sh("ip", "-o", "link", "show", "master", BRIDGE, check=False).stdout.splitlines():
                name = line.split(":")[1].strip().split("@")[0]
                _sh("ip", "link", "del", name, check=False)
            _sh("ip", "link", "del", BRIDGE, check=False)
        if _link_exists(DUMMY):
            _sh("ip", "link", "del", DUMMY, check=False)
        self._iptables()
        self._cgroups()
        saved = self.dir / "sysctl.orig.json"
        if saved.exists():
            values = json.loads(saved.read_text())
            others = [
                line.split(":")[1].strip()
                for line in _sh("ip", "-o", "link", "show", "type", "bridge", check=False).stdout.splitlines()
            ]
            if [b for b in others if b not in (DUMMY, BRIDGE)]:  # another bridge (podman's, say) may need forwarding
                values.pop("net/ipv4/ip_forward", None)
            for key, value in values.items():
                p = Path("/proc/sys", key)
                try:
                    if p.exists() and p.read_text().strip() != value:
                        p.write_text(value)
                except OSError:
                    pass
            saved.unlink()
        logs = str(self.pod_logs)
        for link in Path("/var/log/containers").glob("*.log") if Path("/var/log/containers").exists() else []:
            try:
                if link.is_symlink() and os.readlink(link).startswith(logs):
                    link.unlink()
            except OSError:
                pass
        for f in Path("/var/lib/cni/results").glob(f"{CNI_NETWORK}-*") if Path("/var/lib/cni/results").exists() else []:
            f.unlink(missing_ok=True)
        self._fixed_paths()
        # the pods' state; the containerd root keeps the imported images, minus the CRI's per-pod folders
        for d in (
            self.kubelet_root,
            self.pod_logs,
            self.cni_ipam,
            self.containerd_root / "io.containerd.grpc.v1.cri" / "sandboxes",
            self.containerd_root / "io.containerd.grpc.v1.cri" / "containers",
        ):
            shutil.rmtree(d, ignore_errors=True)

    def _fixed_paths(self) -> None:
        """What containerd 1.6 and the kubelet put in fixed places, whatever their configuration says:
        the shims' sockets (/run/containerd/s: only those no process listens on) and the kubelet's
        device-plugin socket and checkpoint; then the folders, when that leaves them empty."""
        listening = {
            line.split()[-1]
            for line in Path("/proc/net/unix").read_text().splitlines()[1:]
            if line.split()[-1].startswith("/")
        }
        shim_dir = Path("/run/containerd/s")
        for sock in shim_dir.iterdir() if shim_dir.is_dir() else []:
            if sock.is_socket() and str(sock) not in listening:
                sock.unlink(missing_ok=True)
        plugins = Path("/var/lib/kubelet/device-plugins")
        if not any(exe.endswith("/kubelet") for _, exe, _, _ in _procs()):
            for f in ("kubelet.sock", "kubelet_internal_checkpoint"):
                (plugins / f).unlink(missing_ok=True)
        for d in (
            shim_dir,
            Path("/run/containerd/runc"),
            Path("/run/containerd"),
            plugins,
            Path("/var/lib/kubelet"),
            Path("/var/log/containers"),
        ):
            with contextlib.suppress(OSError):
                d.rmdir()

    def _unmount(self) -> None:
        prefixes = (str(RUN) + "/", str(self.dir) + "/", str(RUN), str(self.dir))
        for _ in range(5):
            mounts = []
            for line in Path("/proc/self/mountinfo").read_text().splitlines():
                point = line.split()[4].encode().decode("unicode_escape")
                if point in prefixes[2:] or point.startswith(prefixes[:2]):
                    mounts.append(point)
            if not mounts:
                return
            for point in sorted(set(mounts), key=len, reverse=True):
                if _sh("umount", point, check=False, timeout=30).returncode != 0:
                    _sh("umount", "-l", point, check=False, timeout=30)

    def _iptables(self) -> None:
        proxy = procs.BIN / "kube-proxy"
        if proxy.exists():
            _sh(str(proxy), "--cleanup", "--v=0", check=False, timeout=60)
        for family in ("iptables", "ip6tables"):
            if not shutil.which(f"{family}-save"):
                continue
            for table in ("filter", "nat", "mangle", "raw"):
                saved = _sh(f"{family}-save", "-t", table, check=False).stdout
                rules = [line for line in saved.splitlines() if line.startswith("-A ")]
                chains = {line[1:].split()[0] for line in saved.splitlines() if line.startswith(":")}
                ours = {ch for ch in chains if ch.startswith(CHAIN_PREFIXES)}
                # portmap's rules for our network (comment `dnat name: "yolo-pods" ...`) and their CNI-DN-* chains
                mine = [r for r in rules if re.search(r'name: \\?"' + re.escape(CNI_NETWORK) + r'\\?"', r)]
                for r in mine:
                    target = re.search(r"\s-[jg]\s+(\S+)", r)
                    if target and target.group(1).startswith("CNI-DN-"):
                        ours.add(target.group(1))
                # the shared hostport chains go too when nobody else has rules in them
                if not [r for r in rules if r.split()[1] == "CNI-HOSTPORT-DNAT" and r not in mine]:
                    ours |= chains & set(HOSTPORT_CHAINS)
                if not ours and not mine:
                    continue
                jumps = list(mine)
                for line in rules:
                    target = re.search(r"\s-[jg]\s+(\S+)", line)
                    if line.split()[1] not in ours and target and target.group(1) in ours and line not in jumps:
                        jumps.append(line)
                chains = sorted(ours)
                script = (
                    [f"*{table}"]
                    + ["-D " + j[3:] for j in jumps]
                    + [f"-F {ch}" for ch in chains]
                    + [f"-X {ch}" for ch in chains]
                    + ["COMMIT", ""]
                )
                r = _sh(f"{family}-restore", "-w", "--noflush", check=False, input_text="\n".join(script))
                if r.returncode != 0:  # one at a time, so that one odd rule does not keep the rest
                    for j in jumps:
                        _sh(
                            f"{family}-restore",
                            "-w",
                            "--noflush",
                            check=False,
                            input_text=f"*{table}\n-D {j[3:]}\nCOMMIT\n",
                        )
                    for verb in ("-F", "-X"):
                        for ch in chains:
                            _sh(family, "-w", "-t", table, verb, ch, check=False)

    def _cgroups(self) -> None:
        base = Path("/sys/fs/cgroup")
        if not base.exists():
            return
        for h in base.iterdir():
            top = h / CGROUP_ROOT
            if not top.is_dir():
                continue
            for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True) + [
                top
            ]:
                with contextlib.suppress(OSError):
                    d.rmdir()

    def leftovers(self) -> list[str]:
        """What teardown should have removed and did not (for tests and `status`)."""
        found = []
        for link in (DUMMY, BRIDGE):
            if _link_exists(link):
                found.append(f"link {link}")
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4]
            if point in (str(RUN), str(self.dir)) or point.startswith((str(RUN) + "/", str(self.dir) + "/")):
                found.append(f"mount {point}")
        for family in ("iptables", "ip6tables"):
            if shutil.which(f"{family}-save"):
                for line in _sh(f"{family}-save", check=False).stdout.splitlines():
                    if any(p in line for p in CHAIN_PREFIXES) or f'"{CNI_NETWORK}"' in line:
                        found.append(f"{family}: {line}")
        for pid, _exe, cmdline, cgroup in _procs():
            if str(CONTAINERD_SOCK) in cmdline or str(self.dir) in cmdline or f":/{CGROUP_ROOT}/" in cgroup:
                found.append(f"process {pid} {cmdline[:120]}")
        if any((h / CGROUP_ROOT).exists() for h in Path("/sys/fs/cgroup").iterdir()):
            found.append(f"cgroup /{CGROUP_ROOT}")
        return found
