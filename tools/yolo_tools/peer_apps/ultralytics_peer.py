"""FastAPI around Ultralytics' Triton client: the design documents' own pattern.

    python -m yolo_tools.peer_apps.ultralytics_peer --port 8080 --triton 127.0.0.1:8001 --triton-model M --size 320

`YOLO("grpc://host:port/model", task="detect")` (Ultralytics' Triton integration) does its own
decode, letterbox (torch), the Triton call and NMS (torchvision). An Ultralytics model is not
thread-safe, so each of FastAPI's worker threads holds its own, as Ultralytics' thread-safe
inference guide says; the blocking predict runs in FastAPI's threadpool.
"""

from __future__ import annotations

import argparse
import threading
from typing import Any

import cv2
import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from ultralytics import YOLO

from .work import PARAMS, add_arguments


def build(url: str, size: int) -> FastAPI:
    app = FastAPI()
    local = threading.local()

    def predict(data: bytes) -> list[dict[str, Any]]:
        model = getattr(local, "model", None)
        if model is None:
            model = local.model = YOLO(url, task="detect")
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        result = model.predict(
            image, imgsz=size, conf=PARAMS.conf, iou=PARAMS.iou, max_det=PARAMS.max_det, verbose=False
        )[0]
        boxes = result.boxes
        return [
            {
                "class_id": int(c),
                "class_name": result.names.get(int(c), str(int(c))),
                "confidence": round(float(s), 4),
                "box": dict(zip(("x1", "y1", "x2", "y2"), (round(v, 2) for v in xyxy), strict=True)),
            }
            for xyxy, s, c in zip(boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist(), strict=True)
        ]

    @app.post("/v1/detect")
    async def detect(request: Request) -> dict[str, Any]:
        data = await request.body()
        return {"detections": await run_in_threadpool(predict, data)}

    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    add_arguments(ap)
    args = ap.parse_args()
    app = build(f"grpc://{args.triton}/{args.triton_model}", args.size)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
