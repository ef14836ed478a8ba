"""What a detector file looks like to Triton and the gateway, and why a file cannot be served.

Pure: no onnx, no onnxruntime. `inspect` builds these facts from an ONNX file; `from_overrides`
builds them from the CR's own fields (a TensorRT plan, whose shapes this container cannot read).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

END2END_OUTPUTS = ("num_dets", "det_boxes", "det_scores", "det_classes")
STRIDES = (8, 16, 32)
# The two input encodings a CR can name (model.input), as Triton types and layouts.
INPUT_ENCODINGS = {"uint8-nhwc": ("TYPE_UINT8", "NHWC"), "fp32-nchw": ("TYPE_FP32", "NCHW")}


class ModelIncompatible(ValueError):
    """The file is not a YOLO detector the gateway can serve. The message names the tensor and
    its shape, or what the file is instead (a classifier, a segmentation model...)."""

    reason = "ModelIncompatible"


class SpecContradictsModel(ModelIncompatible):
    """A field written in the CR says something else than the file (its class count, input
    size, encoding or output layout)."""

    reason = "SpecContradictsModel"


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str  # Triton's: TYPE_FP32, TYPE_UINT8, TYPE_FP16, TYPE_INT32
    dims: tuple[int, ...]  # without the batch axis


@dataclass(frozen=True)
class ModelFacts:
    input: Tensor
    layout: str  # NCHW | NHWC
    outputs: tuple[Tensor, ...]
    output_format: str  # raw | v5 | end2end
    class_names: tuple[str, ...]
    batchable: bool = True  # False: Triton runs it one image per execution (max_batch_size 1)
    batch_note: str = ""  # how the batch axis was found or made (for the condition)
    names_from: str = "file"  # file | spec | default

    @property
    def height(self) -> int:
        return self.input.dims[1] if self.layout == "NCHW" else self.input.dims[0]

    @property
    def width(self) -> int:
        return self.input.dims[2] if self.layout == "NCHW" else self.input.dims[1]

    @property
    def encoding(self) -> str:
        for name, (dtype, layout) in INPUT_ENCODINGS.items():
            if (dtype, layout) == (self.input.dtype, self.layout):
                return name
        return f"{self.input.dtype.removeprefix('TYPE_').lower()}-{self.layout.lower()}"

    def summary(self) -> str:
        """One line for a log or a condition: tensors, classes and how it batches."""
        outs = ", ".join(f"{o.name} {list(o.dims)}" for o in self.outputs)
        return (
            f"input {self.input.name} {self.encoding} {self.height}x{self.width}, output {self.output_format} ({outs}), "
            f"{len(self.class_names)} classes (names from the {self.names_from})"
        )


@dataclass(frozen=True)
class Overrides:
    """The model fields a CR may write; None: read them from the file."""

    input: str | None = None  # uint8-nhwc | fp32-nchw
    output: str | None = None  # raw | v5 | end2end
    input_size: int | None = None
    class_names: tuple[str, ...] | None = None
    max_detections: int = 100

    @classmethod
    def from_plan(cls, plan: dict[str, Any]) -> Overrides:
        m = plan.get("model") or {}
        names = m.get("class_names")
        return cls(
            m.get("input"),
            m.get("output"),
            m.get("input_size"),
            tuple(names) if names else None,
            int(m.get("max_detections", 100)),
        )


def num_anchors(height: int, width: int) -> int:
    return sum((height // s) * (width // s) for s in STRIDES)


def default_names(nc: int) -> tuple[str, ...]:
    return tuple(f"class_{i}" for i in range(nc))


def from_overrides(o: Overrides) -> ModelFacts:
    """Facts from the CR alone, under the tensor names of an Ultralytics export (images, output0,
    or TensorRT's EfficientNMS names): for a TensorRT plan, or a CR that writes every field."""
    missing = [f for f, v in (("input", o.input), ("inputSize", o.input_size), ("classNames", o.class_names)) if not v]
    if missing:
        raise SpecContradictsModel(
            f"this file's shapes cannot be read here: set model.{', model.'.join(missing)} in the YoloService"
        )
    assert o.input and o.input_size and o.class_names
    dtype, layout = INPUT_ENCODINGS[o.input]
    s, nc, fmt = o.input_size, len(o.class_names), o.output or "raw"
    dims = (3, s, s) if layout == "NCHW" else (s, s, 3)
    if fmt == "end2end":
        k = o.max_detections
        outputs: tuple[Tensor, ...] = (
            Tensor("num_dets", "TYPE_INT32", (1,)),
            Tensor("det_boxes", "TYPE_FP32", (k, 4)),
            Tensor("det_scores", "TYPE_FP32", (k,)),
            Tensor("det_classes", "TYPE_INT32", (k,)),
        )
    elif fmt == "v5":
        outputs = (Tensor("output0", "TYPE_FP32", (num_anchors(s, s), 5 + nc)),)
    else:
        outputs = (Tensor("output0", "TYPE_FP32", (4 + nc, num_anchors(s, s))),)
    return ModelFacts(Tensor("images", dtype, dims), layout, outputs, fmt, o.class_names, names_from="spec")


def apply_overrides(facts: ModelFacts, o: Overrides) -> ModelFacts:
    """The CR's fields over the file's facts: names replace names of the same count; anything else
    the CR says must agree with the file, or it is a SpecContradictsModel naming both."""
    if o.input and o.input != facts.encoding:
        raise SpecContradictsModel(
            f"model.input is {o.input}, but the file's input {facts.input.name} is {facts.encoding} "
            f"{list(facts.input.dims)}: remove model.input or fix it"
        )
    if o.input_size and (o.input_size, o.input_size) != (facts.height, facts.width):
        raise SpecContradictsModel(
            f"model.inputSize is {o.input_size}, but the file's input {facts.input.name} is "
            f"{facts.height}x{facts.width}: remove model.inputSize or fix it"
        )
    if o.output and o.output != facts.output_format:
        raise SpecContradictsModel(
            f"model.output is {o.output}, but the file's outputs ({', '.join(f'{t.name} {list(t.dims)}' for t in facts.outputs)}) "
            f"are {facts.output_format}: remove model.output or fix it"
        )
    if o.class_names:
        nc = len(facts.class_names)
        if facts.output_format != "end2end" and len(o.class_names) != nc:
            out = facts.outputs[0]
            raise SpecContradictsModel(
                f"model.classNames has {len(o.class_names)} names, but the file's output {out.name} {list(out.dims)} "
                f"has {nc} class channels: write {nc} names or none"
            )
        facts = replace(facts, class_names=o.class_names, names_from="spec")
    return facts


@dataclass
class Report:
    """What the init container tells the operator (its termination message, JSON)."""

    reason: str  # ServedAsExported | BatchAxisRewritten | Unbatched
    message: str
    extra: dict[str, Any] = field(default_factory=dict)
