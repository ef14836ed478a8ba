"""A batch axis Triton can batch on, and the proof that it does.

Triton's dynamic batcher joins requests into one execution of up to max_batch_size images, and
its onnxruntime backend refuses a model whose first dimension is not dynamic under
max_batch_size > 0. A default `yolo export` fixes the batch to 1: its inputs and outputs say 1,
and so do the shape constants of its Reshape nodes (the export traced them at batch 1).

`make_batchable` marks the inputs and outputs dynamic and turns each Reshape's leading 1 into 0
("copy this dimension from the input"). Then onnxruntime runs two different images as one batch
and each alone: the rewrite is kept only when both give the same outputs. Otherwise the model
serves one image per execution (max_batch_size 1; its dynamic axis then only ever holds 1), and
the report says why. Under max_batch_size 1 the backend's rule still holds, and onnxruntime infers
an output's first dimension through the Reshapes: so the one-image model gets the Reshape rewrite
too, and a model whose first dimension onnxruntime still fixes is refused (ModelIncompatible,
naming the tensor) instead of crash-looping Triton.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import onnx
from onnx import numpy_helper

from .facts import ModelFacts, ModelIncompatible, Tensor
from .inspect import Dim, Inspection

BATCH = "batch"
CHECK_BATCH = 2


def _dynamic_io(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose graph inputs and outputs have a symbolic first dimension, and no stale
    intermediate shapes (value_info records the traced batch of 1)."""
    out = copy.deepcopy(model)
    weights = {i.name for i in out.graph.initializer}
    for vi in [*(i for i in out.graph.input if i.name not in weights), *out.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_param = BATCH
    del out.graph.value_info[:]
    return out


def _patch_reshapes(model: onnx.ModelProto, fixed: int) -> list[str]:
    """Each Reshape whose constant target shape starts with the traced batch gets its own copy of
    that constant with 0 there (Reshape's "keep the input's dimension"). Returns the nodes changed."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    consts = {
        n.output[0]: n for n in g.node if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"
    }
    changed: list[str] = []
    replaced: set[str] = set()
    for node in g.node:
        if node.op_type != "Reshape" or len(node.input) < 2:
            continue
        if any(a.name == "allowzero" and a.i == 1 for a in node.attribute):
            continue  # 0 would mean a zero-sized dimension here
        src = node.input[1]
        if src in inits:
            value = numpy_helper.to_array(inits[src])
        elif src in consts:
            value = numpy_helper.to_array(consts[src].attribute[0].t)
        else:
            continue  # computed at run time (Shape -> Gather...): already follows the batch
        if value.ndim != 1 or value.size < 2 or int(value[0]) != fixed:
            continue
        new = value.copy()
        new[0] = 0
        name = f"{src}__batch_{len(changed)}"
        g.initializer.append(numpy_helper.from_array(new.astype(np.int64), name))
        node.input[1] = name
        changed.append(node.name or src)
        replaced.add(src)
    used = {i for n in g.node for i in n.input}
    for init in [i for i in g.initializer if i.name in replaced and i.name not in used]:
        g.initializer.remove(init)  # a traced shape that no node reads any more
    return changed


def _images(inp: Tensor, count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    if inp.dtype == "TYPE_UINT8":
        return [rng.integers(0, 256, (1, *inp.dims), dtype=np.uint8) for _ in range(count)]
    dtype = np.float16 if inp.dtype == "TYPE_FP16" else np.float32
    return [rng.random((1, *inp.dims), dtype=np.float32).astype(dtype) for _ in range(count)]


def fixed_first_dims(model: onnx.ModelProto) -> list[str]:
    """The inputs and outputs whose first dimension onnxruntime fixes to a number (as the
    backend reads them: after its own shape inference), e.g. ["output0 [1, 84, 8400]"]."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return [
        f"{t.name} {list(t.shape)}"
        for t in [*session.get_inputs(), *session.get_outputs()]
        if t.shape and isinstance(t.shape[0], int)
    ]


