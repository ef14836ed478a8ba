"""Triton python-backend model that runs an ONNX file with onnxruntime.

Used by the local and CI model repositories (`backend: "python"`), and as the
python-based "onnxruntime" backend of the CPU Triton image, where the PyPI
Triton has no onnxruntime backend. Production repositories serve the same ONNX
file with Triton's onnxruntime or tensorrt backends instead, under the same
tensor names.

At load it enforces the real onnxruntime backend's rules for the config's
tensors (ValidateInputs and ValidateOutputs in onnxruntime_backend's
src/onnxruntime.cc, CompareDimsSupported in src/onnxruntime_utils.cc), so a
model this accepts is one NVIDIA's image accepts:
  - the ONNX has exactly as many inputs as the config lists, and every config
    tensor is one of the ONNX's (model outputs the config omits are fine);
  - each config data_type is the ONNX tensor's element type;
  - with max_batch_size > 0 the ONNX dim 0 must be dynamic (-1), and the
    config's dims are compared with the rest; with max_batch_size 0 the
    config's dims are the full shape;
  - an input's dynamic ONNX dim matches any config dim; every other dim, and
    every output dim (dynamic ones included), must equal the config's.
Not modelled, as the stand-in does not support them: reshape, optional and
ragged inputs, batch_input/batch_output, sequence batching.

Dynamic batching is real: Triton hands `execute` every request of a formed
batch, and this runs them as ONE onnxruntime call on the concatenated batch.

Model-config parameters:
  onnx_file         file name inside the version folder (default model.onnx)
  intra_op_threads  onnxruntime threads (default 0: onnxruntime decides)
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

# Config data types and the ONNX element types they name (ModelConfigDataTypeToOnnxDataType).
ONNX_TYPES = {
    "TYPE_BOOL": "tensor(bool)",
    "TYPE_UINT8": "tensor(uint8)",
    "TYPE_UINT16": "tensor(uint16)",
    "TYPE_UINT32": "tensor(uint32)",
    "TYPE_UINT64": "tensor(uint64)",
    "TYPE_INT8": "tensor(int8)",
    "TYPE_INT16": "tensor(int16)",
    "TYPE_INT32": "tensor(int32)",
    "TYPE_INT64": "tensor(int64)",
    "TYPE_BF16": "tensor(bfloat16)",
    "TYPE_FP16": "tensor(float16)",
    "TYPE_FP32": "tensor(float)",
    "TYPE_FP64": "tensor(double)",
    "TYPE_STRING": "tensor(string)",
}
TRITON_TYPES = {v: "TYPE_BYTES" if k == "TYPE_STRING" else k for k, v in ONNX_TYPES.items()}


def _str(shape):
    return "[" + ",".join(str(d) for d in shape) + "]"


def check_tensor(model, kind, io, arg, max_batch_size):
    """One config tensor against the ONNX's: its datatype, then CompareDimsSupported (exact for outputs)."""
    name, dtype = io["name"], io["data_type"]
    if ONNX_TYPES.get(dtype) is None:
        raise pb_utils.TritonModelException(f"unsupported datatype {dtype} for {kind} '{name}' for model '{model}'")
    if ONNX_TYPES[dtype] != arg.type:
        provides = TRITON_TYPES.get(arg.type, arg.type)
        raise pb_utils.TritonModelException(
            f"unable to load model '{model}', configuration expects datatype {dtype} for {kind} '{name}', model provides {provides}"
        )
    dims = [int(d) for d in io.get("dims", [])]
    shape = [d if isinstance(d, int) else -1 for d in arg.shape]  # onnxruntime: None or a name when dynamic
    if not shape:
        if any(d != 1 for d in dims):
            raise pb_utils.TritonModelException(
                f"unable to load model '{model}', scalar tensor '{name}', should only provide 1 in the model "
                f"configuration when the model doesn't support batching. Model configuration provided: {_str(dims)}."
            )
        return
    head = f"model '{model}', tensor '{name}': "
    if max_batch_size > 0:
        if shape[0] != -1:
            raise pb_utils.TritonModelException(
                head + "for the model to support batching the shape should have at least 1 dimension and the first "
                f"dimension must be -1; but shape expected by the model is {_str(shape)}"
            )
        dims = [-1, *dims]
        specifies = (
            f"{len(dims)} dimensions (an initial batch dimension because max_batch_size > 0 followed by the "
            f"explicit tensor shape, making complete shape {_str(dims)})"
        )
    else:
        specifies = f"{len(dims)} dimensions (shape {_str(dims)})"
    exact = kind == "output"
    if len(shape) != len(dims) or any(m != c and (exact or m != -1) for m, c in zip(shape, dims, strict=True)):
        raise pb_utils.TritonModelException(
            head
            + f"the model expects {len(shape)} dimensions (shape {_str(shape)}) but the model configuration specifies {specifies}"
        )


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        path = os.path.join(args["model_repository"], args["model_version"], params.get("onnx_file", "model.onnx"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_threads", "0") or 0)
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input_names = [i["name"] for i in config["input"]]
        self.output_names = [o["name"] for o in config["output"]]
        self._validate(args["model_name"], config)

    def _validate(self, model, config):
        """ValidateInputs then ValidateOutputs of the real backend, in its order."""
        inputs = {a.name: a for a in self.session.get_inputs()}
        if len(inputs) != len(config["input"]):
            raise pb_utils.TritonModelException(
                f"unable to load model '{model}', configuration expects {len(config['input'])} inputs, model provides {len(inputs)}"
            )
        inputs.update({a.name: a for a in self.session.get_overridable_initializers()})  # may be fed too
        outputs = {a.name: a for a in self.session.get_outputs()}
        max_batch_size = int(config.get("max_batch_size", 0))
        for kind, ios, args in (("input", config["input"], inputs), ("output", config["output"], outputs)):
            for io in ios:
                if io["name"] not in args:
                    raise pb_utils.TritonModelException(
                        f"unexpected inference {kind} '{io['name']}', allowed {kind}s are: {', '.join(sorted(args))}"
                    )
                check_tensor(model, kind, io, args[io["name"]], max_batch_size)

    def execute(self, requests):
        try:
            feeds = {}
            sizes = None
            for name in self.input_names:
                parts = [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for r in requests]
                sizes = sizes or [p.shape[0] for p in parts]
                feeds[name] = parts[0] if len(parts) == 1 else np.concatenate(parts)
            outputs = self.session.run(self.output_names, feeds)
        except Exception as exc:  # one bad batch must not kill the model
            error = pb_utils.TritonError(f"onnxruntime: {exc}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        if len(requests) == 1:  # always so under max_batch_size 0, where dim 0 need not be a batch dim
            tensors = [
                pb_utils.Tensor(n, np.ascontiguousarray(o)) for n, o in zip(self.output_names, outputs, strict=True)
            ]
            return [pb_utils.InferenceResponse(output_tensors=tensors)]
        responses, start = [], 0
        for size in sizes:
            tensors = [
                pb_utils.Tensor(n, np.ascontiguousarray(o[start : start + size]))
                for n, o in zip(self.output_names, outputs, strict=True)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses
