"""The Prometheus operator's ServiceMonitor, when monitoring.serviceMonitor is on."""

from __future__ import annotations

from typing import Any

from ..spec import YoloServiceSpec
from .common import OWNER_LABEL, Meta, object_metadata
from .gateway import GATEWAY_METRICS_TLS_PORT_NAME


def build_service_monitor(spec: YoloServiceSpec, meta: Meta) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": object_metadata(meta, meta.name, "monitoring"),
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/instance": meta.name, OWNER_LABEL: meta.name}},
            # Port "metrics" on both Services: Triton's 8002, the gateway's 8080. (Triton's "http"
            # port has no /metrics: scraping it, as an earlier version did, got 404s.)
            "endpoints": [
                {"port": "metrics", "path": "/metrics", "interval": "15s"},
                *(
                    [
                        # A gateway serving HTTPS only: its certificate is the user's, for clients'
                        # names, not the pod IP that Prometheus dials.
                        {
                            "port": GATEWAY_METRICS_TLS_PORT_NAME,
                            "path": "/metrics",
                            "interval": "15s",
                            "scheme": "https",
                            "tlsConfig": {"insecureSkipVerify": True},
                        }
                    ]
                    if spec.gateway.tls.enabled
                    else []
                ),
            ],
        },
    }