def check_batch(model: onnx.ModelProto, inp: Tensor, batch: int = CHECK_BATCH) -> str | None:
    """Run `batch` different images as one batch and each alone with onnxruntime. None when the
    batch gives each image's own outputs; else what went wrong, in a sentence."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own errors: an unsupported op or opset, a bad graph
        return f"onnxruntime cannot load it: {str(exc).strip().splitlines()[0][:300]}"
    images = _images(inp, batch)
    try:
        alone = [session.run(None, {inp.name: x}) for x in images]
        together = session.run(None, {inp.name: np.concatenate(images)})
    except Exception as exc:
        return f"onnxruntime failed at batch {batch}: {str(exc).strip().splitlines()[0][:300]}"
    names = [o.name for o in session.get_outputs()]
    for k, name in enumerate(names):
        got = together[k]
        if got.shape[:1] != (batch,):
            return f"at batch {batch}, output {name} came out with shape {list(got.shape)}"
        for i in range(batch):
            ref = alone[i][k][0].astype(np.float64)
            tol = 1e-3 * (1.0 + float(np.abs(ref).max(initial=0.0)))
            if got[i].shape != ref.shape or not np.allclose(got[i].astype(np.float64), ref, rtol=1e-3, atol=tol):
                return f"at batch {batch}, image {i}'s {name} differs from the same image run alone"
    return None


def make_batchable(insp: Inspection, want_batch: bool = True) -> tuple[onnx.ModelProto, ModelFacts, str]:
    """The model to serve, its facts (batchable or not, with a note), and the report's reason:
    ServedAsExported (the export's dynamic batch works), BatchAxisRewritten or Unbatched."""
    facts, batch = insp.facts, insp.batch
    fixed = isinstance(batch, int)
    if not want_batch:
        model = insp.model
        if fixed:
            model = _dynamic_io(insp.model)
            _patch_reshapes(model, int(batch))
        return model, _unbatched(model, facts, batch, "the plan asks for max_batch_size 1"), "Unbatched"
    if not fixed:
        why = check_batch(insp.model, facts.input)
        if why is None:
            return (
                insp.model,
                replace(facts, batch_note=f"dynamic batch axis, checked at batch {CHECK_BATCH}"),
                "ServedAsExported",
            )
        return insp.model, _unbatched(insp.model, facts, batch, why), "Unbatched"
    model = _dynamic_io(insp.model)
    changed = _patch_reshapes(model, int(batch))
    why = check_batch(model, facts.input)
    if why is None:
        note = f"the export fixed the batch to {batch}; its batch axis was made dynamic ({len(changed)} Reshape shapes) and checked at batch {CHECK_BATCH}"
        return model, replace(facts, batch_note=note), "BatchAxisRewritten"
    if check_batch(model, facts.input, 1) is None:  # the rewrite is right at batch 1, if not at 2
        return model, _unbatched(model, facts, batch, why), "Unbatched"
    plain = _dynamic_io(insp.model)  # only the inputs and outputs
    return plain, _unbatched(plain, facts, batch, why), "Unbatched"


def _unbatched(model: onnx.ModelProto, facts: ModelFacts, batch: Dim, why: str) -> ModelFacts:
    """Facts for one image per execution, once onnxruntime has run the model at batch 1."""
    if isinstance(batch, int) and batch != 1:
        raise ModelIncompatible(
            f"input {facts.input.name}: the export fixed the batch to {batch}, and it could not be made dynamic ({why})"
        )
    alone = check_batch(model, facts.input, 1)
    if alone is not None:
        raise ModelIncompatible(f"input {facts.input.name} {list(facts.input.dims)}: {alone}")
    pinned = fixed_first_dims(model)
    if pinned:
        raise ModelIncompatible(
            f"{pinned[0]}: onnxruntime fixes its first dimension, which Triton's onnxruntime backend refuses "
            f"under max_batch_size > 0, and the batch axis could not be made dynamic ({why})"
        )
    origin = (
        f"the export fixed the batch to {batch}" if isinstance(batch, int) else "the export's batch axis is dynamic"
    )
    note = f"{origin}, but it does not batch ({why}); Triton runs one image per execution (max_batch_size 1)"
    return replace(facts, batchable=False, batch_note=note)
