"""Write the serving variants of the bundled model into model_repository/local.

    python model_repository/tools/build_repository.py [--source model_repository/source/yolov8t-shapes.onnx]

- local/yolo/1/model.onnx: uint8 NHWC input, raw output (NMS in the gateway);
- local/yolo_end2end/1/model.onnx: uint8 NHWC input, NMS folded into the graph.
production/yolo serves the same file as local/yolo through a symlink.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "gateway"))
from yolo_tools.prepare import prepare  # noqa: E402

VARIANTS = {
    "yolo": {},
    "yolo_end2end": {"end2end": True, "conf": 0.01, "iou": 0.45, "max_det": 100},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default=str(ROOT / "model_repository" / "source" / "yolov8t-shapes.onnx"))
    ap.add_argument("--repository", default=str(ROOT / "model_repository" / "local"))
    args = ap.parse_args()
    for name, options in VARIANTS.items():
        dest = Path(args.repository) / name / "1" / "model.onnx"
        summary = prepare(args.source, dest, **options)
        print(json.dumps({"model": name, "path": str(dest), **summary}))


if __name__ == "__main__":
    main()
