"""The operator's only Kubernetes I/O: get, server-side apply, delete and status patches.

Children are written with server-side apply under one field manager, with
force, so the operator owns exactly the fields it sets (and never `replicas`
of a Deployment under an HPA).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from .spec import GROUP, PLURAL, VERSION

FIELD_MANAGER = "yolo-operator"
log = logging.getLogger("yolo_operator.kube")

PLURALS = {
    "ConfigMap": "configmaps",
    "Service": "services",
    "Deployment": "deployments",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "NetworkPolicy": "networkpolicies",
    "ServiceMonitor": "servicemonitors",
    "ScaledObject": "scaledobjects",
    "YoloService": PLURAL,
}

_lock = threading.Lock()
_api: client.ApiClient | None = None


def api() -> client.ApiClient:
    """One ApiClient per process, from the in-cluster config or else the kubeconfig."""
    global _api
    with _lock:
        if _api is None:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            _api = client.ApiClient()
        return _api


def path(api_version: str, kind: str, namespace: str, name: str | None = None, sub: str | None = None) -> str:
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    p = f"{base}/namespaces/{namespace}/{PLURALS[kind]}"
    if name:
        p += f"/{name}"
    if sub:
        p += f"/{sub}"
    return p


def _call(
    method: str,
    url: str,
    body: Any = None,
    query: list[tuple[str, str]] | None = None,
    content_type: str = "application/json",
) -> Any:
    """One REST call through the shared ApiClient (kubernetes >= 37: param_serialize + call_api)."""
    client_ = api()
    method, full_url, headers, payload, post = client_.param_serialize(
        method,
        url,
        query_params=query or [],
        header_params={"Content-Type": content_type, "Accept": "application/json"},
        body=body,
        auth_settings=["BearerToken"],
    )
    response = client_.call_api(method, full_url, headers, payload, post, _request_timeout=60)
    data = response.read()
    if not 200 <= response.status < 300:
        raise ApiException(status=response.status, reason=response.reason, http_resp=response)
    return json.loads(data) if data else None


def get(api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return _call("GET", path(api_version, kind, namespace, name))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def list_pods(namespace: str, selector: dict[str, str]) -> list[dict[str, Any]]:
    query = [("labelSelector", selector_string({"matchLabels": selector}))]
    return (_call("GET", f"/api/v1/namespaces/{namespace}/pods", query=query) or {}).get("items", [])


def selector_string(selector: dict[str, Any]) -> str:
    """A LabelSelector (matchLabels, matchExpressions) as the API's labelSelector query string."""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], ",".join(e.get("values") or [])
        parts.append(
            {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": key}.get(op, f"!{key}")
        )
    return ",".join(parts)


def namespaces_matching(selector: dict[str, Any]) -> list[str]:
    query = [("labelSelector", selector_string(selector))]
    items = (_call("GET", "/api/v1/namespaces", query=query) or {}).get("items", [])
    return [n["metadata"]["name"] for n in items]


def any_pod(namespace: str, selector: dict[str, Any]) -> bool:
    """Whether a pod in `namespace` matches the selector (one item asked for)."""
    query = [("labelSelector", selector_string(selector)), ("limit", "1")]
    return bool((_call("GET", f"/api/v1/namespaces/{namespace}/pods", query=query) or {}).get("items"))


def apply(manifest: dict[str, Any]) -> dict[str, Any]:
    md = manifest["metadata"]
    url = path(manifest["apiVersion"], manifest["kind"], md["namespace"], md["name"])
    query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
    return _call("PATCH", url, manifest, query, "application/apply-patch+yaml")


def delete(api_version: str, kind: str, namespace: str, name: str) -> bool:
    """Delete; a 404 counts as success. Returns whether something was deleted."""
    try:
        _call("DELETE", path(api_version, kind, namespace, name), {"propagationPolicy": "Background"})
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


def patch_status(namespace: str, name: str, status: dict[str, Any]) -> None:
    url = path(f"{GROUP}/{VERSION}", "YoloService", namespace, name, "status")
    _call("PATCH", url, {"status": status}, content_type="application/merge-patch+json")


# Discovery answers, reused for API_CACHE_S: every reconcile asks (KEDA? ServiceMonitors?), and
# at 1,000 services on a 30 s resync that was 67 discovery GETs a second (BENCHMARKS.md).
API_CACHE_S = 10.0
_api_cache: dict[tuple[str, str], tuple[float, bool]] = {}


def has_api(group_version: str, kind: str) -> bool:
    """Whether the cluster serves a kind (e.g. ServiceMonitor from the Prometheus operator); an
    answer is at most API_CACHE_S old, so a CRD installed later is seen within that."""
    key = (group_version, kind)
    hit = _api_cache.get(key)
    if hit and time.monotonic() - hit[0] < API_CACHE_S:
        return hit[1]
    try:
        resources = _call("GET", f"/apis/{group_version}")
        served = any(r.get("kind") == kind for r in (resources or {}).get("resources", []))
    except ApiException as exc:
        if exc.status not in (403, 404):
            raise
        served = False
    _api_cache[key] = (time.monotonic(), served)
    return served
