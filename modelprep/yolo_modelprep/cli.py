"""yolo-model-prepare: the init container's step between fetching a model and Triton loading it.

    yolo-model-prepare --model FILE --plan PLAN.json=CONFIG.pbtxt [--plan ...] [--report PATH]

Reads FILE (an ONNX model; a TensorRT plan takes its facts from the plan's model fields), lets
the CR's fields in PLAN override what the file says, makes a fixed batch axis dynamic where the
plan batches (rewriting FILE in place, after a check at batch 2), and writes one config.pbtxt
per plan (a service's tiers share one file). --report writes a JSON line for the operator (the
container's termination message): the reason (ServedAsExported, BatchAxisRewritten, Unbatched)
and a message.

Exit 0 on success; 3 when the file cannot be served, with `<Reason>: <why>` as the last line of
the log (ModelIncompatible or SpecContradictsModel), which the operator quotes in a condition.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from .config import render
from .facts import ModelIncompatible, Overrides, from_overrides

EXIT_INCOMPATIBLE = 3


def _write(path: Path, data: bytes) -> None:
    """Atomically: a half-written model or config never appears."""
    tmp = path.with_name(path.name + ".prep")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def prepare(model_file: Path, plans: list[tuple[dict, Path]]) -> dict:
    """Inspect, make batchable and write the configs; returns the report."""
    t0 = time.monotonic()
    first = plans[0][0]
    optimized: list[str] = []
    overrides = Overrides.from_plan(first)
    if first.get("format") == "tensorrt":
        facts, reason, rewritten = from_overrides(overrides), "ServedAsExported", False
        facts = replace(facts, batch_note="a TensorRT plan: its batch range was fixed when it was built")
    else:
        from .batch import make_batchable
        from .inspect import inspect, load

        insp = inspect(load(model_file), overrides)
        model, facts, reason = make_batchable(insp, want_batch=max(p["max_batch_size"] for p, _ in plans) > 1)
        if any((first.get("optimize") or {}).values()):
            from .optimize import optimize

            model, facts, optimized = optimize(model, facts, first["optimize"], overrides.max_detections)
        rewritten = model is not insp.model
        if rewritten:
            _write(model_file, model.SerializeToString())
    digest = hashlib.sha256(model_file.read_bytes()).hexdigest()  # the served file's: it names its engine cache
    for p, out in plans:
        out.parent.mkdir(parents=True, exist_ok=True)
        _write(out, render(p, facts, digest).encode())
    return {
        "reason": reason,
        "message": f"{facts.summary()}; {facts.batch_note}"
        + (f"; optimized: {', '.join(optimized)}" if optimized else ""),
        "optimized": optimized,
        "classes": len(facts.class_names),
        "maxBatchSize": max(p["max_batch_size"] for p, _ in plans) if facts.batchable else 1,
        "rewritten": rewritten,
        "sha256": digest,
        "seconds": round(time.monotonic() - t0, 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="yolo-model-prepare", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--plan", action="append", required=True, help="PLAN.json=CONFIG.pbtxt")
    ap.add_argument("--report", type=Path, help="write the JSON report here too (the termination message)")
    args = ap.parse_args(argv)
    plans = []
    for item in args.plan:
        src, sep, out = item.partition("=")
        if not sep:
            ap.error(f"--plan {item}: expected PLAN.json=CONFIG.pbtxt")
        plans.append((json.loads(Path(src).read_text()), Path(out)))
    try:
        report = prepare(args.model, plans)
    except ModelIncompatible as exc:
        print(f"yolo-model-prepare: {args.model}: the model cannot be served", file=sys.stderr)
        print(f"{exc.reason}: {exc}", file=sys.stderr, flush=True)
        return EXIT_INCOMPATIBLE
    line = json.dumps(report, separators=(",", ":"))
    print(
        f"yolo-model-prepare: {args.model}: {report['reason']} in {report['seconds']} s: {report['message']}",
        file=sys.stderr,
        flush=True,
    )
    if args.report:
        try:
            args.report.write_text(line)
        except OSError as exc:  # outside a pod: no termination log
            print(f"yolo-model-prepare: cannot write {args.report}: {exc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
