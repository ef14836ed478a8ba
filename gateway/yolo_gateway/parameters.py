"""A request's detection parameters: the query's values over the service's defaults, class names
resolved against the model's, each bad value a 400 (BadParameter)."""

from __future__ import annotations

from .errors import BadParameter
from .postprocess import DetectParams
from .settings import Settings


def detect_params(
    settings: Settings,
    class_names: tuple[str, ...] | None,
    conf: float | None = None,
    iou: float | None = None,
    max_det: int | None = None,
    classes: list[str] | None = None,
    preprocess: str | None = None,
    tier: str | None = None,
) -> DetectParams:
    """`class_names`: the model's, needed only when `classes` names some (None: not known yet)."""
    s = settings
    if max_det is not None and max_det > s.max_det_limit:
        raise BadParameter(f"max_det must be <= {s.max_det_limit}")
    return DetectParams(
        conf=s.conf if conf is None else conf,
        iou=s.iou if iou is None else iou,
        max_det=s.max_det if max_det is None else max_det,
        classes=class_ids(class_names or (), classes) if classes else None,
        max_nms=s.max_nms,
        preprocess=preprocess or s.preprocess,
        tier=tier,
    )


def class_ids(names: tuple[str, ...], classes: list[str] | None) -> tuple[int, ...] | None:
    """Ids or names, comma-separated or repeated, as sorted unique ids (None: no filter)."""
    if not classes:
        return None
    by_name = {n: i for i, n in enumerate(names)}
    ids = []
    for token in (t.strip() for c in classes for t in c.split(",")):
        if not token:
            continue
        if token.lstrip("-").isdigit():
            idx = int(token)
        elif token in by_name:
            idx = by_name[token]
        else:
            raise BadParameter(f"unknown class {token!r}; classes are ids 0..{len(names) - 1} or names {list(names)}")
        if not 0 <= idx < len(names):
            raise BadParameter(f"class id {idx} out of range 0..{len(names) - 1}")
        ids.append(idx)
    return tuple(sorted(set(ids))) or None
