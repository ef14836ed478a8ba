"""Triton python-backend model that runs an ONNX file with onnxruntime.

Used by the local and CI model repositories (`backend: "python"`), where the
PyPI Triton has no onnxruntime backend. Production repositories serve the
same ONNX file with Triton's onnxruntime or tensorrt backends instead, under
the same tensor names.

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
        onnx_inputs = {i.name for i in self.session.get_inputs()}
        onnx_outputs = {o.name for o in self.session.get_outputs()}
        missing = (set(self.input_names) - onnx_inputs) | (set(self.output_names) - onnx_outputs)
        if missing:
            raise pb_utils.TritonModelException(f"{path}: config names tensors the ONNX lacks: {sorted(missing)}")

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
        responses, start = [], 0
        for size in sizes:
            tensors = [pb_utils.Tensor(n, np.ascontiguousarray(o[start : start + size])) for n, o in zip(self.output_names, outputs)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses
