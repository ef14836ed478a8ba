"""The cluster's metrics pipeline, next to the real node: Prometheus and KEDA, run on this machine.

Used by controlplane.py when the real node runs and build.sh built KEDA (`.bin/keda`, `.bin/keda-adapter`,
`.bin/keda-crds`) and the Debian package `prometheus` is installed.

    podsd           lists the real node's pods every second into a file_sd file (Debian builds
                    Prometheus without Kubernetes discovery; podsd.py).
    prometheus      198.18.255.1:19090 (PROMETHEUS_URL). Scrapes the pods annotated
                    `prometheus.io/scrape: "true"` (the operator annotates Triton and gateway pods)
                    every 2 s, labelled `namespace` and `pod`.
    keda-operator   KEDA's controller: ScaledObjects -> HPAs, activation (scale to and from zero),
                    its metrics gRPC service on 127.0.0.1:19666 (mutual TLS).
    keda-adapter    KEDA's external metrics API server on 198.18.255.1:16445, registered as the
                    APIService v1beta1.external.metrics.k8s.io (Service keda/keda-metrics-apiserver,
                    endpoints on the node IP; the apiserver routes to endpoints). The HPA controller
                    reads ScaledObject metrics through it.

Both KEDA parts run with the admin kubeconfig, and their certificates come from the cluster's CA.
The apiserver's front-proxy (requestheader) flags that aggregation needs are in controlplane.py.
"""

from __future__ import annotations

import base64
import json
import shutil
import sys
import urllib.request
from pathlib import Path

from . import certs, procs, realnode

PROMETHEUS_PORT = 19090
PROMETHEUS_URL = f"http://{realnode.NODE_IP}:{PROMETHEUS_PORT}"
KEDA_NAMESPACE = "keda"
KEDA_GRPC = "127.0.0.1:19666"
ADAPTER_PORT = 16445
ADAPTER_SERVICE = "keda-metrics-apiserver"
COMPONENTS = ("podsd", "prometheus", "keda-operator", "keda-adapter")
SCRAPE_INTERVAL = "2s"


def missing(bin_dir: Path) -> list[str]:
    lack = [str(bin_dir / b) for b in ("keda", "keda-adapter", "keda-crds") if not (bin_dir / b).exists()]
    if not shutil.which("prometheus"):
        lack.append("prometheus (apt-get install prometheus)")
    return lack


def prometheus_config(targets_file: Path) -> dict:
    """Debian's Prometheus has no Kubernetes discovery: podsd.py lists the pods into a file_sd file."""
    return {
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "scrape_timeout": SCRAPE_INTERVAL,
            "evaluation_interval": SCRAPE_INTERVAL,
        },
        "scrape_configs": [
            {
                "job_name": "kubernetes-pods",
                "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "5s"}],
                # https targets (prometheus.io/scheme): a gateway's certificate names its clients'
                # host, not the pod IP dialled here
                "tls_config": {"insecure_skip_verify": True},
            }
        ],
    }


