"""spec.model: the model file (its source: a URI, an OCI reference or a PVC) and the fields that
override what the file says about itself."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from .common import SecretRef, SpecModel

_URI = re.compile(r"^(s3|gs|https?|oci)://[^\s]+$")
# oci://HOST[:PORT]/REPO[:TAG | @sha256:DIGEST], the distribution spec's name and reference grammar.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_OCI = re.compile(
    rf"^oci://[A-Za-z0-9.-]+(?::[0-9]+)?/{_COMPONENT}(?:/{_COMPONENT})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}|@sha256:[0-9a-f]{{64}})?$"
)


class PVCSource(SpecModel):
    claim_name: str
    path: str = Field(description="path of the model file inside the volume")


class ModelSource(SpecModel):
    uri: str | None = None
    pvc: PVCSource | None = None
    secret_ref: SecretRef | None = None
    plain_http: bool = Field(False, description="oci:// only: the registry speaks HTTP, not HTTPS (a local one)")

    @model_validator(mode="after")
    def _one_source(self) -> ModelSource:
        if (self.uri is None) == (self.pvc is None):
            raise ValueError("set exactly one of model.source.uri and model.source.pvc")
        if self.uri is not None and not _URI.match(self.uri):
            raise ValueError("model.source.uri must start with s3://, gs://, http://, https:// or oci://")
        if self.uri is not None and self.uri.startswith("oci://") and not _OCI.match(self.uri):
            raise ValueError(
                f"model.source.uri {self.uri!r} is not an OCI reference: oci://HOST[:PORT]/REPO[:TAG] or "
                "oci://HOST[:PORT]/REPO@sha256:DIGEST (lower-case repository, a 64-hex digest)"
            )
        if self.plain_http and self.scheme != "oci":
            raise ValueError("model.source.plainHttp applies to oci:// sources only")
        return self

    @property
    def scheme(self) -> str:
        # The validator above requires exactly one of pvc and uri.
        return "pvc" if self.pvc or self.uri is None else self.uri.split("://", 1)[0]


class Optimize(SpecModel):
    """Graph rewrites the init container makes on a plain export before Triton sees it. Unset
    (the default): on for an ONNX file on CPU Triton pods, where the bench shows they pay (YOLOv8n
    640/80: 0.16 of the wire bytes, 0.6 of the gateway's CPU per request, Triton's throughput
    as high or higher); off on GPUs, where NMS in the graph under the TensorRT execution
    accelerator has not been measured, and for TensorRT plans, which are served as built."""

    uint8_input: bool | None = Field(
        None,
        description="the graph takes uint8 NHWC and converts itself: 1/4 of the input bytes. Empty: on for ONNX on CPUs",
    )
    nms: bool | None = Field(
        None,
        description="class-aware NMS in the graph (IoU 0.45, up to maxDetections boxes): a few KB out instead of the raw "
        "[4+nc, anchors] (2.8 MB for 640 px, 80 classes); the request's iou then no longer applies. Empty: on for ONNX "
        "on CPUs",
    )

    def resolved(self, *, onnx: bool, gpu: bool) -> dict[str, bool]:
        """What the init container is asked to do: the fields set, and the default for the rest."""
        default = onnx and not gpu
        return {
            "uint8_input": default if self.uint8_input is None else self.uint8_input,
            "nms": default if self.nms is None else self.nms,
        }


class ModelSpec(SpecModel):
    """The model file, and the fields that override what the file says about itself. An ONNX
    export needs only `source`: the init container reads its input, outputs and class names."""

    name: str = "yolo"
    format: Literal["onnx", "tensorrt", "end2end"] = Field(
        "onnx", description="the file: ONNX or a TensorRT plan; end2end: ONNX with output end2end"
    )
    input: Literal["uint8-nhwc", "fp32-nchw"] | None = Field(
        None,
        description="the model's input tensor: uint8 NHWC 0..255 or fp32 NCHW 0..1 (a plain export). Empty: read from the file",
    )
    output: Literal["raw", "v5", "end2end"] | None = Field(
        None,
        description="raw: [4+nc, anchors] (YOLOv8/11); v5: [anchors, 5+nc] with objectness; end2end: NMS in the graph. Empty: read from the file",
    )
    input_size: int | None = Field(
        None, ge=32, le=4096, description="empty: read from the file (its input shape, or Ultralytics' imgsz)"
    )
    class_names: list[str] | None = Field(
        None, min_length=1, description="empty: read from the file (Ultralytics' names metadata)"
    )
    max_detections: int = Field(100, ge=1, le=1000, description="end2end: detections per image in the graph")
    optimize: Optimize = Optimize()
    source: ModelSource

    @model_validator(mode="after")
    def _output(self) -> ModelSpec:
        if self.format == "end2end" and self.output not in (None, "end2end"):
            raise ValueError(f"model.format end2end has output end2end, not {self.output}")
        if self.format == "tensorrt" and (self.optimize.uint8_input or self.optimize.nms):
            raise ValueError("model.optimize rewrites ONNX graphs; a TensorRT plan is served as it was built")
        if self.format == "tensorrt":
            missing = [
                f
                for f, v in (("input", self.input), ("inputSize", self.input_size), ("classNames", self.class_names))
                if not v
            ]
            if missing:
                raise ValueError(
                    f"model.format tensorrt: a plan's shapes cannot be read before Triton loads it; set model.{', model.'.join(missing)}"
                )
        return self

    @property
    def output_layout(self) -> str | None:
        return self.output or ("end2end" if self.format == "end2end" else None)

    @field_validator("input_size")
    @classmethod
    def _stride(cls, v: int | None) -> int | None:
        if v is not None and v % 32:
            raise ValueError(f"model.inputSize must be a multiple of 32 (the largest YOLO stride), got {v}")
        return v

    @field_validator("class_names")
    @classmethod
    def _unique(cls, v: list[str] | None) -> list[str] | None:
        dup = sorted({n for n in v if v.count(n) > 1}) if v else []
        if dup:
            raise ValueError(f"model.classNames has duplicates: {dup}")
        return v

    def overrides(self) -> dict[str, Any]:
        """The fields the init container lays over what the file says (None: the file's)."""
        return {
            "input": self.input,
            "output": self.output_layout,
            "input_size": self.input_size,
            "class_names": self.class_names,
            "max_detections": self.max_detections,
        }
