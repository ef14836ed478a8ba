"""Triton's generated config.pbtxt, and the ConfigMap that carries it."""

from __future__ import annotations

import json
from typing import Any

from ..spec import Tier, YoloServiceSpec
from .common import Meta, _metadata, names


def _pb_list(values: list[int]) -> str:
    return "[ " + ", ".join(str(v) for v in values) + " ]"


def render_config_pbtxt(spec: YoloServiceSpec, tier: Tier | None = None, name: str | None = None) -> str:
    """The Triton model configuration (protobuf text format) for the production backends: of the
    service's model, or of one tier of it (default: the default tier when the spec declares tiers)."""
    m, t = spec.model, spec.triton
    tier = tier or spec.default_tier
    s, nc = m.input_size, len(m.class_names)
    platform = "tensorrt_plan" if m.format == "tensorrt" else "onnxruntime_onnx"
    if m.output_layout == "end2end":
        outputs = [
            ("num_dets", "TYPE_INT32", [1]),
            ("det_boxes", "TYPE_FP32", [m.max_detections, 4]),
            ("det_scores", "TYPE_FP32", [m.max_detections]),
            ("det_classes", "TYPE_INT32", [m.max_detections]),
        ]
    elif m.output_layout == "v5":
        outputs = [("output0", "TYPE_FP32", [m.num_anchors, 5 + nc])]
    else:
        outputs = [("output0", "TYPE_FP32", [4 + nc, m.num_anchors])]
    in_type, in_dims = ("TYPE_FP32", [3, s, s]) if m.input == "fp32-nchw" else ("TYPE_UINT8", [s, s, 3])
    db, qp = t.dynamic_batching, t.dynamic_batching.queue_policy
    kind = "KIND_GPU" if t.gpus else "KIND_CPU"
    max_batch = tier.max_batch_size if tier else t.max_batch_size
    delay = tier.max_queue_delay_microseconds if tier else db.max_queue_delay_microseconds
    count = tier.instances if tier else t.instances_per_gpu
    preferred = [] if tier else sorted(set(db.preferred_batch_sizes))
    lines = [
        f'name: "{name or m.name}"',
        f'platform: "{platform}"',
        f"max_batch_size: {max_batch}",
        "input [",
        f'  {{ name: "images", data_type: {in_type}, dims: {_pb_list(in_dims)} }}',
        "]",
        "output [",
        ",\n".join(f'  {{ name: "{n}", data_type: {d}, dims: {_pb_list(dims)} }}' for n, d, dims in outputs),
        "]",
        "dynamic_batching {",
    ]
    if preferred:
        lines.append(f"  preferred_batch_size: {_pb_list(preferred)}")
    lines.append(f"  max_queue_delay_microseconds: {delay}")
    if tier and tier.preserve_ordering:
        lines.append("  preserve_ordering: true")
    if qp.enabled:
        lines += [
            "  default_queue_policy {",
            f"    timeout_action: {qp.timeout_action}",
            f"    default_timeout_microseconds: {qp.timeout_microseconds}",
            "    allow_timeout_override: true",
            f"    max_queue_size: {qp.max_queue_size}",
            "  }",
        ]
    lines += [
        "}",
        # One inference on the model's real input before the model reports ready: the first
        # user request does not pay for lazy initialisation (CUDA, TensorRT, onnxruntime arenas).
        f'model_warmup [ {{ name: "zeros", batch_size: 1, inputs {{ key: "images", value: {{ data_type: {in_type}, dims: {_pb_list(in_dims)}, zero_data: true }} }} }} ]',
        f"instance_group [ {{ kind: {kind}, count: {count} }} ]",
        "version_policy: { latest: { num_versions: 1 } }",
        f'parameters {{ key: "class_names", value: {{ string_value: {json.dumps(json.dumps(m.class_names))} }} }}',
    ]
    if m.format in ("onnx", "end2end") and t.gpus:
        lines += [
            "optimization { execution_accelerators { gpu_execution_accelerator: [ {",
            '  name: "tensorrt"',
            '  parameters { key: "precision_mode", value: "FP16" }',
            '  parameters { key: "max_workspace_size_bytes", value: "1073741824" }',
            "} ] } }",
        ]
    return "\n".join(lines) + "\n"


def model_configs(spec: YoloServiceSpec) -> dict[str, str]:
    """Every Triton model of the service (spec.model_names()) -> its config.pbtxt. Tiers get their
    own batching; the canary and the shadow get the default tier's."""
    tiers = {f"tier:{t.name}": t for t in spec.tiers}
    return {model: render_config_pbtxt(spec, tiers.get(role), model) for role, model in spec.model_names().items()}


def configmap_key(spec: YoloServiceSpec, model: str) -> str:
    """The service's own model keeps the key config.pbtxt; the others are <model>.pbtxt."""
    return "config.pbtxt" if model == spec.model.name else f"{model}.pbtxt"


def build_model_configmap(spec: YoloServiceSpec, meta: Meta) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(meta, names(meta)["config"], "model-config"),
        "data": {configmap_key(spec, model): text for model, text in model_configs(spec).items()},
    }
