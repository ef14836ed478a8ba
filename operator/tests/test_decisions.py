"""Pure reconcile decisions: spec validation, what to apply or delete, drift, and conditions."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from op_helpers import META, sample_spec

from yolo_operator import builders as b
from yolo_operator.children import desired_children, is_subset, needs_apply, with_hash
from yolo_operator.spec import InvalidSpec, YoloServiceSpec, parse_spec
from yolo_operator.status import (
    Condition,
    autoscaling_condition,
    deployment_condition,
    merge_conditions,
    model_condition,
    ready_condition,
)

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "charts" / "yolo-operator" / "crds" / "yoloservices.serving.yolo.dev.yaml"


def refs(spec: dict, sm: bool = False) -> dict[str, bool]:
    return {c.ref: c.manifest is not None for c in desired_children(parse_spec(spec), META, sm)}


def test_minimal_spec_takes_defaults():
    s = parse_spec({"model": {"classNames": ["a"], "source": {"uri": "https://x/m.onnx"}}})
    assert (s.model.name, s.model.format, s.model.input_size, s.model.class_names) == ("yolo", "onnx", None, ["a"])
    bare = parse_spec({"model": {"source": {"uri": "https://x/m.onnx"}}}).model  # the file says the rest
    assert (bare.input, bare.output, bare.input_size, bare.class_names) == (None, None, None, None)
    assert s.triton.autoscaling.enabled and s.triton.max_batch_size == 16 and s.triton.gpus == 1
    assert s.gateway.autoscaling.min_replicas == 2 and s.service.port == 80


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"model.classNames": ["a", "b", "a"]}, "duplicates"),
        ({"model.source": {"uri": "ftp://x/m.onnx"}}, "s3://"),
        ({"model.source": {"uri": "https://x", "pvc": {"claimName": "c", "path": "p"}}}, "exactly one"),
        ({"model.inputSize": 330}, "multiple of 32"),
        ({"triton.autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, "minReplicas"),
        ({"triton.dynamicBatching": {"preferredBatchSizes": [64]}}, "preferredBatchSizes"),
        ({"model.format": "tensorrt", "triton.resources": {"limits": {"memory": "1Gi"}}}, "needs a GPU"),
        ({"model.format": "tensorrt", "model.classNames": None}, "set model.classNames"),
    ],
)
def test_invalid_specs_are_explained(patch, message):
    with pytest.raises(InvalidSpec, match=message):
        parse_spec(sample_spec(**patch))


def _schema_fields(schema: dict) -> set[str]:
    out = set()
    for name, sub in (schema.get("properties") or {}).items():
        out.add(name)
        out |= {f"{name}.{f}" for f in _schema_fields(sub.get("items", sub))}
    return out


def _model_fields(model: type) -> set[str]:
    out = set()
    for name, info in model.model_fields.items():
        alias = info.alias or name
        out.add(alias)
        ann = info.annotation
        for candidate in getattr(ann, "__args__", (ann,)):
            if isinstance(candidate, type) and hasattr(candidate, "model_fields"):
                out |= {f"{alias}.{f}" for f in _model_fields(candidate)}
    return out


def test_crd_schema_and_pydantic_model_name_the_same_fields():
    crd = yaml.safe_load(CRD.read_text())
    spec_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    # Kubernetes' own types, kept as written in the CRD (x-kubernetes-preserve-unknown-fields):
    # resources, and NetworkPolicyPeers, which the operator validates itself.
    free = ("triton.resources.", "gateway.resources.", "networkPolicy.gatewayFrom.")
    schema = {f for f in _schema_fields(spec_schema) if not f.startswith(free)}
    model = {f for f in _model_fields(YoloServiceSpec) if not f.startswith(free)}
    assert schema == model


def _apply_defaults(schema: dict, value: object) -> object:
    """The API server's structural defaulting: a missing property with a default gets it, then recurse."""
    if not isinstance(value, dict):
        return value
    out = dict(value)
    for name, sub in (schema.get("properties") or {}).items():
        if name not in out and "default" in sub:
            out[name] = copy.deepcopy(sub["default"])
        if name in out:
            out[name] = _apply_defaults(sub, out[name])
    return out