class Metrics:
    def __init__(self) -> None:
        self.dir = procs.STATE / "metrics"
        self.pki = procs.STATE / "pki"
        self.certs_dir = self.dir / "keda-certs"

    def certs(self) -> None:
        pki = self.pki
        svc = f"{ADAPTER_SERVICE}.{KEDA_NAMESPACE}.svc"
        certs.cert(
            pki,
            "keda",
            "/CN=keda",
            server_ips=("127.0.0.1", realnode.NODE_IP),
            dns=(svc, f"keda-operator.{KEDA_NAMESPACE}.svc", "localhost"),
        )
        self.certs_dir.mkdir(parents=True, exist_ok=True)
        for src, dst in (("ca.crt", "ca.crt"), ("keda.crt", "tls.crt"), ("keda.key", "tls.key")):
            shutil.copyfile(pki / src, self.certs_dir / dst)

    def start(self) -> None:
        admin = procs.STATE / "kubeconfig"
        self.certs()
        data = self.dir / "prometheus"
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        cfg = self.dir / "prometheus.yml"
        targets = self.dir / "pod-targets.json"
        cfg.write_text(json.dumps(prometheus_config(targets), indent=2))  # JSON is YAML
        procs.start(
            "podsd",
            [
                sys.executable,
                str(Path(__file__).with_name("podsd.py")),
                f"--kubeconfig={admin}",
                f"--node={realnode.NODE_NAME}",
                f"--out={targets}",
            ],
        )
        procs.start(
            "prometheus",
            [
                "prometheus",
                f"--config.file={cfg}",
                f"--storage.tsdb.path={data}",
                "--storage.tsdb.retention.time=6h",
                f"--web.listen-address={realnode.NODE_IP}:{PROMETHEUS_PORT}",
                "--log.level=warn",
            ],
        )
        bin_ = procs.BIN
        procs.kubectl("apply", "--server-side", "-f", str((bin_ / "keda-crds").resolve()), kubeconfig_path=admin)
        ca = base64.b64encode((self.pki / "ca.crt").read_bytes()).decode()
        objects = [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": KEDA_NAMESPACE}},
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": ADAPTER_SERVICE, "namespace": KEDA_NAMESPACE},
                "spec": {"ports": [{"name": "https", "port": 443, "targetPort": ADAPTER_PORT}]},
            },
            {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": ADAPTER_SERVICE, "namespace": KEDA_NAMESPACE},
                "subsets": [
                    {"addresses": [{"ip": realnode.NODE_IP}], "ports": [{"name": "https", "port": ADAPTER_PORT}]}
                ],
            },
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": ADAPTER_SERVICE,
                    "namespace": KEDA_NAMESPACE,
                    "labels": {"kubernetes.io/service-name": ADAPTER_SERVICE},
                },
                "addressType": "IPv4",
                "endpoints": [{"addresses": [realnode.NODE_IP], "conditions": {"ready": True}}],
                "ports": [{"name": "https", "port": ADAPTER_PORT, "protocol": "TCP"}],
            },
            {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": "v1beta1.external.metrics.k8s.io"},
                "spec": {
                    "group": "external.metrics.k8s.io",
                    "version": "v1beta1",
                    "groupPriorityMinimum": 100,
                    "versionPriority": 100,
                    "caBundle": ca,
                    "service": {"name": ADAPTER_SERVICE, "namespace": KEDA_NAMESPACE, "port": 443},
                },
            },
        ]
        procs.kubectl(
            "apply",
            "-f",
            "-",
            kubeconfig_path=admin,
            input_text=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
        )
        env = {
            "PATH": "/usr/bin:/bin",
            "KUBECONFIG": str(admin),
            "POD_NAMESPACE": KEDA_NAMESPACE,
            "KEDA_CLUSTER_OBJECT_NAMESPACE": KEDA_NAMESPACE,
            "WATCH_NAMESPACE": "",
            "KEDA_HTTP_DEFAULT_TIMEOUT": "3000",
        }
        procs.start(
            "keda-operator",
            [
                procs.binary("keda"),
                "--leader-elect=false",
                "--metrics-bind-address=127.0.0.1:18090",
                "--health-probe-bind-address=127.0.0.1:18091",
                f"--metrics-service-bind-address={KEDA_GRPC}",
                f"--cert-dir={self.certs_dir}",
                f"--ca-dir={self.certs_dir}",
                "--zap-log-level=info",
            ],
            env=env,
        )
        procs.start(
            "keda-adapter",
            [
                procs.binary("keda-adapter"),
                f"--secure-port={ADAPTER_PORT}",
                f"--bind-address={realnode.NODE_IP}",
                f"--tls-cert-file={self.certs_dir / 'tls.crt'}",
                f"--tls-private-key-file={self.certs_dir / 'tls.key'}",
                f"--cert-dir={self.certs_dir}",
                f"--client-ca-file={self.certs_dir / 'ca.crt'}",
                f"--metrics-service-address={KEDA_GRPC}",
                "--metrics-service-grpc-authority=localhost",
                "--port=18092",
                f"--authentication-kubeconfig={admin}",
                f"--authorization-kubeconfig={admin}",
                f"--lister-kubeconfig={admin}",
                f"--kubeconfig={admin}",
                "--v=0",
            ],
            env=env,
        )

    def wait_ready(self) -> None:
        admin = procs.STATE / "kubeconfig"
        procs.wait_for(
            "Prometheus ready",
            lambda: urllib.request.urlopen(f"{PROMETHEUS_URL}/-/ready", timeout=2).status == 200,
            timeout=60,
            name="prometheus",
        )
        procs.wait_for(
            "KEDA operator healthy",
            lambda: urllib.request.urlopen("http://127.0.0.1:18091/readyz", timeout=2).status == 200,
            timeout=90,
            name="keda-operator",
        )

        def external_metrics() -> bool:
            svc = json.loads(
                procs.kubectl(
                    "get", "apiservice", "v1beta1.external.metrics.k8s.io", "-o", "json", kubeconfig_path=admin
                )
            )
            ok = any(
                x["type"] == "Available" and x["status"] == "True" for x in svc.get("status", {}).get("conditions", [])
            )
            return ok and bool(
                procs.kubectl("get", "--raw=/apis/external.metrics.k8s.io/v1beta1", kubeconfig_path=admin)
            )

        procs.wait_for(
            "the external metrics API (KEDA's adapter) available", external_metrics, timeout=90, name="keda-adapter"
        )
