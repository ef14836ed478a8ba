"""Serving variants of a plain export, made on the way in (the CR's model.optimize):

- uint8 input: the graph takes uint8 NHWC and converts itself; a 640 px image is 1.2 MB on the
  wire instead of 4.9 MB;
- NMS in the graph: class-aware NMS (IoU and score floor fixed here) turns the raw [84, 8400]
  output (2.8 MB an image) into at most maxDetections boxes (a few KB).

The result is read again like any file, and checked at batch 2 when it batches: a variant that
fails the check is not served, and the plain file is, with the reason in the report.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import onnx

from . import graph
from .batch import check_batch
from .facts import ModelFacts, Overrides
from .inspect import inspect

NMS_IOU = 0.45
NMS_SCORE_FLOOR = 0.01


def optimize(
    model: onnx.ModelProto, facts: ModelFacts, options: dict[str, Any], max_det: int
) -> tuple[onnx.ModelProto, ModelFacts, list[str]]:
    """The model with the asked-for rewrites that apply to it, its facts, and what was done (or
    why not), in words."""
    out, done = copy.deepcopy(model), []
    gr = graph.Graph(out)
    if options.get("uint8_input"):
        if facts.encoding == "fp32-nchw":
            graph.uint8_nhwc_input(gr, facts.height, facts.width)
            done.append("uint8 NHWC input")
        else:
            done.append(f"input kept ({facts.encoding})")
    if options.get("nms"):
        if facts.output_format == "raw":
            graph.end2end(gr, NMS_SCORE_FLOOR, NMS_IOU, max_det)
            done.append(f"NMS in the graph (IoU {NMS_IOU}, up to {max_det} boxes)")
        else:
            done.append(f"output kept ({facts.output_format})")
    if out.SerializeToString() == model.SerializeToString():
        return model, facts, done
    onnx.checker.check_model(out)
    new = inspect(out, Overrides(class_names=facts.class_names, max_detections=max_det)).facts
    new = replace(new, batchable=facts.batchable, batch_note=facts.batch_note, names_from=facts.names_from)
    why = check_batch(out, new.input, 2 if facts.batchable else 1)
    if why is not None:
        return model, facts, [f"not optimized ({why})"]
    return out, new, done