@pytest.mark.parametrize(
    "spec",
    [
        {"model": {"classNames": ["a"], "source": {"uri": "https://x/m.onnx"}}},
        {
            "model": {"classNames": ["a"], "source": {"uri": "https://x/m.onnx"}},
            "triton": {"autoscaling": {"minReplicas": 0}},
            "gateway": {"autoscaling": {}},
        },
        {
            "model": {"classNames": ["a"], "source": {"uri": "https://x/m.onnx"}},
            "triton": {"dynamicBatching": {}},
            "gateway": {"limits": {}, "defaults": {}},
        },
    ],
)
def test_crd_defaults_are_the_pydantic_defaults(spec: dict):
    """What the API server stores after its defaulting parses to the same spec as the bare object:
    the CRD's defaults and the pydantic model's cannot drift apart."""
    crd = yaml.safe_load(CRD.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    defaulted = _apply_defaults(schema, spec)
    assert defaulted != spec, "the CRD defaults something"
    assert parse_spec(defaulted) == parse_spec(spec)


def test_children_follow_feature_switches():
    base = refs(sample_spec())
    assert all(base.values()) and len(base) == 11  # NetworkPolicies included
    off = refs(sample_spec(**{"triton.autoscaling": {"enabled": False}, "podDisruptionBudget": {"enabled": False}}))
    assert (
        off["HorizontalPodAutoscaler/shapes-triton"] is False and off["HorizontalPodAutoscaler/shapes-gateway"] is True
    )
    assert off["PodDisruptionBudget/shapes-triton"] is False and off["PodDisruptionBudget/shapes-gateway"] is False
    assert "ServiceMonitor/shapes" not in refs(sample_spec(**{"monitoring.serviceMonitor": True}), sm=False)
    assert refs(sample_spec(**{"monitoring.serviceMonitor": True}), sm=True)["ServiceMonitor/shapes"] is True
    assert refs(sample_spec(), sm=True)["ServiceMonitor/shapes"] is False  # disabled: delete if present


def _live(manifest: dict) -> dict:
    """What the API server returns: our fields plus defaults and bookkeeping, quantities canonicalised."""
    live = copy.deepcopy(manifest)
    live["metadata"].update({"uid": "u", "resourceVersion": "7", "generation": 1, "managedFields": []})
    if live["kind"] == "Deployment":
        live["spec"]["progressDeadlineSeconds"] = 600
        live["spec"]["revisionHistoryLimit"] = 10
        for c in live["spec"]["template"]["spec"]["containers"]:
            c["imagePullPolicy"] = "IfNotPresent"
            c["terminationMessagePath"] = "/dev/termination-log"
        live["status"] = {"replicas": 1}
    return live


def test_no_op_means_no_apply_and_drift_means_apply():
    spec = parse_spec(sample_spec(**{"gateway.resources": {"requests": {"cpu": "0.5", "memory": "512Mi"}}}))
    for child in desired_children(spec, META, False):
        if child.manifest is None:
            continue
        desired = with_hash(child.manifest)
        live = _live(desired)
        assert needs_apply(desired, None)
        assert not needs_apply(desired, live), child.ref
    dep = with_hash(b.build_gateway_deployment(spec, META))
    live = _live(dep)
    live["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "500m"  # canonical form of 0.5
    assert not needs_apply(dep, live)
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "someone/else:1"  # drift
    assert needs_apply(dep, live)
    changed = with_hash(
        b.build_gateway_deployment(parse_spec(sample_spec(**{"gateway.limits": {"maxPixels": 2048}})), META)
    )
    assert needs_apply(changed, _live(dep))  # the spec changed: the hash differs


def test_zero_values_the_server_omits_still_match():
    svc = with_hash(b.build_triton_service(parse_spec(sample_spec()), META))
    live = _live(svc)
    del live["spec"]["publishNotReadyAddresses"]  # false is omitted by the API server
    assert not needs_apply(svc, live)
    assert is_subset({"a": False, "b": "", "c": [], "d": {}, "e": None}, {})
    assert not is_subset({"a": 0}, {}) and not is_subset({"a": True}, {})  # 0 is a real value: replicas 0


def test_removed_field_is_applied_even_if_live_is_a_superset():
    with_replicas = with_hash(
        b.build_triton_deployment(parse_spec(sample_spec(**{"triton.autoscaling": {"enabled": False}})), META)
    )
    under_hpa = with_hash(b.build_triton_deployment(parse_spec(sample_spec()), META))
    assert is_subset(under_hpa["spec"], with_replicas["spec"])
    assert needs_apply(under_hpa, _live(with_replicas))  # drop our ownership of replicas once


def test_conditions_flip_only_on_status_change():
    old = merge_conditions([], [Condition("Ready", "False", "ComponentsNotReady", "0/1")], 1, "2026-01-01T00:00:00Z")
    same = merge_conditions(old, [Condition("Ready", "False", "ComponentsNotReady", "0/2")], 2, "2026-01-01T00:05:00Z")
    assert same[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z" and same[0]["observedGeneration"] == 2
    flipped = merge_conditions(
        same, [Condition("Ready", "True", "AllComponentsReady", "ok")], 2, "2026-01-01T00:06:00Z"
    )
    assert flipped[0]["lastTransitionTime"] == "2026-01-01T00:06:00Z"


def test_deployment_and_ready_conditions():
    missing = deployment_condition("TritonReady", None)
    assert (missing.status, missing.reason) == ("False", "DeploymentMissing")
    dep = {
        "metadata": {"generation": 2},
        "spec": {"replicas": 2},
        "status": {"observedGeneration": 2, "readyReplicas": 1, "availableReplicas": 1, "updatedReplicas": 2},
    }
    ok = deployment_condition("TritonReady", dep)
    assert (ok.status, ok.reason) == ("True", "MinimumReplicasAvailable")
    stale = deployment_condition("GatewayReady", {**dep, "status": {**dep["status"], "observedGeneration": 1}})
    assert stale.status == "False"
    assert ready_condition([ok, stale]).status == "False"
    assert ready_condition([ok, deployment_condition("GatewayReady", dep)]).reason == "AllComponentsReady"
    # at zero: not ready, unless the tier may scale to zero (its first request starts it)
    zero = {"metadata": {"generation": 3}, "spec": {"replicas": 0}, "status": {"observedGeneration": 3}}
    assert (deployment_condition("TritonReady", zero).status, deployment_condition("TritonReady", zero).reason) == (
        "False",
        "ScaledToZero",
    )
    idle = deployment_condition("TritonReady", zero, scale_to_zero=True)
    assert (idle.status, idle.reason) == ("True", "ScaledToZero")
    assert ready_condition([idle, ok]).status == "True"


def test_autoscaling_condition():
    assert autoscaling_condition({"triton": (None, None), "gateway": (None, None)}).reason == "AutoscalingDisabled"
    assert autoscaling_condition({"triton": ("hpa", None), "gateway": (None, None)}).reason == "HPAMissing"
    failing = {
        "status": {
            "conditions": [
                {"type": "ScalingActive", "status": "False", "reason": "FailedGetPodsMetric", "message": "no metrics"}
            ]
        }
    }
    c = autoscaling_condition({"triton": ("hpa", failing), "gateway": ("hpa", {"status": {}})})
    assert (c.status, c.reason) == ("False", "MetricsUnavailable") and "FailedGetPodsMetric" in c.message
    assert autoscaling_condition({"triton": ("hpa", {}), "gateway": ("hpa", {})}).status == "True"
    # KEDA: its ScaledObject's Ready condition; engine keda without KEDA installed says so
    so_failing = {
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "ScaledObjectCheckFailed",
                    "message": "prometheus unreachable",
                }
            ]
        }
    }
    c = autoscaling_condition({"triton": ("keda", so_failing), "gateway": ("keda", {})}, keda_installed=True)
    assert (c.status, c.reason) == ("False", "MetricsUnavailable") and "prometheus unreachable" in c.message
    assert autoscaling_condition({"triton": ("keda", {}), "gateway": ("hpa", {})}, keda_installed=True).status == "True"
    assert (
        autoscaling_condition({"triton": ("keda", None), "gateway": (None, None)}, keda_installed=False).reason
        == "KEDAMissing"
    )
    c = autoscaling_condition({"triton": ("hpa", {}), "gateway": ("hpa", {})}, zero_without_keda=True)
    assert (c.status, c.reason) == ("True", "ScaleToZeroNeedsKEDA")


