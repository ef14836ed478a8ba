"""KServe's Python model server as a transformer in front of Triton, as KServe's docs write one.

    python -m yolo_tools.peer_apps.kserve_peer --model_name M --predictor_host 127.0.0.1:8001 \\
        --predictor_protocol grpc-v2 --http_port 8080 --enable_grpc false --triton-model M --size 320 ...

A `kserve.Model` whose `preprocess` turns a v1 request (`{"instances": [{"image": {"b64": …}}]}`)
into an `InferRequest`, whose inherited `predict` sends it to the predictor (Triton) with KServe's
own gRPC v2 client, and whose `postprocess` turns the `InferResponse` into detections; served by
`ModelServer().start([model])`, its flags from KServe's own parser (KServe's transformer examples).
"""

from __future__ import annotations

import argparse
import base64
from typing import Any

from kserve import InferInput, InferRequest, InferResponse, Model, ModelServer, model_server

from .work import Work, add_arguments, from_args

# KServe passes one headers dict to preprocess, predict and postprocess: the only per-request
# place to carry the letterbox from one stage to the next (a header of this name is never
# forwarded to the predictor: append_forwardable_headers keeps only tracing headers).
LETTERBOX = "x-yolo-prepared"


class YoloTransformer(Model):
    def __init__(self, name: str, work: Work) -> None:
        super().__init__(name)
        self.work = work
        self.ready = True

    def preprocess(self, payload: Any, headers: dict[str, Any] | None = None) -> InferRequest:
        data = base64.b64decode(payload["instances"][0]["image"]["b64"])
        prepared = self.work.prepare(data)
        if headers is not None:
            headers[LETTERBOX] = prepared
        tensor = prepared.tensor[None]
        inp = InferInput(name=self.work.input_name, shape=list(tensor.shape), datatype="FP32")
        inp.set_data_from_numpy(tensor, binary_data=True)
        return InferRequest(model_name=self.work.model, infer_inputs=[inp])

    def postprocess(self, result: InferResponse, headers: dict[str, Any] | None = None) -> dict[str, Any]:
        assert headers is not None  # KServe always passes the request's headers
        output = next(o for o in result.outputs if o.name == self.work.output_name).as_numpy()[0]
        return {"predictions": [self.work.finish(output, headers.pop(LETTERBOX))]}


def main() -> None:
    ap = argparse.ArgumentParser(parents=[model_server.parser])
    add_arguments(ap, server=False)
    args, _ = ap.parse_known_args()
    ModelServer().start([YoloTransformer(args.model_name, from_args(args))])


if __name__ == "__main__":
    main()
