"""One level-based reconcile for a YoloService: spec → builders → server-side apply → status.

Create, update, resume and the resync timer all call `reconcile`. It reads the
live children (from the child watch's cache, `cache.py`, or by GET), writes only those that differ from the desired state (a no-op
pass issues zero writes), deletes the children of disabled features (404 is
success), and patches status only when it changed.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from . import builders, kube
from .builders import autoscaling
from .cache import CACHE
from .children import Child, desired_children, needs_apply, network_policies_enabled, with_hash
from .settings import SETTINGS
from .spec import InvalidSpec, YoloServiceSpec, parse_spec
from .status import (
    Condition,
    autoscaling_condition,
    deployment_condition,
    invalid_spec_conditions,
    merge_conditions,
    model_condition,
    network_policy_condition,
    now_rfc3339,
    ready_condition,
    replica_summary,
    reported_digests,
    served_models,
)

log = logging.getLogger("yolo_operator")
# The API's answers that refuse a NetworkPolicy for good (invalid, forbidden, no such API): said in
# the NetworkPolicy condition, not retried as a failed reconcile. Conflicts, throttling and server
# errors are retried as for any child.
REFUSED = (400, 403, 404, 422)


@dataclass
class Outcome:
    applied: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    ready: bool = False
    message: str = ""


def _adopted(child: Child, body: kopf.Body) -> dict[str, Any]:
    if child.manifest is None:
        raise ValueError(f"{child.kind} {child.name} is disabled: there is nothing to apply")
    manifest = with_hash(child.manifest)
    kopf.adopt(manifest, owner=body, strict=True)
    # kopf.adopt copies the owner's labels; ours win for the app.kubernetes.io/* keys.
    manifest["metadata"]["labels"].update(child.manifest["metadata"]["labels"])
    return manifest


def _write_status(body: kopf.Body, status: dict[str, Any]) -> bool:
    current = dict(body.get("status") or {})
    if all(current.get(k) == v for k, v in status.items()):
        return False
    kube.patch_status(body["metadata"]["namespace"], body["metadata"]["name"], status)
    return True


def _report_invalid(body: kopf.Body, meta: builders.Meta, exc: InvalidSpec) -> None:
    """Ready=False with reason InvalidSpec and the message; an Event when that is news."""
    conditions = merge_conditions(
        (body.get("status") or {}).get("conditions", []),
        invalid_spec_conditions(str(exc)),
        meta.generation,
        now_rfc3339(),
    )
    if _write_status(body, {"observedGeneration": meta.generation, "conditions": conditions}):
        kopf.warn(body, reason="InvalidSpec", message=str(exc))


def _autoscalers(
    spec: YoloServiceSpec, n: dict[str, str], live: dict[tuple[str, str], Any], keda: bool
) -> dict[str, tuple[str | None, Any]]:
    out = {}
    for component, a in (("triton", spec.triton.autoscaling), ("gateway", spec.gateway.autoscaling)):
        engine = autoscaling.tier_engine(a, keda)
        kind = "ScaledObject" if engine == "keda" else "HorizontalPodAutoscaler"
        out[component] = (engine, live.get((kind, n[component])))
    return out


def _tier_condition(
    kind: str, dep: dict[str, Any] | None, meta: builders.Meta, component: str, scale_to_zero: bool = False
) -> Any:
    """The Deployment's condition; its pods are read only when it is not available, to say why."""
    condition = deployment_condition(kind, dep, scale_to_zero=scale_to_zero)
    if condition.status == "True" or dep is None:
        return condition
    return deployment_condition(
        kind, dep, kube.list_pods(meta.namespace, builders.selector_labels(meta, component)), scale_to_zero
    )


