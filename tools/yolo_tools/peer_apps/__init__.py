"""The peers bench's front ends (`make bench ONLY=peers`), each written as its own docs show.

- `kserve_peer`: KServe's `ModelServer` with a transformer `Model` (preprocess, predict to Triton
  over gRPC v2, postprocess), v1 protocol, the image as base64 JSON;
- `ray_peer`: a Ray Serve deployment with a FastAPI ingress and an async Triton client;
- `ultralytics_peer`: a FastAPI app around Ultralytics' `YOLO("grpc://…")` Triton client.

KServe and Ray Serve do the gateway's own decode, letterbox, NMS and JSON (`work.py`), so the
bench compares the front ends; Ultralytics does its own (torch), as the design documents' pattern
does. Each runs in the bench's peers venv (`.cache/peers-venv`, the `peers` extra); no image
carries them and no test imports them.
"""
