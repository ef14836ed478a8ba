"""Ultralytics' own predictor on the trained production-size model, for the parity check.

    .cache/train-venv/bin/python model_repository/tools/ultralytics_predictions.py

Runs `YOLO(<onnx>).predict(...)` (Ultralytics' preprocessing, its ONNX Runtime backend and its NMS)
on the parity scenes and writes what it found to model_repository/trained/ultralytics-predictions.json,
committed. The triton-tier test gateway/tests/test_trained_model.py sends the same scenes through
the gateway and a real Triton and compares: the share of Ultralytics' boxes the gateway finds
(same class, IoU >= 0.5) and the median IoU of the matched pairs.

The scenes and parameters are yolo_tools.trained's PARITY_SCENES and PARITY_PARAMS (24 synthetic
1280x720 scenes, JPEG quality 90; conf 0.25, IoU 0.45, max_det 300: the gateway's defaults, where
Ultralytics' own IoU default is 0.7), here and in the test alike.

Ultralytics (AGPL-3.0) runs only in this tool, never at runtime.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from yolo_tools.trained import ONNX, PARITY_PARAMS, PARITY_SCENES, PREDICTIONS, parity_scenes  # noqa: E402


def main() -> int:
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(ROOT / ".cache" / "ultralytics"))
    os.environ.setdefault("YOLO_VERBOSE", "false")
    import ultralytics
    from ultralytics import YOLO

    model = YOLO(str(ONNX), task="detect")
    rows = []
    for jpeg, _, _ in parity_scenes():
        bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        (r,) = model.predict(bgr, imgsz=640, device="cpu", verbose=False, **PARITY_PARAMS)
        b = r.boxes
        rows.append(
            {
                "boxes": [[round(float(v), 2) for v in box] for box in b.xyxy.tolist()],
                "classes": [int(c) for c in b.cls.tolist()],
                "scores": [round(float(s), 4) for s in b.conf.tolist()],
            }
        )
    record = {
        "tool": "model_repository/tools/ultralytics_predictions.py",
        "model": ONNX.name,
        "model_sha256": hashlib.sha256(ONNX.read_bytes()).hexdigest(),
        "ultralytics": ultralytics.__version__,
        "opencv": cv2.__version__,
        "scenes": PARITY_SCENES,
        "params": PARITY_PARAMS,
        "predictions": rows,
    }
    PREDICTIONS.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {PREDICTIONS}: {sum(len(r['classes']) for r in rows)} boxes on {len(rows)} scenes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