def _model_condition(
    old_status: dict[str, Any], meta: builders.Meta, triton_ready: Any
) -> tuple[Any, dict[str, dict[str, str]]]:
    """ModelCompatible from the Triton pods' init containers, and the digests their oci://
    fetches resolved (status.models). Settled once per generation: when this generation already
    has a True or False answer (or a pod that reports nothing), the pods are not read again
    unless the tier is not ready, and the digests already in the status stand."""
    old = old_status.get("conditions", [])
    prev = next((c for c in old if c.get("type") == "ModelCompatible"), None)
    settled = prev is not None and prev.get("observedGeneration") == meta.generation and prev.get("reason") != "Pending"
    if prev is not None and settled and triton_ready.status == "True":
        kept = {
            m["name"]: {"uri": m.get("source", ""), "digest": m["digest"]}
            for m in old_status.get("models") or []
            if m.get("digest")
        }
        return Condition("ModelCompatible", prev["status"], prev["reason"], prev.get("message", "")), kept
    pods = kube.list_pods(meta.namespace, builders.selector_labels(meta, "triton"))
    condition = model_condition(pods)
    if condition.reason == "Pending" and triton_ready.status == "True":  # serving, yet no pod says how
        condition = Condition(
            "ModelCompatible",
            "Unknown",
            "NotReported",
            "the Triton pods serve, but none reported how it prepared the model",
        )
    return condition, reported_digests(pods)


# A peer found to select pods is not listed again for PEER_MATCH_CACHE_S (the common case, at
# every reconcile of every service with gatewayFrom); one that selects nothing is asked again at
# each reconcile, so PeerMatchesNothing clears as soon as its pods appear.
PEER_MATCH_CACHE_S = 60.0
_peer_matches: dict[tuple[str, str], float] = {}


def _unmatched_peers(spec: YoloServiceSpec, namespace: str) -> list[str]:
    """The gatewayFrom peers that select no pod now (no client there could reach the gateway).
    An ipBlock is not judged, nor a peer whose namespaces or pods the operator may not list: an
    API error leaves the peer unjudged and never fails the reconcile."""
    unmatched = []
    now = time.monotonic()
    for i, peer in enumerate(spec.network_policy.gateway_from):
        if peer.ip_block is not None:
            continue
        p = peer.manifest()
        key = (namespace, json.dumps(p, sort_keys=True))
        if now - _peer_matches.get(key, -PEER_MATCH_CACHE_S) < PEER_MATCH_CACHE_S:
            continue
        try:
            namespaces = kube.namespaces_matching(p["namespaceSelector"]) if "namespaceSelector" in p else [namespace]
            if "podSelector" in p:
                found = any(kube.any_pod(ns, p["podSelector"]) for ns in namespaces)
            else:
                found = bool(namespaces)
        except ApiException as exc:
            log.info("gatewayFrom[%d] not judged: %s", i, _api_message(exc))
            continue
        if found:
            if len(_peer_matches) > 10_000:  # services come and go: forget the old answers
                _peer_matches.clear()
            _peer_matches[key] = now
        else:
            _peer_matches.pop(key, None)
            unmatched.append(f"gatewayFrom[{i}] ({json.dumps(p, sort_keys=True, separators=(',', ':'))})")
    return unmatched


def _api_message(exc: ApiException) -> str:
    """The API server's own message (a Status object's), else its reason."""
    try:
        return str(json.loads(exc.body or "{}").get("message") or f"{exc.status} {exc.reason}")
    except (ValueError, AttributeError):
        return f"{exc.status} {exc.reason}"


_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


def reconcile(body: kopf.Body, logger: logging.Logger | kopf.Logger = log) -> Outcome:
    """One YoloService at a time: kopf's handlers, the child watch and the timer may all ask at once."""
    md = body.get("metadata") or {}
    key = (md.get("namespace") or "", md.get("name") or "")
    with _locks_guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        return _reconcile(body, logger)


