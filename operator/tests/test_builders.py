"""Pure builders, no cluster: golden manifests, restricted pods, replicas vs HPA, config.pbtxt."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from google.protobuf import text_format
from op_helpers import META, sample_spec
from tritonclient.grpc import model_config_pb2

from yolo_modelprep import config as modelconfig
from yolo_modelprep.facts import Overrides, from_overrides
from yolo_operator import builders as b
from yolo_operator.children import desired_children
from yolo_operator.settings import OperatorSettings
from yolo_operator.spec import InvalidSpec, parse_spec

GOLDEN = Path(__file__).parent / "golden"
ROOT = Path(__file__).resolve().parents[2]


def all_manifests(spec: dict) -> list[dict]:
    return [c.manifest for c in desired_children(parse_spec(spec), META, service_monitor_crd=True) if c.manifest]


def test_golden_manifests():
    """Every child of the sample, byte for byte. UPDATE_GOLDEN=1 rewrites the files after a deliberate change."""
    spec = parse_spec(sample_spec(**{"monitoring.serviceMonitor": True}))
    metrics_from = OperatorSettings().network_policy_metrics_from  # the chart's default
    for child in desired_children(spec, META, service_monitor_crd=True, metrics_from=metrics_from):
        path = GOLDEN / f"{child.kind.lower()}-{child.name}.yaml"
        text = yaml.safe_dump(child.manifest, sort_keys=True)
        if os.environ.get("UPDATE_GOLDEN"):
            GOLDEN.mkdir(exist_ok=True)
            path.write_text(text)
        assert path.exists(), f"missing golden file {path.name}; run with UPDATE_GOLDEN=1"
        assert text == path.read_text(), f"{path.name} differs from the golden manifest"


def _pods(manifests: list[dict]) -> list[dict]:
    return [m["spec"]["template"]["spec"] for m in manifests if m["kind"] == "Deployment"]


@pytest.mark.parametrize(
    "source",
    [
        {"uri": "s3://bucket/m.onnx", "secretRef": {"name": "aws"}},
        {"uri": "gs://b/m.onnx", "secretRef": {"name": "gcp"}},
        {"pvc": {"claimName": "models", "path": "yolo/m.onnx"}},
    ],
)
def test_every_pod_meets_restricted(source):
    for pod in _pods(all_manifests(sample_spec(**{"model.source": source}))):
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod.get("initContainers", []) + pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["readOnlyRootFilesystem"] is True
            assert "privileged" not in sc
        for v in pod["volumes"]:
            assert "hostPath" not in v


def test_no_replicas_under_an_hpa_and_replicas_without_one():
    on = {(m["kind"], m["metadata"]["name"]): m for m in all_manifests(sample_spec())}
    assert "replicas" not in on[("Deployment", "shapes-triton")]["spec"]
    assert "replicas" not in on[("Deployment", "shapes-gateway")]["spec"]
    kinds = [kind for kind, _ in on]
    assert kinds.count("HorizontalPodAutoscaler") == 2
    off = all_manifests(
        sample_spec(
            **{
                "triton.autoscaling": {"enabled": False},
                "triton.replicas": 3,
                "gateway.autoscaling": {"enabled": False},
                "gateway.replicas": 5,
            }
        )
    )
    deps = {m["metadata"]["name"]: m for m in off if m["kind"] == "Deployment"}
    assert deps["shapes-triton"]["spec"]["replicas"] == 3 and deps["shapes-gateway"]["spec"]["replicas"] == 5
    assert "HorizontalPodAutoscaler" not in [m["kind"] for m in off]


def test_hpas_scale_on_queue_depth():
    spec = sample_spec()
    hpas = {m["metadata"]["name"]: m["spec"] for m in all_manifests(spec) if m["kind"] == "HorizontalPodAutoscaler"}
    triton = hpas["shapes-triton"]
    assert triton["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "shapes-triton"}
    assert (triton["minReplicas"], triton["maxReplicas"]) == (1, 4)
    assert triton["metrics"] == [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "nv_inference_pending_request_count"},
                "target": {"type": "AverageValue", "averageValue": "10"},
            },
        }
    ]
    gw = hpas["shapes-gateway"]["metrics"]
    assert (
        gw[0]["pods"]["metric"]["name"] == "yolo_gateway_work_requests"
        and gw[0]["pods"]["target"]["averageValue"] == "32"
    )
    assert gw[1]["resource"] == {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}


@pytest.mark.parametrize(
    "fmt,platform", [("onnx", "onnxruntime_onnx"), ("end2end", "onnxruntime_onnx"), ("tensorrt", "tensorrt_plan")]
)
def test_config_pbtxt_parses_back(fmt, platform):
    spec = parse_spec(
        sample_spec(
            **{
                "model.format": fmt,
                "triton.dynamicBatching": {
                    "preferredBatchSizes": [16, 4, 8],
                    "maxQueueDelayMicroseconds": 750,
                    "queuePolicy": {"enabled": True, "maxQueueSize": 64, "timeoutMicroseconds": 2000000},
                },
            }
        )
    )
    cfg = text_format.Parse(b.render_config_pbtxt(spec), model_config_pb2.ModelConfig())
    assert cfg.name == "yolo" and cfg.platform == platform and cfg.max_batch_size == 16
    (warmup,) = cfg.model_warmup
    assert (
        warmup.batch_size == 1
        and list(warmup.inputs["images"].dims) == [320, 320, 3]
        and warmup.inputs["images"].zero_data
    )
    assert cfg.input[0].name == "images" and cfg.input[0].data_type == model_config_pb2.TYPE_UINT8
    assert list(cfg.input[0].dims) == [320, 320, 3]
    if fmt == "end2end":
        assert [o.name for o in cfg.output] == ["num_dets", "det_boxes", "det_scores", "det_classes"]
        assert list(cfg.output[1].dims) == [100, 4]
    else:
        assert [o.name for o in cfg.output] == ["output0"] and list(cfg.output[0].dims) == [7, 2100]
    db = cfg.dynamic_batching
    assert list(db.preferred_batch_size) == [4, 8, 16] and db.max_queue_delay_microseconds == 750
    assert (
        db.default_queue_policy.max_queue_size == 64
        and db.default_queue_policy.timeout_action == model_config_pb2.ModelQueuePolicy.REJECT
    )
    assert cfg.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert json.loads(cfg.parameters["class_names"].string_value) == ["circle", "rectangle", "triangle"]


def test_queue_policy_is_off_by_default_and_can_be_turned_on():
    cfg = text_format.Parse(b.render_config_pbtxt(parse_spec(sample_spec())), model_config_pb2.ModelConfig())
    assert cfg.HasField("dynamic_batching") and not cfg.dynamic_batching.HasField("default_queue_policy")
    spec = parse_spec(sample_spec(**{"triton.dynamicBatching": {"queuePolicy": {"enabled": True}}}))
    cfg = text_format.Parse(b.render_config_pbtxt(spec), model_config_pb2.ModelConfig())
    assert cfg.dynamic_batching.default_queue_policy.max_queue_size == 1024


def test_generated_config_matches_the_committed_production_config():
    """The operator and model_repository/production describe the same model the same way."""
    spec = parse_spec(
        sample_spec(**{"triton.dynamicBatching": {"preferredBatchSizes": [8, 16], "maxQueueDelayMicroseconds": 1000}})
    )
    ours = text_format.Parse(b.render_config_pbtxt(spec), model_config_pb2.ModelConfig())
    theirs = text_format.Parse(
        (ROOT / "model_repository" / "production" / "yolo" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    for field in ("name", "platform", "max_batch_size", "input", "output"):
        assert getattr(ours, field) == getattr(theirs, field), field
    assert ours.dynamic_batching.preferred_batch_size == theirs.dynamic_batching.preferred_batch_size


def test_triton_pod_gpu_probes_args_and_headless_service():
    ms = {(m["kind"], m["metadata"]["name"]): m for m in all_manifests(sample_spec())}
    pod = ms[("Deployment", "shapes-triton")]["spec"]["template"]
    c = pod["spec"]["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {
        "--model-control-mode=none",
        "--strict-readiness=true",
        "--exit-timeout-secs=30",
        "--grpc-keepalive-time=10000",
    } <= set(c["args"])
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["startupProbe"]["failureThreshold"] * c["startupProbe"]["periodSeconds"] >= 300
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "8002"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["spec"]["tolerations"]
    svc = ms[("Service", "shapes-triton")]["spec"]
    assert svc["clusterIP"] == "None"
    assert {p["name"] for p in svc["ports"]} == {"grpc", "http", "metrics"}


def test_gateway_targets_the_headless_service_with_drain_budget():
    ms = {(m["kind"], m["metadata"]["name"]): m for m in all_manifests(sample_spec())}
    pod = ms[("Deployment", "shapes-gateway")]["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env["YOLO_GATEWAY_TRITON_URL"] == "dns:///shapes-triton.vision.svc.cluster.local:8001"
    assert env["YOLO_GATEWAY_MODEL_NAME"] == "yolo"
    c = pod["containers"][0]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["terminationGracePeriodSeconds"] > c["lifecycle"]["preStop"]["sleep"]["seconds"] + int(
        env["YOLO_GATEWAY_SHUTDOWN_GRACE_S"]
    )


def test_labels_on_every_child():
    for m in all_manifests(sample_spec(**{"monitoring.serviceMonitor": True})):
        labels = m["metadata"]["labels"]
        for key in (
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/component",
            "app.kubernetes.io/part-of",
            "app.kubernetes.io/managed-by",
            "app.kubernetes.io/version",
        ):
            assert labels.get(key), (m["kind"], key)
        assert labels["app.kubernetes.io/instance"] == "shapes"
        if m["kind"] == "Deployment":
            assert m["spec"]["selector"]["matchLabels"].items() <= m["spec"]["template"]["metadata"]["labels"].items()


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ({"uri": "https://x.example/m.onnx"}, "curl -fsSL"),
        ({"uri": "s3://bucket/m.onnx", "secretRef": {"name": "aws"}}, "aws s3 cp"),
        ({"uri": "gs://bucket/m.onnx"}, "gcloud storage cp"),
        ({"pvc": {"claimName": "models", "path": "/yolo/m.onnx"}}, "cp /source/yolo/m.onnx"),
    ],
)
def test_init_container_fetches_from_each_source(source, needle):
    (dep,) = [
        m
        for m in all_manifests(sample_spec(**{"model.source": source}))
        if m["kind"] == "Deployment" and m["metadata"]["name"] == "shapes-triton"
    ]
    init = dep["spec"]["template"]["spec"]["initContainers"][0]
    script = init["command"][-1]
    assert needle in script and "config.pbtxt" in script and "/models/yolo/1/model.onnx" in script
    if "secretRef" in source:
        assert init["envFrom"] == [{"secretRef": {"name": source["secretRef"]["name"]}}]
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    if "pvc" in source:
        assert vols["source"]["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}


def test_config_change_rolls_triton_pods():
    a = [
        m
        for m in all_manifests(sample_spec())
        if m["metadata"]["name"] == "shapes-triton" and m["kind"] == "Deployment"
    ][0]
    bb = [
        m
        for m in all_manifests(sample_spec(**{"triton.maxBatchSize": 32}))
        if m["metadata"]["name"] == "shapes-triton" and m["kind"] == "Deployment"
    ][0]
    key = "serving.yolo.dev/config-hash"
    assert (
        a["spec"]["template"]["metadata"]["annotations"][key] != bb["spec"]["template"]["metadata"]["annotations"][key]
    )


def test_gpu_onnx_services_keep_tensorrt_engines_on_a_volume():
    """TensorRT builds engines from the ONNX at load: one profile over the batcher's sizes, the
    engines under the file's digest on the engine-cache volume, and a startup probe that waits
    for a first build."""
    spec = parse_spec(sample_spec())
    dep = b.build_triton_deployment(spec, META)["spec"]["template"]["spec"]
    (cache,) = [v for v in dep["volumes"] if v["name"] == "trt-cache"]
    assert cache == {"name": "trt-cache", "emptyDir": {"sizeLimit": "8Gi"}}
    triton = dep["containers"][0]
    assert {"name": "trt-cache", "mountPath": "/trt-cache"} in triton["volumeMounts"]
    assert triton["startupProbe"]["failureThreshold"] * triton["startupProbe"]["periodSeconds"] == 1200
    plan = b.model_plan(spec)
    cfg = text_format.Parse(
        modelconfig.render(plan, from_overrides(Overrides.from_plan(plan)), "ab" * 32), model_config_pb2.ModelConfig()
    )
    (trt,) = cfg.optimization.execution_accelerators.gpu_execution_accelerator
    params = dict(trt.parameters)
    assert trt.name == "tensorrt" and params["precision_mode"] == "FP16"
    assert (params["trt_profile_min_shapes"], params["trt_profile_max_shapes"]) == (
        "images:1x320x320x3",
        "images:16x320x320x3",
    )
    assert (
        params["trt_engine_cache_enable"] == "true" and params["trt_engine_cache_path"] == "/trt-cache/yolo-" + "ab" * 8
    )
    assert params["trt_timing_cache_path"] == "/trt-cache"
    # A claim or a node folder keeps them for new pods too; a CPU service or a TensorRT plan builds nothing.
    pvc = parse_spec(
        sample_spec(
            **{
                "triton.engineCache": {"volume": "persistentVolumeClaim", "claimName": "engines"},
                "triton.startupTimeoutSeconds": 3000,
            }
        )
    )
    dep = b.build_triton_deployment(pvc, META)["spec"]["template"]["spec"]
    assert {"name": "trt-cache", "persistentVolumeClaim": {"claimName": "engines"}} in dep["volumes"]
    assert dep["containers"][0]["startupProbe"]["failureThreshold"] == 600
    with pytest.raises(InvalidSpec, match="needs hostPath"):
        parse_spec(sample_spec(**{"triton.engineCache": {"volume": "hostPath"}}))
    for other in (
        sample_spec(**{"triton.resources": {"limits": {"memory": "2Gi"}}}),
        sample_spec(**{"model.format": "tensorrt"}),
    ):
        s = parse_spec(other)
        dep = b.build_triton_deployment(s, META)["spec"]["template"]["spec"]
        assert not [v for v in dep["volumes"] if v["name"] == "trt-cache"] and "engine_cache_dir" not in {
            k for k, v in b.model_plan(s).items() if v
        }
        assert dep["containers"][0]["startupProbe"]["failureThreshold"] == 120


def test_gateway_admission_reaches_the_gateways_settings():
    """gateway.admission -> the gateway's environment -> its Settings; the CR's defaults are the gateway's."""
    from yolo_gateway.settings import Settings  # noqa: PLC0415 - the gateway package, in the same dev environment

    def settings(spec: dict) -> Settings:
        (container,) = b.build_gateway_deployment(parse_spec(spec), META)["spec"]["template"]["spec"]["containers"]
        prefix = Settings.model_config["env_prefix"]
        env = {
            e["name"][len(prefix) :].lower(): e["value"]
            for e in container["env"]
            if "value" in e and e["name"].startswith(prefix)
        }
        return Settings(**{k: v for k, v in env.items() if k in Settings.model_fields})

    fields = ("max_concurrency", "max_queue", "queue_timeout_s", "infer_timeout_s", "request_timeout_s")
    default = settings(sample_spec())
    assert [getattr(default, f) for f in fields] == [Settings.model_fields[f].default for f in fields]
    tuned = settings(
        sample_spec(
            **{
                "gateway.admission": {
                    "maxConcurrency": 96,
                    "maxQueue": 0,
                    "queueTimeoutSeconds": 2.5,
                    "inferTimeoutSeconds": 120,
                    "requestTimeoutSeconds": 180,
                }
            }
        )
    )
    assert [getattr(tuned, f) for f in fields] == [96, 0, 2.5, 120.0, 180.0]


