"""Export production-size YOLO test models with RANDOM weights, as a user's `yolo export` makes them.

    .cache/train-venv/bin/python model_repository/tools/export_models.py [--out .cache/prod-models] [--force]

(`make prod-models` creates that venv from the `train` extra and runs this.)

Every file is a stock Ultralytics architecture built from its yaml (`YOLO("yolov8n.yaml")`, no
download, no pretrained weights) with weights drawn from a fixed torch seed, then exported by
Ultralytics' own `model.export(format="onnx", ...)` with its defaults (onnxslim simplification,
the opset it picks, its `metadata_props`: names, imgsz, stride, batch, task, ...). The graphs,
tensor names, shapes and metadata are what users bring; the detections are meaningless.

| file | what |
|---|---|
| yolov8n-640-static.onnx | the default export: `images [1,3,640,640]` -> `output0 [1,84,8400]`, COCO names |
| yolov8n-640-dynamic.onnx | `dynamic=True`: batch, height and width symbolic |
| yolov8n-416-static.onnx | `imgsz=416` default export |
| yolov8n-5cls-640-static.onnx | a 5-class model (yaml with nc=5): car, bus, truck, bike, person |
| yolov8n-cls.onnx | classification, 224 (incompatible: the operator must refuse it) |
| yolov8n-seg-640.onnx | segmentation (incompatible) |
| yolov8n-pose-640.onnx | pose (incompatible) |
| manifest.json | per file: sha256, size, ONNX inputs/outputs (names, dtypes, declared dims), metadata_props |

The three 80-class detectors share one set of weights (same seed, same architecture), so their
outputs on the same image agree.

Cached and idempotent: a file whose sha256 and recipe match the manifest is kept (`--force`
re-exports). Files are written under a temporary name and renamed into place. The graphs and weights
are reproducible on one machine (fixed torch seed; PYTHONHASHSEED=0 for onnxslim), the bytes are not
(Ultralytics stamps the export date into the metadata, and other torch/onnxslim versions make other
graphs), so the manifest records what was made here.

Licences: Ultralytics (`ultralytics` on PyPI) is AGPL-3.0. It is used only by this tool and
`train.py`, through the optional `train` extra, and never at runtime. The ONNX files are
git-ignored build products under `.cache/` and are not distributed; their weights are random.
Nothing here needs the network: `YOLO_OFFLINE=1` and `YOLO_AUTOINSTALL=false` are set before
Ultralytics is imported, and its settings live under `.cache/ultralytics`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = "manifest.json"
FIVE_CLASSES = {0: "car", 1: "bus", 2: "truck", 3: "bike", 4: "person"}


@dataclass(frozen=True)
class Spec:
    file: str
    yaml: str  # an Ultralytics model yaml, or the nc override below applied to it
    task: str
    imgsz: int
    names: str  # "coco", "imagenet", "person" or "five"
    dynamic: bool = False
    nc: int | None = None  # write a copy of the yaml with this nc
    servable: bool = True  # False: a file the operator must refuse


SPECS = (
    Spec("yolov8n-640-static.onnx", "yolov8n.yaml", "detect", 640, "coco"),
    Spec("yolov8n-640-dynamic.onnx", "yolov8n.yaml", "detect", 640, "coco", dynamic=True),
    Spec("yolov8n-416-static.onnx", "yolov8n.yaml", "detect", 416, "coco"),
    Spec("yolov8n-5cls-640-static.onnx", "yolov8n-5cls.yaml", "detect", 640, "five", nc=5),
    Spec("yolov8n-cls.onnx", "yolov8n-cls.yaml", "classify", 224, "imagenet", servable=False),
    Spec("yolov8n-seg-640.onnx", "yolov8n-seg.yaml", "segment", 640, "coco", servable=False),
    Spec("yolov8n-pose-640.onnx", "yolov8n-pose.yaml", "pose", 640, "person", servable=False),
)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600
    os.replace(tmp, path)


def describe(path: Path) -> dict:
    """What the ONNX file declares: tensors (dims as ints, symbolic names, or null) and metadata_props."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {t.name for t in model.graph.initializer}

    def tensors(values):
        out = []
        for v in values:
            if v.name in initializers:
                continue
            t = v.type.tensor_type
            dims = [
                d.dim_value if d.HasField("dim_value") else (d.dim_param if d.HasField("dim_param") else None)
                for d in t.shape.dim
            ]
            out.append({"name": v.name, "dtype": onnx.TensorProto.DataType.Name(t.elem_type).lower(), "shape": dims})
        return out

    return {
        "inputs": tensors(model.graph.input),
        "outputs": tensors(model.graph.output),
        "opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None),
        "ir_version": model.ir_version,
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "metadata": {p.key: p.value for p in model.metadata_props},
    }


def smoke(path: Path, inputs: list[dict]) -> list[list[int]]:
    """Run the file once in onnxruntime on zeros (symbolic dims: batch 1, the exported imgsz)."""
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feeds = {}
    for spec in inputs:
        shape = [d if isinstance(d, int) and d > 0 else None for d in spec["shape"]]
        shape[0] = shape[0] or 1
        fallback = [1, 3, 640, 640]
        shape = [d or fallback[i] for i, d in enumerate(shape)]
        feeds[spec["name"]] = np.zeros(shape, dtype=np.float32)
    return [list(o.shape) for o in sess.run(None, feeds)]


