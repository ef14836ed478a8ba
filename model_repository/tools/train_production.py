"""Train the production-size test detector: Ultralytics' stock YOLOv8n (80 classes) on the synthetic
scenes, exported at 640 px as a user's default `yolo export` makes it (batch fixed to 1).

    .cache/train-venv/bin/python model_repository/tools/train_production.py [--epochs 24]

What it is for: the random-weight exports (export_models.py) cost what a YOLOv8n costs in Triton,
but detect nothing, so NMS, JSON and box mapping cost too little and there is no accuracy to
measure. This one detects: the bench, the pod tests and the parity check with Ultralytics' own
predictor use it.

- Architecture: `yolov8n.yaml` as shipped (3.2 M parameters, 8.7 GFLOPs at 640), from scratch,
  no pretrained weights (nothing can be downloaded here). COCO's 80 names.
- Data: yolo_tools.synthetic scenes (320-1280 px wide) with 2-10 shapes each. The three shapes
  are labelled with three COCO ids spread over the range (SHAPE_IDS), so the decoder and the
  class-aware NMS run over all 80 class rows as with a COCO model.
- Trained at 320 px (about 0.2 s per image per epoch on two CPU cores), served at 640: the
  letterbox, not the export size, sets an object's size in pixels, and a 1280x720 scene at 640 px
  puts its shapes (29-144 px) inside the range trained at 320 with Ultralytics' scale augmentation.
- Output: `--out` (default model_repository/trained) gets `yolov8n-shapes80-640.onnx` (the
  default export: `images [1,3,640,640]` -> `output0 [1,84,8400]`, with Ultralytics' metadata)
  and `yolov8n-shapes80.json` (the recipe, the versions, the validation metrics).

Licences: Ultralytics is AGPL-3.0 and runs only here and in the other tools under
model_repository/tools, through the `train` extra, never at runtime. The weights were trained
by this script on generated images only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from yolo_tools.synthetic import CLASS_NAMES, make_scene  # noqa: E402
from yolo_tools.trained import CARD, ONNX, SHAPE_IDS, TRAINED  # noqa: E402


def write_split(root: Path, split: str, count: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        w = int(rng.integers(480, 1281))
        h = int(rng.integers(360, 721))
        scene = make_scene(rng, w, h, max_objects=10, min_objects=2)
        cv2.imwrite(str(root / "images" / split / f"{i:05d}.jpg"), scene.image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        lines = [
            f"{SHAPE_IDS[c]} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
            for (x1, y1, x2, y2), c in zip(scene.boxes, scene.classes, strict=True)
        ]
        (root / "labels" / split / f"{i:05d}.txt").write_text("\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=str(ROOT / ".cache" / "train-prod"), help="dataset and run folder")
    ap.add_argument("--out", default=str(TRAINED))
    ap.add_argument("--train-images", type=int, default=400)
    ap.add_argument("--val-images", type=int, default=60)
    ap.add_argument("--epochs", type=int, default=24)
    ap.add_argument("--imgsz", type=int, default=320, help="training size")
    ap.add_argument("--export-imgsz", type=int, default=640)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=0.002, help="AdamW's initial learning rate")
    args = ap.parse_args()

    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(ROOT / ".cache" / "ultralytics"))
    Path(os.environ["YOLO_CONFIG_DIR"]).mkdir(parents=True, exist_ok=True)
    import torch
    import ultralytics
    from ultralytics import YOLO
    from ultralytics.utils import YAML

    names = dict(YAML.load(Path(ultralytics.__file__).parent / "cfg" / "datasets" / "coco.yaml")["names"])
    work = Path(args.work).resolve()
    data = work / "data"
    if not (data / "images" / "val").exists():
        write_split(data, "train", args.train_images, args.seed + 1)
        write_split(data, "val", args.val_images, args.seed + 2)
    (work / "data.yaml").write_text(
        f"path: {data}\ntrain: images/train\nval: images/val\nnames:\n"
        + "".join(f"  {i}: {json.dumps(n)}\n" for i, n in names.items())
    )
    torch.manual_seed(args.seed)
    t0 = time.monotonic()
    model = YOLO("yolov8n.yaml")
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
        name="shapes80",
        exist_ok=True,
        fliplr=0.5,
        flipud=0.5,
        # Ultralytics' "auto" optimizer scales AdamW's rate by 5 / (4 + nc): with 80 classes that is
        # 1.2e-4, and a few hundred iterations from scratch learn nothing. The bundled 3-class model
        # trained at about this rate.
        optimizer="AdamW",
        lr0=args.lr,
        warmup_epochs=2,
        verbose=False,
    )
    train_s = time.monotonic() - t0
    best = work / "runs" / "shapes80" / "weights" / "best.pt"
    trained = YOLO(str(best))
    metrics = trained.val(data=str(work / "data.yaml"), imgsz=args.imgsz, device="cpu", plots=False, verbose=False)
    exported = Path(trained.export(format="onnx", imgsz=args.export_imgsz, device="cpu"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(exported, out / ONNX.name)
    card = {
        "file": ONNX.name,
        "tool": "model_repository/tools/train_production.py",
        "architecture": "yolov8n.yaml (Ultralytics), from scratch",
        "classes": "COCO's 80 names; the shapes are labelled "
        + ", ".join(f"{CLASS_NAMES[i]} -> {SHAPE_IDS[i]} ({names[SHAPE_IDS[i]]})" for i in range(len(CLASS_NAMES))),
        "export": f"model.export(format='onnx', imgsz={args.export_imgsz}): the default, batch fixed to 1",
        "recipe": {k: v for k, v in vars(args).items() if k not in ("work", "out")},
        "train_seconds": round(train_s),
        "validation_at_train_size": {
            "mAP50": round(float(metrics.box.map50), 4),
            "mAP50-95": round(float(metrics.box.map), 4),
            "precision": round(float(metrics.box.mp), 4),
            "recall": round(float(metrics.box.mr), 4),
        },
        "versions": {"ultralytics": ultralytics.__version__, "torch": torch.__version__},
        "licence": "trained here on generated images; Ultralytics (AGPL-3.0) used as a tool only",
    }
    (out / CARD.name).write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
