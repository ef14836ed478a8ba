"""Triton's config.pbtxt from two halves: the operator's plan (batching, instances, accelerators,
the CR's model fields) and the model file's facts (tensors, class names, whether it batches).

The operator writes the plan as JSON into the model-config ConfigMap (`plan()` documents its
keys); the init container renders it once it has read the file. Pure: the operator imports it.
"""

from __future__ import annotations

import json
from typing import Any

from .facts import ModelFacts

PLAN_VERSION = 1


def plan(
    *,
    name: str,
    platform: str,
    max_batch_size: int,
    max_queue_delay_microseconds: int,
    instance_kind: str,
    instance_count: int,
    preferred_batch_sizes: list[int] | None = None,
    preserve_ordering: bool = False,
    queue_policy: dict[str, Any] | None = None,
    tensorrt_accelerator: bool = False,
    engine_cache_dir: str | None = None,
    model: dict[str, Any] | None = None,
    optimize: dict[str, bool] | None = None,
) -> dict[str, Any]:
    """The operator's half of a model's config, as the JSON the init container reads.
    `model`: the CR's model fields (input, output, input_size, class_names, max_detections);
    a None field is read from the file. `optimize`: uint8_input, nms (graph rewrites on the way
    in, yolo_modelprep.optimize). `engine_cache_dir`: with the TensorRT accelerator, the
    mounted folder where its engines and timing cache persist."""
    return {
        "version": PLAN_VERSION,
        "name": name,
        "platform": platform,
        "max_batch_size": max_batch_size,
        "dynamic_batching": {
            "preferred_batch_sizes": sorted(set(preferred_batch_sizes or [])),
            "max_queue_delay_microseconds": max_queue_delay_microseconds,
            "preserve_ordering": preserve_ordering,
            "queue_policy": queue_policy,
        },
        "instance_group": {"kind": instance_kind, "count": instance_count},
        "tensorrt_accelerator": tensorrt_accelerator,
        "engine_cache_dir": engine_cache_dir,
        "model": model or {},
        "optimize": optimize or {},
    }


def _pb_list(values: tuple[int, ...] | list[int]) -> str:
    return "[ " + ", ".join(str(v) for v in values) + " ]"


def _shape(name: str, batch: int, dims: tuple[int, ...]) -> str:
    return f"{name}:" + "x".join(str(d) for d in (batch, *dims))


def _tensorrt(p: dict[str, Any], facts: ModelFacts, max_batch: int, digest: str) -> list[str]:
    """The TensorRT execution accelerator: FP16, one optimization profile over the batch sizes the
    batcher forms (without it TensorRT rebuilds when a larger batch first comes), and the engine
    and timing caches on the mounted volume, under the file's digest: a new file never loads an
    old engine, and a pod that finds its file's engines skips the build."""
    params = [("precision_mode", "FP16"), ("max_workspace_size_bytes", "1073741824")]
    inp = facts.input
    params += [
        ("trt_profile_min_shapes", _shape(inp.name, 1, inp.dims)),
        ("trt_profile_opt_shapes", _shape(inp.name, max_batch, inp.dims)),
        ("trt_profile_max_shapes", _shape(inp.name, max_batch, inp.dims)),
    ]
    if cache := p.get("engine_cache_dir"):
        params += [
            ("trt_engine_cache_enable", "true"),
            ("trt_engine_cache_path", f"{cache}/{p['name']}-{digest[:16]}" if digest else f"{cache}/{p['name']}"),
            ("trt_timing_cache_enable", "true"),
            ("trt_timing_cache_path", cache),
        ]
    body = "\n".join(f'  parameters {{ key: "{k}", value: "{v}" }}' for k, v in params)
    return [
        "optimization { execution_accelerators { gpu_execution_accelerator: [ {",
        '  name: "tensorrt"',
        body,
        "} ] } }",
    ]


def render(p: dict[str, Any], facts: ModelFacts, digest: str = "") -> str:
    """config.pbtxt (protobuf text format). A model that cannot batch (facts.batchable False) gets
    max_batch_size 1: Triton still queues and schedules it, one image per execution. `digest`:
    the served file's sha256, which names its TensorRT engine cache."""
    db = p["dynamic_batching"]
    max_batch = p["max_batch_size"] if facts.batchable else 1
    inp = facts.input
    lines = [
        f'name: "{p["name"]}"',
        f'platform: "{p["platform"]}"',
        f"max_batch_size: {max_batch}",
        "input [",
        f'  {{ name: "{inp.name}", data_type: {inp.dtype}, dims: {_pb_list(inp.dims)} }}',
        "]",
        "output [",
        ",\n".join(f'  {{ name: "{o.name}", data_type: {o.dtype}, dims: {_pb_list(o.dims)} }}' for o in facts.outputs),
        "]",
        "dynamic_batching {",
    ]
    preferred = [b for b in db["preferred_batch_sizes"] if b <= max_batch]
    if preferred:
        lines.append(f"  preferred_batch_size: {_pb_list(preferred)}")
    lines.append(f"  max_queue_delay_microseconds: {db['max_queue_delay_microseconds']}")
    if db.get("preserve_ordering"):
        lines.append("  preserve_ordering: true")
    if qp := db.get("queue_policy"):
        lines += [
            "  default_queue_policy {",
            f"    timeout_action: {qp['timeout_action']}",
            f"    default_timeout_microseconds: {qp['timeout_microseconds']}",
            "    allow_timeout_override: true",
            f"    max_queue_size: {qp['max_queue_size']}",
            "  }",
        ]
    lines += [
        "}",
        # One inference on the model's real input before the model reports ready: the first
        # user request does not pay for lazy initialisation (CUDA, TensorRT, onnxruntime arenas).
        f'model_warmup [ {{ name: "zeros", batch_size: 1, inputs {{ key: "{inp.name}", value: {{ data_type: {inp.dtype}, dims: {_pb_list(inp.dims)}, zero_data: true }} }} }} ]',
        f"instance_group [ {{ kind: {p['instance_group']['kind']}, count: {p['instance_group']['count']} }} ]",
        "version_policy: { latest: { num_versions: 1 } }",
        f'parameters {{ key: "class_names", value: {{ string_value: {json.dumps(json.dumps(list(facts.class_names)))} }} }}',
    ]
    if p.get("tensorrt_accelerator"):
        lines += _tensorrt(p, facts, max_batch, digest)
    return "\n".join(lines) + "\n"