# --------------------------------------------------------------------------- why a tier is not ready

_DEP = {"metadata": {"generation": 1}, "spec": {"replicas": 1}, "status": {"observedGeneration": 1, "replicas": 1}}


def _pod(**status) -> dict:
    return {"metadata": {"name": "p"}, "status": status}


@pytest.mark.parametrize(
    "pod,reason,fragment",
    [
        (
            _pod(
                conditions=[
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                    }
                ]
            ),
            "Unschedulable",
            "Insufficient nvidia.com/gpu",
        ),
        (
            _pod(
                initContainerStatuses=[
                    {
                        "name": "fetch-model",
                        "restartCount": 2,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {
                            "terminated": {
                                "exitCode": 1,
                                "reason": "Error",
                                "message": "download failed\nfatal error: An error occurred (403) when calling the HeadObject operation: Forbidden\n",
                            }
                        },
                    }
                ]
            ),
            "ModelFetchFailed",
            "(403)",
        ),
        (
            _pod(
                initContainerStatuses=[
                    {
                        "name": "fetch-model",
                        "state": {
                            "terminated": {
                                "exitCode": 22,
                                "message": "curl: (22) The requested URL returned error: 404",
                            }
                        },
                    }
                ]
            ),
            "ModelFetchFailed",
            "returned error: 404",
        ),
        (
            _pod(
                initContainerStatuses=[
                    {
                        "name": "fetch-model",
                        "restartCount": 1,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {
                            "terminated": {
                                "exitCode": 3,
                                "message": "yolo-model-prepare: /models/yolo/1/model.onnx: the model cannot be served\n"
                                "ModelIncompatible: the file is a segmentation model (metadata task=segment; outputs output0 [1, 116, 8400], output1 [1, 32, 160, 160])\n",
                            }
                        },
                    }
                ]
            ),
            "ModelIncompatible",
            "a segmentation model",
        ),
        (
            _pod(
                containerStatuses=[
                    {
                        "name": "triton",
                        "state": {"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "x"'}},
                    }
                ]
            ),
            "ImagePullFailed",
            "Back-off pulling",
        ),
        (
            _pod(
                containerStatuses=[
                    {
                        "name": "triton",
                        "restartCount": 4,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {
                            "terminated": {
                                "exitCode": 1,
                                "message": "error: creating server: Internal - failed to load all models",
                            }
                        },
                    }
                ]
            ),
            "CrashLoopBackOff",
            "failed to load all models",
        ),
        (
            _pod(
                containerStatuses=[
                    {
                        "name": "gateway",
                        "restartCount": 2,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {
                            "terminated": {
                                "exitCode": 1,
                                "message": "2026-12-04 INFO starting\nTLSInvalid: the private key tls.key is missing "
                                "(/etc/yolo-gateway/tls/tls.key): does the Secret exist and have that key?\n",
                            }
                        },
                    }
                ]
            ),
            "TLSInvalid",
            "the private key tls.key is missing",
        ),
    ],
)
def test_a_tier_that_is_not_ready_says_why(pod, reason, fragment):
    c = deployment_condition("TritonReady", _DEP, [pod])
    assert (c.status, c.reason) == ("False", reason)
    assert fragment in c.message