@pytest.mark.parametrize(
    ("where", "set_", "asked"),
    [
        ("cpu", {}, {"uint8_input": True, "nms": True}),  # the default where the bench shows it pays
        ("gpu", {}, {"uint8_input": False, "nms": False}),  # NMS under the TensorRT accelerator: not measured
        ("cpu", {"nms": False}, {"uint8_input": True, "nms": False}),
        ("cpu", {"uint8Input": False, "nms": False}, {"uint8_input": False, "nms": False}),
        ("gpu", {"uint8Input": True}, {"uint8_input": True, "nms": False}),
    ],
)
def test_a_plain_onnx_export_is_optimized_by_default_on_cpus_only(where, set_, asked):
    overrides: dict[str, object] = {"model.optimize": set_}
    if where == "cpu":
        overrides["triton.resources"] = {"requests": {"cpu": "1", "memory": "1Gi"}}
    spec = parse_spec(sample_spec(**overrides))
    assert bool(spec.triton.gpus) == (where == "gpu")
    assert b.model_plan(spec)["optimize"] == asked


def test_a_tensorrt_plan_is_never_optimized_and_refuses_an_explicit_rewrite():
    fields = {
        "model.format": "tensorrt",
        "model.input": "uint8-nhwc",
        "model.inputSize": 640,
        "model.classNames": ["a"],
    }
    assert b.model_plan(parse_spec(sample_spec(**fields)))["optimize"] == {"uint8_input": False, "nms": False}
    with pytest.raises(InvalidSpec, match="TensorRT plan"):
        parse_spec(sample_spec(**fields, **{"model.optimize": {"nms": True}}))