def class_names(kind: str) -> dict[int, str]:
    from ultralytics.utils import ROOT as UROOT
    from ultralytics.utils import YAML

    if kind == "coco":
        return dict(YAML.load(UROOT / "cfg" / "datasets" / "coco.yaml")["names"])
    if kind == "imagenet":
        return dict(YAML.load(UROOT / "cfg" / "datasets" / "ImageNet.yaml")["names"])
    if kind == "person":
        return {0: "person"}
    if kind == "five":
        return dict(FIVE_CLASSES)
    raise ValueError(kind)


def export_one(spec: Spec, work: Path, seed: int) -> Path:
    """Build spec's model from its yaml with seeded random weights and export it; returns the .onnx in work."""
    import torch
    from ultralytics import YOLO
    from ultralytics.nn.tasks import yaml_model_load
    from ultralytics.utils import YAML

    os.chdir(work)  # Ultralytics writes <yaml stem>.onnx into the current directory
    cfg = spec.yaml
    if spec.nc is not None:
        base = yaml_model_load(spec.yaml.replace(f"-{spec.nc}cls", ""))
        d = {k: v for k, v in base.items() if k not in ("scale", "yaml_file")}
        d["nc"] = spec.nc
        YAML.save(work / spec.yaml, d)  # the stem keeps the scale letter: yolov8n-5cls -> "n"
        cfg = str(work / spec.yaml)
    torch.manual_seed(seed)
    model = YOLO(cfg, task=spec.task)
    model.model.names = class_names(spec.names)
    f = model.export(format="onnx", imgsz=spec.imgsz, dynamic=spec.dynamic, device="cpu")
    return Path(f)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=".cache/prod-models", help="output folder (default: %(default)s)")
    ap.add_argument("--force", action="store_true", help="re-export files that are already cached")
    ap.add_argument("--seed", type=int, default=0, help="torch seed for the random weights")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    ap.add_argument("--only", action="append", default=[], help="export only this file (repeatable)")
    ap.add_argument("--verbose", action="store_true", help="Ultralytics' own log lines")
    args = ap.parse_args()

    if os.environ.get("PYTHONHASHSEED") != "0":
        # onnxslim's shape inference iterates over sets: without a fixed hash seed a dynamic export's
        # value_info (not its nodes or weights) differs from run to run.
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable, *sys.argv])
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # Before Ultralytics is imported: no hub, no pip, no font/asset downloads, settings kept in .cache.
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(ROOT / ".cache" / "ultralytics"))
    os.environ.setdefault("YOLO_VERBOSE", "true" if args.verbose else "false")
    Path(os.environ["YOLO_CONFIG_DIR"]).mkdir(parents=True, exist_ok=True)

    manifest_path = out / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        manifest = {}
    files = manifest.get("files", {})
    specs = [s for s in SPECS if not args.only or s.file in args.only]
    unknown = set(args.only) - {s.file for s in SPECS}
    if unknown:
        ap.error(f"unknown file(s): {', '.join(sorted(unknown))}; known: {', '.join(s.file for s in SPECS)}")

    todo = []
    for spec in specs:
        entry = files.get(spec.file)
        recipe = {**asdict(spec), "seed": args.seed}
        dest = out / spec.file
        if (
            not args.force
            and entry is not None
            and entry.get("recipe") == recipe
            and dest.is_file()
            and dest.stat().st_size == entry.get("size")
            and sha256(dest) == entry.get("sha256")
        ):
            print(f"cached   {spec.file} ({entry['size'] / 1e6:.1f} MB)")
            continue
        todo.append((spec, recipe))

    if todo:
        import onnx
        import onnxruntime
        import torch
        import ultralytics

        torch.set_num_threads(max(1, args.threads))
        manifest["tool"] = "model_repository/tools/export_models.py"
        manifest["note"] = "random weights; Ultralytics (AGPL-3.0) export; not for distribution"
        manifest["versions"] = {
            "ultralytics": ultralytics.__version__,
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "python": sys.version.split()[0],
        }
        cwd = os.getcwd()
        work = Path(tempfile.mkdtemp(dir=out, prefix=".work-"))
        try:
            for spec, recipe in todo:
                t0 = time.monotonic()
                exported = export_one(spec, work, args.seed)
                seconds = time.monotonic() - t0
                info = describe(exported)
                outputs = smoke(exported, info["inputs"])
                tmp = out / f".{spec.file}.tmp"
                shutil.move(str(exported), tmp)  # same filesystem as dest: the rename below is atomic
                os.replace(tmp, out / spec.file)
                dest = out / spec.file
                files[spec.file] = {
                    "sha256": sha256(dest),
                    "size": dest.stat().st_size,
                    "servable": spec.servable,
                    **info,
                    "smoke_output_shapes": outputs,
                    "export_seconds": round(seconds, 2),
                    "recipe": recipe,
                }
                manifest["files"] = files
                write_atomic(manifest_path, json.dumps(manifest, indent=2) + "\n")
                shapes = " ".join(f"{t['name']}{t['shape']}" for t in info["inputs"] + info["outputs"])
                print(f"exported {spec.file} ({dest.stat().st_size / 1e6:.1f} MB, {seconds:.1f} s) {shapes}")
        finally:
            os.chdir(cwd)
            shutil.rmtree(work, ignore_errors=True)

    manifest["files"] = {s.file: files[s.file] for s in SPECS if s.file in files} | {
        k: v for k, v in files.items() if k not in {s.file for s in SPECS}
    }
    text = json.dumps(manifest, indent=2) + "\n"
    if not manifest_path.is_file() or manifest_path.read_text() != text:
        write_atomic(manifest_path, text)
    print(f"manifest {manifest_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
