"""Each Triton model's plan (the operator's half of its config.pbtxt), and the ConfigMap that
carries the plans to the init container, which reads the model file and renders config.pbtxt
(yolo_modelprep: the CR's model fields override what the file says)."""

from __future__ import annotations

import json
from typing import Any

from yolo_modelprep import config as modelconfig
from yolo_modelprep.facts import Overrides, from_overrides

from ..spec import Tier, YoloServiceSpec
from .common import ENGINE_CACHE_DIR, Meta, names, object_metadata


def model_plan(spec: YoloServiceSpec, tier: Tier | None = None, name: str | None = None) -> dict[str, Any]:
    """The plan of the service's model, or of one tier of it (default: the default tier when the
    spec declares tiers): batching, instances and accelerators, and the CR's model fields."""
    m, t = spec.model, spec.triton
    tier = tier or spec.default_tier
    db, qp = t.dynamic_batching, t.dynamic_batching.queue_policy
    p = modelconfig.plan(
        name=name or m.name,
        platform="tensorrt_plan" if m.format == "tensorrt" else "onnxruntime_onnx",
        max_batch_size=tier.max_batch_size if tier else t.max_batch_size,
        max_queue_delay_microseconds=tier.max_queue_delay_microseconds if tier else db.max_queue_delay_microseconds,
        preferred_batch_sizes=[] if tier else db.preferred_batch_sizes,
        preserve_ordering=bool(tier and tier.preserve_ordering),
        queue_policy=qp.model_dump(include={"timeout_action", "timeout_microseconds", "max_queue_size"})
        if qp.enabled
        else None,
        instance_kind="KIND_GPU" if t.gpus else "KIND_CPU",
        instance_count=tier.instances if tier else t.instances_per_gpu,
        tensorrt_accelerator=spec.builds_engines,
        engine_cache_dir=ENGINE_CACHE_DIR if spec.builds_engines else None,
        model=m.overrides(),
        optimize=m.optimize.resolved(onnx=m.format != "tensorrt", gpu=bool(t.gpus)),
    )
    return p | {"format": "tensorrt" if m.format == "tensorrt" else "onnx"}


def model_plans(spec: YoloServiceSpec) -> dict[str, dict[str, Any]]:
    """Every Triton model of the service (spec.model_names()) -> its plan. Tiers get their own
    batching; the canary and the shadow get the default tier's."""
    tiers = {f"tier:{t.name}": t for t in spec.tiers}
    return {model: model_plan(spec, tiers.get(role), model) for role, model in spec.model_names().items()}


def render_config_pbtxt(spec: YoloServiceSpec, tier: Tier | None = None, name: str | None = None) -> str:
    """The config.pbtxt the init container writes for a CR that sets every model field (input,
    inputSize, classNames; a TensorRT plan must) and turns `model.optimize` off (or a TensorRT
    plan, or a GPU service): the file then only has to agree. With optimization on, the init
    container's config follows the rewritten graph instead."""
    p = model_plan(spec, tier, name)
    return modelconfig.render(p, from_overrides(Overrides.from_plan(p)))


def model_configs(spec: YoloServiceSpec) -> dict[str, str]:
    """render_config_pbtxt for every model of the service."""
    return {
        model: modelconfig.render(p, from_overrides(Overrides.from_plan(p))) for model, p in model_plans(spec).items()
    }


def configmap_key(model: str) -> str:
    return f"{model}.json"


def build_model_configmap(spec: YoloServiceSpec, meta: Meta) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_metadata(meta, names(meta)["config"], "model-config"),
        "data": {
            configmap_key(model): json.dumps(p, indent=1, sort_keys=True) + "\n"
            for model, p in model_plans(spec).items()
        },
    }
