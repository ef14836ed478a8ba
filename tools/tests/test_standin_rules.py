"""The onnxruntime stand-in (model_repository/python_backend/onnx_model.py) accepts and refuses
at load what Triton's real onnxruntime backend does (its ValidateInputs/ValidateOutputs and
CompareDimsSupported): a real tritonserver, in explicit model-control mode, loads tiny ONNX
graphs under `platform: "onnxruntime_onnx"` configs, as the operator writes them."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient
from onnx import TensorProto, helper, numpy_helper
from tritonclient.utils import InferenceServerException

from yolo_tools.local_triton import LocalTriton, TritonPorts

H = W = 8
WEIGHT = np.arange(6, dtype=np.float32).reshape(2, 3, 1, 1) / 10  # a 1x1 Conv: 3 channels in, 2 out


def conv_onnx(batch: int | str, hw: tuple[int | str, int | str] = (H, W), bias_input: bool = False) -> onnx.ModelProto:
    """images FP32 [batch,3,h,w] -> output0 FP32 [batch,2,h,w] (plus a graph input `bias` [2] if asked)."""
    inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, *hw])]
    inputs += [helper.make_tensor_value_info("bias", TensorProto.FLOAT, [2])] if bias_input else []
    output = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch, 2, *hw])
    node = helper.make_node("Conv", ["images", "w", *(["bias"] if bias_input else [])], ["output0"])
    graph = helper.make_graph([node], "conv", inputs, [output], [numpy_helper.from_array(WEIGHT, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def expected(x: np.ndarray) -> np.ndarray:
    return np.einsum("oc,bchw->bohw", WEIGHT[:, :, 0, 0], x)


def config(
    mbs: int, images: list[int], output0: list[int], images_type: str = "TYPE_FP32", input_name: str = "images"
) -> str:
    def dims(shape: list[int]) -> str:
        return ", ".join(str(d) for d in shape)

    return (
        f'platform: "onnxruntime_onnx"\nmax_batch_size: {mbs}\n'
        f'input [ {{ name: "{input_name}", data_type: {images_type}, dims: [ {dims(images)} ] }} ]\n'
        f'output [ {{ name: "output0", data_type: TYPE_FP32, dims: [ {dims(output0)} ] }} ]\n'
        + ("dynamic_batching { max_queue_delay_microseconds: 1000 }\n" if mbs else "")
        + "instance_group [ { kind: KIND_CPU, count: 1 } ]\n"
    )


# served name -> (the ONNX, its config.pbtxt)
MODELS = {
    "fixed_batch_mbs16": (conv_onnx(1), config(16, [3, H, W], [2, H, W])),
    "fixed_batch_mbs0": (conv_onnx(1), config(0, [1, 3, H, W], [1, 2, H, W])),
    "dynamic_mbs16": (conv_onnx("batch"), config(16, [3, H, W], [2, H, W])),
    # An input's dynamic ONNX dim takes any config dim; an output's must be -1 in the config too.
    "dynamic_hw_fixed_output": (conv_onnx("batch", ("h", "w")), config(16, [3, H, W], [2, H, W])),
    "dynamic_hw": (conv_onnx("batch", ("h", "w")), config(16, [3, H, W], [2, -1, -1])),
    # A config -1 does not match a fixed ONNX dim, on an input either.
    "config_wildcard": (conv_onnx("batch"), config(16, [3, -1, -1], [2, H, W])),
    "wrong_type": (conv_onnx("batch"), config(16, [3, H, W], [2, H, W], images_type="TYPE_UINT8")),
    "wrong_rank": (conv_onnx("batch"), config(16, [1, 3, H, W], [2, H, W])),
    "config_input_not_in_onnx": (conv_onnx("batch"), config(16, [3, H, W], [2, H, W], input_name="input")),
    "onnx_input_not_in_config": (conv_onnx("batch", bias_input=True), config(16, [3, H, W], [2, H, W])),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    repo = tmp_path_factory.mktemp("standin_repo")
    for name, (model, pbtxt) in MODELS.items():
        (repo / name / "1").mkdir(parents=True)
        onnx.save(model, str(repo / name / "1" / "model.onnx"))
        (repo / name / "config.pbtxt").write_text(f'name: "{name}"\n{pbtxt}')
    with LocalTriton(
        repo, TritonPorts.free(), log_path=repo.parent / "triton.log", extra_args=("--model-control-mode=explicit",)
    ) as triton:
        yield grpcclient.InferenceServerClient(triton.grpc_target)


def load_error(client: grpcclient.InferenceServerClient, name: str) -> str:
    with pytest.raises(InferenceServerException) as info:
        client.load_model(name)
    assert not client.is_model_ready(name)
    return str(info.value)


def infer(client: grpcclient.InferenceServerClient, name: str, x: np.ndarray) -> np.ndarray:
    client.load_model(name)
    inp = grpcclient.InferInput("images", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return client.infer(name, [inp], outputs=[grpcclient.InferRequestedOutput("output0")]).as_numpy("output0")


def test_fixed_batch_dim_under_batching_is_refused(server):
    message = load_error(server, "fixed_batch_mbs16")
    assert "tensor 'images'" in message and "the first dimension must be -1" in message, message
    assert "shape expected by the model is [1,3,8,8]" in message, message


def test_fixed_batch_dim_without_batching_loads_and_infers(server):
    x = np.random.default_rng(1).random((1, 3, H, W), np.float32)
    np.testing.assert_allclose(infer(server, "fixed_batch_mbs0", x), expected(x), rtol=1e-5, atol=1e-6)


def test_dynamic_batch_dim_loads_and_infers_a_batch_of_two(server):
    x = np.random.default_rng(2).random((2, 3, H, W), np.float32)
    np.testing.assert_allclose(infer(server, "dynamic_mbs16", x), expected(x), rtol=1e-5, atol=1e-6)


def test_dynamic_input_dims_take_fixed_config_dims_but_outputs_compare_exactly(server):
    message = load_error(server, "dynamic_hw_fixed_output")
    assert (
        "tensor 'output0'" in message and "shape [-1,2,-1,-1]" in message and "complete shape [-1,2,8,8]" in message
    ), message
    x = np.random.default_rng(3).random((2, 3, H, W), np.float32)
    np.testing.assert_allclose(infer(server, "dynamic_hw", x), expected(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("config_wildcard", ["tensor 'images'", "shape [-1,3,8,8]", "complete shape [-1,3,-1,-1]"]),
        ("wrong_type", ["configuration expects datatype TYPE_UINT8 for input 'images', model provides TYPE_FP32"]),
        ("wrong_rank", ["tensor 'images'", "the model expects 4 dimensions", "specifies 5 dimensions"]),
        ("config_input_not_in_onnx", ["unexpected inference input 'input', allowed inputs are: images"]),
        ("onnx_input_not_in_config", ["configuration expects 1 inputs, model provides 2"]),
    ],
)
def test_mismatches_are_refused(server, name, words):
    message = load_error(server, name)
    assert all(w in message for w in words), message
