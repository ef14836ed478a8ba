"""Ray Serve with a FastAPI ingress in front of Triton, as Ray Serve's docs write one.

    python -m yolo_tools.peer_apps.ray_peer --port 8080 --triton 127.0.0.1:8001 --triton-model M --size 320 ...

One deployment, `@serve.deployment` + `@serve.ingress(app)`, whose replica holds one async Triton
gRPC client (made on its first request, in the replica's event loop) and does the gateway's
decode, letterbox, NMS and JSON (work.py). Ray runs locally (`ray.init`), its HTTP proxy on
127.0.0.1:--port. `max_ongoing_requests` is raised from its default of 5 for an I/O-bound async
deployment, as Ray Serve's performance guide advises; the bench's highest concurrency fits.
"""

import argparse
import signal
import threading

import orjson
import ray
from fastapi import FastAPI, Request, Response
from ray import serve
from tritonclient.grpc import InferInput
from tritonclient.grpc.aio import InferenceServerClient

from .work import Work, add_arguments, from_args

app = FastAPI()


@serve.deployment(num_replicas=1, max_ongoing_requests=64)
@serve.ingress(app)
class YoloIngress:  # no `from __future__ import annotations` here: Ray's ingress would hide the Request type from FastAPI
    def __init__(self, triton: str, work: Work) -> None:
        self.triton = triton
        self.work = work
        self.client: InferenceServerClient | None = None

    @app.post("/v1/detect")
    async def detect(self, request: Request) -> Response:
        if self.client is None:
            self.client = InferenceServerClient(self.triton)
        prepared = self.work.prepare(await request.body())
        tensor = prepared.tensor[None]
        inp = InferInput(self.work.input_name, list(tensor.shape), "FP32")
        inp.set_data_from_numpy(tensor)
        result = await self.client.infer(self.work.model, [inp])
        output = result.as_numpy(self.work.output_name)[0]
        body = {"detections": self.work.finish(output, prepared)}
        return Response(orjson.dumps(body), media_type="application/json")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    add_arguments(ap)
    args = ap.parse_args()
    ray.init(include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    serve.run(YoloIngress.bind(args.triton, from_args(args)), route_prefix="/")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
