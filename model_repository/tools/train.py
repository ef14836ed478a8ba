"""Train the bundled shapes detector offline and export it to ONNX.

Heavy tools live only here: this script needs the `train` extra
(ultralytics, AGPL-3.0, and torch). Nothing at serving time imports it.

    python model_repository/tools/train.py --out model_repository/source

Steps: generate a synthetic dataset (yolo_tools.synthetic) in YOLO txt
format, train a narrow YOLOv8 from scratch on the CPU, export ONNX with a
dynamic batch axis (raw output [B, 4+nc, N]), and write the class names.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from yolo_tools.synthetic import CLASS_NAMES, make_scene  # noqa: E402

# YOLOv8 layout with a narrower width than the "n" scale: the task is easy
# and the model must be cheap on two CPU cores.
MODEL_YAML = """
nc: {nc}
scales:
  t: [0.33, 0.125, 1024]
backbone:
  - [-1, 1, Conv, [64, 3, 2]]
  - [-1, 1, Conv, [128, 3, 2]]
  - [-1, 3, C2f, [128, True]]
  - [-1, 1, Conv, [256, 3, 2]]
  - [-1, 6, C2f, [256, True]]
  - [-1, 1, Conv, [512, 3, 2]]
  - [-1, 6, C2f, [512, True]]
  - [-1, 1, Conv, [1024, 3, 2]]
  - [-1, 3, C2f, [1024, True]]
  - [-1, 1, SPPF, [1024, 5]]
head:
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[-1, 6], 1, Concat, [1]]
  - [-1, 3, C2f, [512]]
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[-1, 4], 1, Concat, [1]]
  - [-1, 3, C2f, [256]]
  - [-1, 1, Conv, [256, 3, 2]]
  - [[-1, 12], 1, Concat, [1]]
  - [-1, 3, C2f, [512]]
  - [-1, 1, Conv, [512, 3, 2]]
  - [[-1, 9], 1, Concat, [1]]
  - [-1, 3, C2f, [1024]]
  - [[15, 18, 21], 1, Detect, [nc]]
"""


def write_split(root: Path, split: str, count: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        w = int(rng.integers(320, 800))
        h = int(rng.integers(240, 640))
        scene = make_scene(rng, w, h)
        cv2.imwrite(str(root / "images" / split / f"{i:05d}.jpg"), scene.image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        lines = []
        for (x1, y1, x2, y2), c in zip(scene.boxes, scene.classes, strict=True):
            lines.append(f"{c} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}")
        (root / "labels" / split / f"{i:05d}.txt").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=".cache/train", help="dataset and run folder")
    ap.add_argument("--out", default=str(ROOT / "model_repository" / "source"))
    ap.add_argument("--train-images", type=int, default=600)
    ap.add_argument("--val-images", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO  # imported late: only this script needs it

    work = Path(args.work).resolve()
    data = work / "data"
    if not (data / "images" / "val").exists():
        write_split(data, "train", args.train_images, args.seed + 1)
        write_split(data, "val", args.val_images, args.seed + 2)
    (work / "data.yaml").write_text(
        f"path: {data}\ntrain: images/train\nval: images/val\nnames:\n"
        + "".join(f"  {i}: {n}\n" for i, n in enumerate(CLASS_NAMES))
    )
    (work / "yolov8t-shapes.yaml").write_text(MODEL_YAML.format(nc=len(CLASS_NAMES)))

    model = YOLO(str(work / "yolov8t-shapes.yaml"))
    model.train(
        data=str(work / "data.yaml"),
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=args.batch,
        device="cpu",
        workers=0,
        plots=False,
        amp=False,
        cache=True,
        seed=args.seed,
        deterministic=False,
        project=str(work / "runs"),
        name="shapes",
        exist_ok=True,
        fliplr=0.5,
        flipud=0.5,
        degrees=0.0,
        verbose=False,
    )
    best = work / "runs" / "shapes" / "weights" / "best.pt"
    exported = YOLO(str(best)).export(format="onnx", dynamic=True, imgsz=args.imgsz, simplify=True, opset=17)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(exported, out / "yolov8t-shapes.onnx")
    (out / "labels.json").write_text(json.dumps(list(CLASS_NAMES)) + "\n")
    print(f"wrote {out / 'yolov8t-shapes.onnx'}")


if __name__ == "__main__":
    main()
