"""The operator's only Kubernetes I/O: get, list, server-side apply, delete and status patches,
through the Kubernetes client's dynamic client (`kubernetes.dynamic`): it finds each kind's path
by discovery, so there is no plural map here and no call into the generated client's internals.

Children are written with server-side apply under one field manager, with
force, so the operator owns exactly the fields it sets (and never `replicas`
of a Deployment under an HPA). Answers are parsed as plain JSON (`serialize=False`), not wrapped
in the dynamic client's ResourceInstance: the reconcile reads dicts, thousands a minute at scale.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from kubernetes import client, config, dynamic
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError
from kubernetes.dynamic.resource import Resource

from .spec import GROUP, VERSION

FIELD_MANAGER = "yolo-operator"
TIMEOUT_S = 60
log = logging.getLogger("yolo_operator.kube")

# Always served (built into every supported Kubernetes, or this operator's own CRD); any other
# group is asked for with has_api first, which caches its answer.
ALWAYS_SERVED = frozenset(
    {
        "v1",
        "apps/v1",
        "policy/v1",
        "autoscaling/v2",
        "networking.k8s.io/v1",
        "apiextensions.k8s.io/v1",
        f"{GROUP}/{VERSION}",
    }
)
_NO_CACHE_FILE = "/nonexistent/yolo-operator-discovery.json"  # discovery stays in memory, per process

_client_lock = threading.Lock()
_discovery_lock = threading.Lock()  # the dynamic client's discoverer is not thread-safe
_dynamic: dynamic.DynamicClient | None = None
_resources: dict[tuple[str, str], Resource] = {}


class _MemoryDiscoverer(dynamic.LazyDiscoverer):
    """The dynamic client's lazy discovery without its cache file (in /tmp by default, shared
    between processes and clusters, and unwritable in a read-only container)."""

    def _write_cache(self) -> None:
        pass


class _Client(dynamic.DynamicClient):
    """Every request, discovery's included, with a timeout: a stuck connection is an error."""

    def request(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        params.setdefault("_request_timeout", TIMEOUT_S)
        return super().request(method, path, body, **params)


def dyn() -> dynamic.DynamicClient:
    """One dynamic client per process, from the in-cluster config or else the kubeconfig."""
    global _dynamic
    if _dynamic is not None:
        return _dynamic
    with _client_lock:
        if _dynamic is None:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            _dynamic = _Client(client.ApiClient(), cache_file=_NO_CACHE_FILE, discoverer=_MemoryDiscoverer)
        return _dynamic


def resource(api_version: str, kind: str) -> Resource | None:
    """The kind's API resource, found once by discovery; None where the cluster does not serve it.
    (A kind the dynamic client cannot find makes it re-read every group, so a kind that may be
    missing, KEDA's or the Prometheus operator's, is asked for through has_api's cached answer.)"""
    if api_version not in ALWAYS_SERVED and not has_api(api_version, kind):
        return None
    key = (api_version, kind)
    found = _resources.get(key)
    if found is None:
        d = dyn()
        # Core kinds under the "api" prefix only: else every group with a v1 is read, and a broken
        # aggregated API could fail a Pod lookup.
        where = {"prefix": "api"} if api_version == "v1" else {}
        with _discovery_lock:
            try:
                found = d.resources.get(api_version=api_version, kind=kind, **where)
            except ResourceNotFoundError:  # e.g. the CRD during an uninstall: as a 404 would be
                return None
            _resources[key] = found
    return found


def _json(response: Any) -> Any:
    data = response.data
    return json.loads(data) if data else None


def get(api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
    """The object (namespace None for a cluster-scoped kind), or None where there is none."""
    r = resource(api_version, kind)
    if r is None:
        return None
    try:
        return _json(dyn().get(r, name=name, namespace=namespace, serialize=False))
    except NotFoundError:
        return None


def _list(api_version: str, kind: str, namespace: str | None, **params: Any) -> list[dict[str, Any]]:
    r = resource(api_version, kind)
    if r is None:
        return []
    answer = _json(dyn().get(r, namespace=namespace, serialize=False, **params))
    return list((answer or {}).get("items") or [])


def list_pods(namespace: str, selector: dict[str, str]) -> list[dict[str, Any]]:
    return _list("v1", "Pod", namespace, label_selector=selector_string({"matchLabels": selector}))


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
    items = _list("v1", "Namespace", None, label_selector=selector_string(selector))
    return [n["metadata"]["name"] for n in items]


def any_pod(namespace: str, selector: dict[str, Any]) -> bool:
    """Whether a pod in `namespace` matches the selector (one item asked for)."""
    return bool(_list("v1", "Pod", namespace, label_selector=selector_string(selector), limit=1))


def apply(manifest: dict[str, Any], field_manager: str = FIELD_MANAGER) -> dict[str, Any]:
    """Server-side apply, forced, under `field_manager`; the object as the API server stored it."""
    md = manifest["metadata"]
    r = resource(manifest["apiVersion"], manifest["kind"])
    if r is None:
        raise ApiException(status=404, reason=f"{manifest['apiVersion']} {manifest['kind']} is not served")
    answer: dict[str, Any] = _json(
        dyn().server_side_apply(
            r,
            body=manifest,
            name=md["name"],
            namespace=md.get("namespace"),
            field_manager=field_manager,
            force_conflicts=True,
            serialize=False,
        )
    )
    return answer


def delete(api_version: str, kind: str, namespace: str, name: str) -> bool:
    """Delete; a 404, or a kind the cluster does not serve, counts as success. Returns whether
    something was deleted."""
    r = resource(api_version, kind)
    if r is None:
        return False
    try:
        _json(  # read, so that the connection goes back to the pool
            dyn().delete(r, name=name, namespace=namespace, body={"propagationPolicy": "Background"}, serialize=False)
        )
        return True
    except NotFoundError:
        return False


def patch_status(namespace: str, name: str, status: dict[str, Any]) -> None:
    r = resource(f"{GROUP}/{VERSION}", "YoloService")
    if r is None:  # the CRD is gone (an uninstall): no object to write to
        return
    _json(  # read, so that the connection goes back to the pool
        dyn().patch(
            r.status,
            body={"status": status},
            name=name,
            namespace=namespace,
            content_type="application/merge-patch+json",
            serialize=False,
        )
    )


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
        resources = _discovery(group_version)
        served = any(r.get("kind") == kind for r in (resources or {}).get("resources", []))
    except ApiException as exc:
        if exc.status not in (403, 404):
            raise
        served = False
    _api_cache[key] = (time.monotonic(), served)
    return served


def _discovery(group_version: str) -> dict[str, Any] | None:
    """One API group version's discovery document (its resources)."""
    path = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    answer: dict[str, Any] | None = _json(dyn().request("GET", path, serialize=False))
    return answer