def test_pods_that_are_only_starting_are_not_a_problem():
    starting = _pod(
        initContainerStatuses=[{"name": "fetch-model", "state": {"running": {}}}],
        containerStatuses=[{"name": "triton", "state": {"waiting": {"reason": "PodInitializing"}}}],
    )
    assert deployment_condition("TritonReady", _DEP, [starting]).reason == "ReplicasNotReady"


def test_the_model_condition_quotes_the_init_containers_report():
    report = '{"reason":"BatchAxisRewritten","message":"input images fp32-nchw 640x640, ...; the export fixed the batch to 1"}'
    done = _pod(
        initContainerStatuses=[
            {"name": "fetch-model", "state": {"terminated": {"exitCode": 0, "reason": "Completed", "message": report}}}
        ]
    )
    c = model_condition([done])
    assert (c.type, c.status, c.reason) == (
        "ModelCompatible",
        "True",
        "BatchAxisRewritten",
    ) and "fixed the batch to 1" in c.message
    refused = _pod(
        initContainerStatuses=[
            {
                "name": "fetch-model",
                "lastState": {
                    "terminated": {
                        "exitCode": 3,
                        "message": "SpecContradictsModel: model.classNames has 3 names, but ...",
                    }
                },
            }
        ]
    )
    c = model_condition([refused])
    assert (c.status, c.reason, c.message) == ("False", "SpecContradictsModel", "model.classNames has 3 names, but ...")
    assert model_condition([]).reason == "Pending"
    simulated = _pod(
        initContainerStatuses=[{"name": "fetch-model", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]
    )
    assert model_condition([simulated]).reason == "NotReported"


def test_ready_names_the_model_when_the_file_is_the_trouble():
    parts = [
        Condition("TritonReady", "False", "ModelIncompatible", "a classifier"),
        Condition("GatewayReady", "False", "ReplicasNotReady", "0/2"),
    ]
    ready = ready_condition(parts)
    assert (ready.status, ready.reason) == ("False", "ModelIncompatible") and "a classifier" in ready.message
    assert ready_condition([parts[1]]).reason == "ComponentsNotReady"
