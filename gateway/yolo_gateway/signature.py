"""What the served model looks like, read from Triton's model metadata and config.

Nothing about tensors is hard-coded: the input name, dtype, layout and size, the
output layout (raw, transposed raw, YOLOv5 objectness or end2end) and the class
names all come from Triton.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

END2END = ("num_dets", "det_boxes", "det_scores", "det_classes")
SUPPORTED_DTYPES = ("UINT8", "FP32", "FP16")


class SignatureError(ValueError):
    """The model's tensors do not look like a YOLO detector we can serve."""


@dataclass(frozen=True)
class ModelSignature:
    name: str
    version: str
    input_name: str
    input_dtype: str  # UINT8 | FP32 | FP16
    layout: str  # NHWC | NCHW
    height: int
    width: int
    max_batch_size: int  # 0: the model takes no batch axis
    output_format: str  # raw | raw_t | v5 | end2end
    output_names: tuple[str, ...]
    class_names: tuple[str, ...]
    platform: str = ""
    parameters: dict[str, str] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def tensor_bytes(self) -> int:
        """What one image's input and output tensors take (a raw output's anchors from the input size)."""
        size = {"UINT8": 1, "FP16": 2, "FP32": 4}[self.input_dtype]
        anchors = sum((self.height // s) * (self.width // s) for s in (8, 16, 32))
        out = 4 * (1 + 100 * 6) if self.output_format == "end2end" else 4 * anchors * (5 + self.num_classes)
        return self.height * self.width * 3 * size + out

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "platform": self.platform,
            "input": {
                "name": self.input_name,
                "datatype": self.input_dtype,
                "layout": self.layout,
                "height": self.height,
                "width": self.width,
            },
            "max_batch_size": self.max_batch_size,
            "output_format": self.output_format,
            "outputs": list(self.output_names),
            "class_names": list(self.class_names),
        }


def _dims(tensor: dict[str, Any], batched: bool) -> list[int]:
    dims = [int(d) for d in tensor.get("shape", tensor.get("dims", []))]
    return dims[1:] if batched else dims


def _parameters(config: dict[str, Any]) -> dict[str, str]:
    return {
        k: (v.get("string_value", "") if isinstance(v, dict) else str(v))
        for k, v in config.get("parameters", {}).items()
    }


def _class_names(params: dict[str, str], nc: int | None) -> tuple[str, ...] | None:
    raw = params.get("class_names")
    if raw:
        try:
            names = json.loads(raw)
        except ValueError:
            names = [n.strip() for n in raw.split(",") if n.strip()]
        return tuple(str(n) for n in names)
    return tuple(f"class_{i}" for i in range(nc)) if nc is not None else None


def parse_signature(metadata: dict[str, Any], config: dict[str, Any]) -> ModelSignature:
    """Build the signature from `get_model_metadata` and `get_model_config` (as JSON).

    `config` may be the response (with a "config" key) or the config itself.
    """
    config = config.get("config", config)
    max_batch = int(config.get("max_batch_size", 0) or 0)
    batched = max_batch > 0
    params = _parameters(config)
    inputs = metadata.get("inputs", [])
    outputs = metadata.get("outputs", [])
    if len(inputs) != 1:
        raise SignatureError(f"expected one image input, the model has {len(inputs)}")
    inp = inputs[0]
    dtype = inp["datatype"]
    if dtype not in SUPPORTED_DTYPES:
        raise SignatureError(f"input datatype {dtype} not supported (want one of {SUPPORTED_DTYPES})")
    dims = _dims(inp, batched)
    if len(dims) != 3:
        raise SignatureError(f"expected a 3-D image input (plus batch), got {dims}")
    if dims[2] == 3:
        layout, height, width = "NHWC", dims[0], dims[1]
    elif dims[0] == 3:
        layout, height, width = "NCHW", dims[1], dims[2]
    else:
        raise SignatureError(f"cannot tell the channel axis of input dims {dims}")
    if height <= 0 or width <= 0:
        raise SignatureError(f"the input size must be fixed, got {dims}")

    names = {o["name"] for o in outputs}
    if set(END2END) <= names:
        fmt, out_names = "end2end", tuple(END2END)
        class_names = _class_names(params, None)
        if class_names is None:
            raise SignatureError("an end2end model needs class names (config parameter class_names)")
    else:
        if len(outputs) != 1:
            raise SignatureError(f"expected one raw output or the end2end outputs {END2END}, got {sorted(names)}")
        out = _dims(outputs[0], batched)
        if len(out) != 2:
            raise SignatureError(f"expected a 2-D output per image, got {out}")
        a, b = out
        class_names = _class_names(params, None)
        nc = len(class_names) if class_names else None
        if nc is not None:
            if a == 4 + nc:
                fmt = "raw"
            elif b == 5 + nc:
                fmt = "v5"
            elif b == 4 + nc:
                fmt = "raw_t"
            else:
                raise SignatureError(f"output {out} does not fit {nc} classes in any YOLO layout")
        elif 0 < a < b:  # channels first: [4+nc, N]
            fmt, nc = "raw", a - 4
        elif 0 < b < a:  # channels last, assume the YOLOv5 layout [N, 5+nc]
            fmt, nc = "v5", b - 5
        else:
            raise SignatureError(f"cannot tell the layout of output {out}; set config parameter class_names")
        if nc < 1:
            raise SignatureError(f"output {out} leaves no class channels")
        class_names = class_names or _class_names(params, nc)
        out_names = (str(outputs[0]["name"]),)
    return ModelSignature(
        name=metadata.get("name", config.get("name", "")),
        version=str((metadata.get("versions") or [""])[-1]),
        input_name=inp["name"],
        input_dtype=dtype,
        layout=layout,
        height=height,
        width=width,
        max_batch_size=max_batch,
        output_format=fmt,
        output_names=tuple(out_names),
        class_names=tuple(class_names or ()),
        platform=metadata.get("platform", ""),
        parameters=params,
    )
