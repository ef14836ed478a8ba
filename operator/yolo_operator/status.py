"""Pure status computation: conditions from the live children, and merging that keeps
lastTransitionTime unless a condition's status flips."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

CONDITION_TYPES = ("ModelCompatible", "TritonReady", "GatewayReady", "AutoscalingReady", "Ready")
# The reasons yolo-model-prepare gives for a file it cannot serve (the last line of its log):
# they become TritonReady's and Ready's reason, and ModelCompatible's.
MODEL_REASONS = ("ModelIncompatible", "SpecContradictsModel")


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str  # CamelCase
    message: str

    def to_dict(self, generation: int, now: str) -> dict[str, Any]:
        return {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": now,
            "observedGeneration": generation,
        }


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_IMAGE_PULL = {"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"}
_FETCHER = "fetch-model"


def _tail(text: str | None, limit: int = 300) -> str:
    """The last lines of a termination message (the container's log tail), on one line."""
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    out = " | ".join(lines[-3:])
    return out if len(out) <= limit else "…" + out[-limit:]


def _failed_exit(status: dict[str, Any]) -> dict[str, Any] | None:
    for key in ("state", "lastState"):
        term = (status.get(key) or {}).get("terminated")
        if term and term.get("exitCode", 0) != 0:
            return term
    return None


def _last_line_reason(message: str | None, reasons: Collection[str]) -> tuple[str, str] | None:
    """`<Reason>: <why>` on the last line of a container's log (its termination message), for
    one of `reasons`."""
    lines = [ln.strip() for ln in (message or "").strip().splitlines() if ln.strip()]
    reason, sep, why = (lines[-1] if lines else "").partition(": ")
    return (reason, why) if sep and reason in reasons else None


def _model_problem(message: str | None) -> tuple[str, str] | None:
    """The init container's reason, when it refused the model file."""
    return _last_line_reason(message, MODEL_REASONS)


# A container's own refusal at start, its last log line: a certificate (the gateway's tls.py, Triton's TLS check).
START_REASONS = frozenset({"TLSInvalid"})


def _fetcher_state(pod: dict[str, Any]) -> dict[str, Any] | None:
    for cs in (pod.get("status") or {}).get("initContainerStatuses") or []:
        if cs.get("name") == _FETCHER:
            return _failed_exit(cs) or ((cs.get("state") or {}).get("terminated"))
    return None


def _newest_first(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pods not being deleted, the newest first: whose init container report counts."""
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    return sorted(live, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "", reverse=True)


def model_condition(pods: list[dict[str, Any]]) -> Condition:
    """ModelCompatible, from the newest Triton pod whose init container has finished: its report
    (the termination message: how the file is served, and how it batches), or why it refused it."""
    t = "ModelCompatible"
    finished = False
    for pod in _newest_first(pods):
        term = _fetcher_state(pod)
        if not term:
            continue
        finished = True
        if term.get("exitCode", 0) != 0:
            if model := _model_problem(term.get("message")):
                return Condition(t, "False", *model)
            continue
        try:
            report = json.loads(term.get("message") or "")
            return Condition(t, "True", str(report["reason"]), str(report["message"]))
        except (ValueError, KeyError, TypeError):
            continue
    if finished:
        return Condition(
            t,
            "Unknown",
            "NotReported",
            "the model's init container left no report (a simulated node, or an older model-fetcher image)",
        )
    return Condition(t, "Unknown", "Pending", "no Triton pod has prepared the model yet")


def pod_problem(pods: list[dict[str, Any]]) -> tuple[str, str] | None:
    """Why a Deployment's pods are not ready, as (CamelCase reason, message): what the
    scheduler or the kubelet said. None when nothing is wrong beyond waiting."""
    for pod in pods:
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        st = pod.get("status") or {}
        for c in st.get("conditions") or []:
            if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable":
                return "Unschedulable", c.get("message", "")
        for kind, statuses in (
            ("init container", st.get("initContainerStatuses")),
            ("container", st.get("containerStatuses")),
        ):
            for cs in statuses or []:
                name = cs.get("name", "")
                waiting = (cs.get("state") or {}).get("waiting") or {}
                if waiting.get("reason") in _IMAGE_PULL:
                    return (
                        "ImagePullFailed",
                        f"{kind} {name}: {waiting['reason']}: {waiting.get('message', '')}".strip(),
                    )
                term = _failed_exit(cs)
                if term is None:
                    continue
                detail = _tail(term.get("message")) or term.get("reason", "")
                if name == _FETCHER and (model := _model_problem(term.get("message"))):
                    return model
                if name == _FETCHER:
                    return "ModelFetchFailed", f"the model could not be fetched (exit {term.get('exitCode')}): {detail}"
                if gateway := _last_line_reason(term.get("message"), START_REASONS):
                    return gateway
                if waiting.get("reason") == "CrashLoopBackOff" or cs.get("restartCount", 0):
                    return (
                        "CrashLoopBackOff",
                        f"{kind} {name} restarted {cs.get('restartCount', 0)} times; last exit {term.get('exitCode')}: {detail}",
                    )
    return None


def deployment_condition(
    kind: str, dep: dict[str, Any] | None, pods: list[dict[str, Any]] | None = None, scale_to_zero: bool = False
) -> Condition:
    """TritonReady / GatewayReady from a Deployment; when it is not available, the pods' own
    trouble (unschedulable, image pull, model fetch, crash loop) is the reason and message.
    A tier that may scale to zero is ready at zero: its first request starts it."""
    if dep is None:
        return Condition(kind, "False", "DeploymentMissing", "the Deployment does not exist yet")
    st = dep.get("status") or {}
    want = dep.get("spec", {}).get("replicas", 1)
    ready = int(st.get("readyReplicas", 0) or 0)
    available = int(st.get("availableReplicas", 0) or 0)
    updated = int(st.get("updatedReplicas", 0) or 0)
    current = int(st.get("observedGeneration", 0) or 0) >= int(dep.get("metadata", {}).get("generation", 0) or 0)
    if available >= 1 and current and updated >= min(want, 1):
        return Condition(kind, "True", "MinimumReplicasAvailable", f"{ready}/{want} replicas ready")
    if want == 0 and scale_to_zero:
        return Condition(
            kind,
            "True",
            "ScaledToZero",
            "idle at 0 replicas; the first request starts one, and the gateway holds it meanwhile",
        )
    if want == 0:
        return Condition(kind, "False", "ScaledToZero", "the Deployment has 0 replicas")
    problem = pod_problem(pods or [])
    if problem is not None:
        return Condition(kind, "False", *problem)
    for c in st.get("conditions") or []:
        if c.get("type") == "Progressing" and c.get("status") == "False":
            return Condition(kind, "False", "ProgressDeadlineExceeded", c.get("message", ""))
    return Condition(kind, "False", "ReplicasNotReady", f"{ready}/{want} replicas ready")


def autoscaling_condition(
    tiers: dict[str, tuple[str | None, dict[str, Any] | None]],
    keda_installed: bool = False,
    zero_without_keda: bool = False,
) -> Condition:
    """From each tier's (engine, live autoscaler): 'hpa' with its HPA, 'keda' with its ScaledObject, None when off."""
    t = "AutoscalingReady"
    if not any(engine for engine, _ in tiers.values()):
        return Condition(t, "True", "AutoscalingDisabled", "autoscaling is off; replicas come from the spec")
    problems: list[tuple[str, str]] = []
    for component, (engine, obj) in tiers.items():
        if engine is None:
            continue
        if engine == "keda" and not keda_installed:
            problems.append(
                (
                    "KEDAMissing",
                    f"{component}: autoscaling.engine is keda, but the cluster has no KEDA (keda.sh ScaledObject)",
                )
            )
        elif obj is None:
            kind = "ScaledObject" if engine == "keda" else "HPA"
            problems.append((f"{kind}Missing", f"{component}: {kind} missing"))
        else:
            for c in (obj.get("status") or {}).get("conditions") or []:
                bad_hpa = engine == "hpa" and c.get("type") in ("AbleToScale", "ScalingActive")
                bad_keda = engine == "keda" and c.get("type") == "Ready"
                if (bad_hpa or bad_keda) and c.get("status") == "False":
                    problems.append(
                        ("MetricsUnavailable", f"{component}: {c.get('reason')}: {c.get('message', '')}".strip())
                    )
    if problems:
        return Condition(t, "False", problems[0][0], "; ".join(p for _, p in problems))
    if zero_without_keda:
        return Condition(
            t,
            "True",
            "ScaleToZeroNeedsKEDA",
            "triton.autoscaling.minReplicas is 0 but the cluster has no KEDA: an HPA keeps at least 1 replica",
        )
    engines = sorted({engine for engine, _ in tiers.values() if engine})
    by = " and ".join("KEDA ScaledObjects" if e == "keda" else "HPAs" for e in engines)
    return Condition(
        t, "True", "AutoscalersActive", f"{by} scale Triton on its queue and the gateway on in-flight requests"
    )


def network_policy_condition(enabled: bool, refused: list[str], unmatched: list[str] | None = None) -> Condition:
    """NetworkPolicy: whether both tiers' policies are in place (not part of Ready)."""
    if not enabled:
        return Condition(
            "NetworkPolicy", "False", "Disabled", "networkPolicy.enabled is false: any pod may open Triton's ports"
        )
    if refused:
        return Condition("NetworkPolicy", "False", "ApplyFailed", "the API refused " + "; ".join(refused))
    if unmatched:
        return Condition(
            "NetworkPolicy",
            "False",
            "PeerMatchesNothing",
            "the policies are applied, but "
            + "; ".join(unmatched)
            + " selects no pod now: no client there can reach the gateway",
        )
    return Condition(
        "NetworkPolicy",
        "True",
        "Applied",
        "Triton takes gRPC only from this service's gateway pods and metrics only from the metrics peers",
    )


def ready_condition(parts: list[Condition]) -> Condition:
    failing = [p for p in parts if p.type in ("TritonReady", "GatewayReady") and p.status != "True"]
    if failing:
        model = next((p.reason for p in failing if p.reason in MODEL_REASONS), None)  # the file itself is the trouble
        return Condition(
            "Ready", "False", model or "ComponentsNotReady", "; ".join(f"{p.type}: {p.message}" for p in failing)
        )
    return Condition("Ready", "True", "AllComponentsReady", "Triton and the gateway are serving")


def merge_conditions(
    old: list[dict[str, Any]], new: list[Condition], generation: int, now: str
) -> list[dict[str, Any]]:
    """New conditions; lastTransitionTime is kept from `old` unless the status changed."""
    previous = {c.get("type"): c for c in old or []}
    out = []
    for c in new:
        d = c.to_dict(generation, now)
        prev = previous.get(c.type)
        if prev is not None and prev.get("status") == c.status and prev.get("lastTransitionTime"):
            d["lastTransitionTime"] = prev["lastTransitionTime"]
        out.append(d)
    return out


def invalid_spec_conditions(message: str) -> list[Condition]:
    return [Condition("Ready", "False", "InvalidSpec", message)]


def replica_summary(dep: dict[str, Any] | None) -> str:
    if dep is None:
        return "0/0"
    st = dep.get("status") or {}
    return f"{int(st.get('readyReplicas', 0) or 0)}/{int(dep.get('spec', {}).get('replicas', 0) or 0)}"


def _source(src: Any) -> str:
    return src.uri if src.uri else f"pvc://{src.pvc.claim_name}/{src.pvc.path.lstrip('/')}"


def reported_digests(pods: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """model -> {"uri", "digest"} for the oci:// sources, from the newest Triton pod whose init
    container finished and reported them."""
    for pod in _newest_first(pods):
        term = _fetcher_state(pod)
        if not term or term.get("exitCode", 0) != 0:
            continue
        try:
            digests = json.loads(term.get("message") or "").get("digests")
        except (ValueError, AttributeError):
            continue
        if isinstance(digests, dict):
            return {str(k): v for k, v in digests.items() if isinstance(v, dict)}
    return {}


def served_models(spec: Any, digests: dict[str, dict[str, str]] | None = None) -> list[dict[str, Any]]:
    """status.models: every Triton model of the service, with its role (current, tier, canary,
    shadow), the file it serves and, for a canary or shadow, its share of the default tier. An
    oci:// source also has the manifest digest it resolved to, once a pod reported fetching that
    very reference."""
    out: list[dict[str, Any]] = []
    default = spec.default_tier
    for role, model in spec.model_names().items():
        entry: dict[str, Any] = {"name": model}
        if role.startswith("tier:"):
            tier = role.removeprefix("tier:")
            entry |= {
                "role": "current",
                "tier": tier,
                "default": tier == default.name,
                "source": _source(spec.model.source),
            }
        elif role == "current":
            entry |= {"role": "current", "source": _source(spec.model.source)}
        else:
            v = spec.variants[role]
            entry |= {"role": role, "source": _source(v.source), "percent": v.percent}
        # The tiers share the current version's file: its fetch is recorded under the model's name.
        got = (digests or {}).get(model) or (digests or {}).get(spec.model.name if role.startswith("tier:") else "")
        if got and got.get("uri") == entry["source"] and got.get("digest"):
            entry["digest"] = got["digest"]
        out.append(entry)
    return out