def _reconcile(body: kopf.Body, logger: logging.Logger | kopf.Logger) -> Outcome:
    if (body.get("metadata") or {}).get("deletionTimestamp"):
        # Being deleted: the garbage collector takes the children through their owner
        # references. Writing now would only race kopf's removal of its finalizer.
        return Outcome(ready=True, message="being deleted")
    meta = builders.Meta.from_body(body)
    try:
        spec: YoloServiceSpec = parse_spec(body.get("spec") or {}, SETTINGS.images())
    except InvalidSpec as exc:
        _report_invalid(body, meta, exc)
        raise kopf.PermanentError(f"invalid spec: {exc}") from exc
    outcome = Outcome()
    refused: list[str] = []
    live: dict[tuple[str, str], dict[str, Any] | None] = {}
    keda = kube.has_api(autoscaling.KEDA_API, "ScaledObject")
    # ServiceMonitors only where the CRD exists and the chart granted them (else every reconcile would 403).
    monitors = SETTINGS.service_monitors and kube.has_api("monitoring.coreos.com/v1", "ServiceMonitor")
    children = desired_children(
        spec,
        meta,
        monitors,
        keda,
        SETTINGS.prometheus_url,
        SETTINGS.network_policies,
        SETTINGS.network_policy_metrics_from,
    )
    for child in children:
        current = CACHE.read(
            child.kind,
            meta.namespace,
            child.name,
            functools.partial(kube.get, child.api_version, child.kind, meta.namespace, child.name),
        )
        if child.manifest is None:
            if current is not None:
                token = CACHE.token()
                if kube.delete(child.api_version, child.kind, meta.namespace, child.name):
                    outcome.deleted.append(child.ref)
                CACHE.written(child.kind, meta.namespace, child.name, None, token)
            live[(child.kind, child.name)] = None
            continue
        desired = _adopted(child, body)
        if needs_apply(desired, current):
            token = CACHE.token()
            try:
                current = kube.apply(desired)
            except ApiException as exc:
                # A refused NetworkPolicy does not stop the service: the condition says why.
                if child.kind != "NetworkPolicy" or exc.status not in REFUSED:
                    raise
                refused.append(f"{child.ref}: {_api_message(exc)}")
                logger.warning("the API refused %s: %s", child.ref, refused[-1])
                continue
            CACHE.written(child.kind, meta.namespace, child.name, current, token)
            outcome.applied.append(child.ref)
        live[(child.kind, child.name)] = current

    for ref in outcome.applied:
        kopf.info(body, reason="Applied", message=f"applied {ref}")
    for ref in outcome.deleted:
        kopf.info(body, reason="Deleted", message=f"deleted {ref} (feature disabled)")
    if outcome.applied or outcome.deleted:
        logger.info("applied %s; deleted %s", outcome.applied or "nothing", outcome.deleted or "nothing")

    n = builders.names(meta)
    triton = live.get(("Deployment", n["triton"]))
    gateway = live.get(("Deployment", n["gateway"]))
    zero = spec.triton.autoscaling.scale_to_zero and autoscaling.tier_engine(spec.triton.autoscaling, keda) == "keda"
    old = (body.get("status") or {}).get("conditions", [])
    parts = [
        _tier_condition("TritonReady", triton, meta, "triton", zero),
        _tier_condition("GatewayReady", gateway, meta, "gateway"),
    ]
    model, digests = _model_condition(body.get("status") or {}, meta, parts[0])
    parts.insert(0, model)
    parts.append(
        autoscaling_condition(
            _autoscalers(spec, n, live, keda), keda, spec.triton.autoscaling.scale_to_zero and not zero
        )
    )
    ready = ready_condition(parts)
    # Not part of Ready: the service serves with or without its policies.
    netpol = network_policies_enabled(spec, SETTINGS.network_policies)
    unmatched = _unmatched_peers(spec, meta.namespace) if netpol and not refused else []
    parts.append(network_policy_condition(netpol, refused, unmatched))
    status = {
        "observedGeneration": meta.generation,
        "conditions": merge_conditions(old, [*parts, ready], meta.generation, now_rfc3339()),
        "url": f"http://{n['service']}.{meta.namespace}.svc.cluster.local:{spec.service.port}",
        "tritonReplicas": replica_summary(triton),
        "gatewayReplicas": replica_summary(gateway),
        "models": served_models(spec, digests),
    }
    _write_status(body, status)
    outcome.ready = ready.status == "True"
    outcome.message = ready.message
    return outcome
