"""Grow answered points into their superpixels, so one click labels more than one pixel.

Method ``superpixel``: SLIC (scikit-image) cuts the image into superpixels of
about ``segment_size`` pixels. A superpixel holding answered points of one
class, and no point of another class and no null answer, gets that class on
all its pixels. ``atool ingest --expand superpixel`` applies it to every
answered point (region answers are already dense); the expanded pixels get
origin ``ORIGIN_EXPANDED`` (3) so training can weight them and
``expansion_accuracy`` can score them against ground truth.

Purity safeguard (the chosen one): colour spread and an area cap. A
superpixel is not expanded when

- its area is above ``max_area`` pixels (default 4 x ``segment_size``):
  SLIC's connectivity pass can leave large irregular segments that reach
  across objects; or
- its colour spread is above ``max_spread``: the root mean square, over its
  pixels and the three RGB channels, of the distance to its mean colour, in
  0..255 units. A superpixel that straddles the edge between two differently
  coloured objects has a high spread; one inside a flat region a low one.

The model's prediction is deliberately not the safeguard. A click is worth
most where it corrects a confident error (DESIGN.md §4: dark sky predicted
"building" at 0.91); keeping only superpixel pixels where the prediction
agrees with the click would expand nothing exactly there, and where the
prediction does agree, ingest's pseudo labels already carry the class.
Colour needs no model, so any answers (from people or the oracle) expand.

Everything here is vectorised over pixels and superpixels (``np.bincount``
per segment, a look-up table from segment to class); the only per-image cost
beyond that is SLIC itself.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from atool.annotate.answers import ORIGIN_EXPANDED, ORIGIN_ORACLE
from atool.core.errors import BadInput
from atool.core.labels import IGNORE
from atool.data.adapters.folder import read_classes
from atool.data.images import list_images, read_label

METHODS = ("superpixel",)


@dataclass(frozen=True)
class SuperpixelParams:
    """Parameters of the ``superpixel`` expansion (``--expand-param KEY=VALUE``)."""

    segment_size: int = 400  # mean superpixel area in pixels (SLIC n_segments = H * W / segment_size)
    compactness: float = 10.0  # SLIC's colour/space trade-off in CIELAB; higher = more regular shapes
    max_area: int = 0  # superpixels larger than this are not expanded; 0 = 4 * segment_size
    max_spread: float = 10.0  # RGB colour spread above which a superpixel is not expanded; inf = off

    @property
    def area_cap(self) -> int:
        return self.max_area or 4 * self.segment_size

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["max_area"] = self.area_cap
        if math.isinf(self.max_spread):
            d["max_spread"] = None  # JSON has no infinity
        return d


# key -> (smallest valid value, whether the smallest itself is valid)
_MINIMUM = {"segment_size": (4, True), "compactness": (0.0, False), "max_area": (0, True), "max_spread": (0.0, True)}


def parse_expansion(method: str | None, params: dict[str, Any] | list[str] | tuple[str, ...] | None = None) -> SuperpixelParams | None:
    """Validate ``--expand METHOD`` and its ``--expand-param KEY=VALUE`` list (or a dict).

    None when ``method`` is None. Unknown methods, keys, unparsable or
    out-of-range values are one-line BadInput naming what is valid.
    """
    if method is None:
        if params:
            raise BadInput(f"expansion parameters need an expansion method (--expand {' | '.join(METHODS)})")
        return None
    if method not in METHODS:
        raise BadInput(f"unknown expansion {method!r}; valid: {', '.join(METHODS)}")
    given: dict[str, Any] = {}
    if isinstance(params, dict):
        given = dict(params)
    else:
        for item in params or ():
            key, sep, value = str(item).partition("=")
            if not sep or not key.strip():
                raise BadInput(f"expansion parameter must be KEY=VALUE, got {item!r}")
            given[key.strip()] = value.strip()
    kinds = {f.name: f.type for f in fields(SuperpixelParams)}
    out = SuperpixelParams()
    for key, raw in given.items():
        if key not in kinds:
            raise BadInput(f"expansion {method!r} takes no parameter {key!r}; valid: {', '.join(kinds)}")
        value = _number(key, raw, whole=kinds[key] == "int")
        low, inclusive = _MINIMUM[key]
        if value < low or (value == low and not inclusive):
            raise BadInput(f"expansion parameter {key} must be {'at least' if inclusive else 'above'} {low:g}, got {raw!r}")
        out = replace(out, **{key: value})
    return out


def _number(key: str, raw: Any, whole: bool) -> int | float:
    try:
        value = float(raw) if not isinstance(raw, bool) else math.nan
    except (TypeError, ValueError):
        value = math.nan
    if math.isnan(value) or (whole and (math.isinf(value) or value != int(value))):
        want = "a whole number" if whole else "a number"
        raise BadInput(f"expansion parameter {key} must be {want}, got {raw!r}")
    return int(value) if whole else value


def superpixels(image: np.ndarray, segment_size: int = 400, compactness: float = 10.0) -> np.ndarray:
    """SLIC superpixels of a uint8 H x W x 3 RGB image: int64 H x W segment ids 0..n-1."""
    from skimage.segmentation import slic  # imported here: only ingest --expand needs it

    h, w = image.shape[:2]
    n = max(1, round(h * w / segment_size))
    seg = slic(image, n_segments=n, compactness=compactness, start_label=0, channel_axis=-1, enforce_connectivity=True)
    return seg.astype(np.int64, copy=False)


def segment_stats(image: np.ndarray, segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-segment area (int64, n) and RGB colour spread (float64, n) of ``segments`` (ids 0..n-1)."""
    ids = segments.ravel()
    n = int(ids.max()) + 1 if ids.size else 0
    area = np.bincount(ids, minlength=n)
    safe = np.maximum(area, 1).astype(np.float64)
    var = np.zeros(n, np.float64)
    for c in range(3):  # three channels, not pixels: each bincount is one pass over the image
        v = image[..., c].ravel().astype(np.float64)
        mean = np.bincount(ids, weights=v, minlength=n) / safe
        var += np.bincount(ids, weights=v * v, minlength=n) / safe - mean * mean
    return area, np.sqrt(np.maximum(var / 3.0, 0.0))


class Expansion(NamedTuple):
    """``labels``: uint8 H x W, the class of every expanded superpixel's pixels, 255 elsewhere.
    ``superpixels``: how many were expanded; ``rejected``: superpixels with answered points
    that were not, by reason (conflict, null, area, spread)."""

    labels: np.ndarray
    superpixels: int
    rejected: dict[str, int]


def expand_points(
    image: np.ndarray,
    yx: np.ndarray,
    labels: np.ndarray,
    params: SuperpixelParams | None = None,
    *,
    segments: np.ndarray | None = None,
) -> Expansion:
    """Expand answered points to their superpixels, under the purity safeguard (module doc).

    ``image`` uint8 H x W x 3 RGB; ``yx`` int N x 2 (row, column) of the
    answered points; ``labels`` uint8 N, their classes, 255 for a null answer
    (which keeps its superpixel from being expanded). ``segments`` (int H x W,
    ids >= 0) replaces SLIC when given. Pure: reads nothing, writes nothing.
    """
    params = params or SuperpixelParams()
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise BadInput(f"expansion needs a uint8 H x W x 3 image, got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    yx = np.asarray(yx, dtype=np.int64).reshape(-1, 2)
    labels = np.asarray(labels).reshape(-1)
    if len(yx) != len(labels):
        raise BadInput(f"{len(yx)} points but {len(labels)} labels")
    if ((yx < 0) | (yx >= np.array([h, w]))).any():
        raise BadInput(f"answered points lie outside the {w}x{h} image")
    rejected = {"conflict": 0, "null": 0, "area": 0, "spread": 0}
    out = np.full((h, w), IGNORE, np.uint8)
    if len(yx) == 0:
        return Expansion(out, 0, rejected)
    if segments is None:
        seg = superpixels(image, params.segment_size, params.compactness)
    else:
        seg = np.asarray(segments)
        if seg.shape != (h, w) or not np.issubdtype(seg.dtype, np.integer) or (seg < 0).any():
            raise BadInput(f"segments must be non-negative integers of the image's size {h}x{w}, got {seg.dtype} {seg.shape}")
        seg = seg.astype(np.int64, copy=False)
    area, spread = segment_stats(image, seg)
    n = area.size

    clicked = seg[yx[:, 0], yx[:, 1]]
    pairs = np.unique(np.stack([clicked, labels.astype(np.int64)], axis=1), axis=0)  # distinct (segment, class)
    classes_in = np.bincount(pairs[:, 0], minlength=n)
    seg_label = np.full(n, IGNORE, np.int64)
    alone = classes_in[pairs[:, 0]] == 1
    seg_label[pairs[alone, 0]] = pairs[alone, 1]

    conflict = classes_in > 1
    null = (classes_in == 1) & (seg_label == IGNORE)
    labeled = seg_label != IGNORE
    too_big = labeled & (area > params.area_cap)
    mixed = labeled & ~too_big & (spread > params.max_spread)
    keep = labeled & ~too_big & ~mixed
    rejected.update(conflict=int(conflict.sum()), null=int(null.sum()), area=int(too_big.sum()), spread=int(mixed.sum()))
    lut = np.where(keep, seg_label, IGNORE).astype(np.uint8)
    return Expansion(lut[seg], int(keep.sum()), rejected)


def expansion_accuracy(
    labels_dir: str | os.PathLike, origin_dir: str | os.PathLike, gt_dir: str | os.PathLike, classes: list[str] | None = None
) -> dict[str, Any]:
    """Score the expanded pixels of an ingest output against ground truth.

    ``labels_dir``/``origin_dir`` are ingest's labels/ and origin/ (or an
    accumulated folder's); ``gt_dir`` holds ``<stem>.png`` ground truth (255 =
    ignore). Counts only pixels with origin ``ORIGIN_EXPANDED``; those whose
    truth is 255 are counted apart and not scored. ``classes`` names the
    per-class entries (default: classes.txt beside ``labels_dir``, else the
    label values). Returns images, expanded_pixels, click_pixels,
    scored_pixels, correct_pixels, accuracy (None when nothing was scored),
    gt_ignore_pixels, per_class {name: {pixels, correct, accuracy}}, and the
    stems whose ground truth is missing or of another size.
    """
    labels_dir, origin_dir, gt_dir = Path(labels_dir), Path(origin_dir), Path(gt_dir)
    for what, folder in (("label", labels_dir), ("origin", origin_dir), ("ground-truth", gt_dir)):
        if not folder.is_dir():
            raise BadInput(f"{what} folder {folder} does not exist")
    if classes is None and (labels_dir.parent / "classes.txt").is_file():
        classes = read_classes(labels_dir.parent / "classes.txt")
    tally = np.zeros((2, IGNORE + 1), np.int64)  # [scored, correct] by expanded class
    totals = {"images": 0, "expanded_pixels": 0, "click_pixels": 0, "gt_ignore_pixels": 0}
    missing: list[str] = []
    mismatched: list[str] = []
    for path in list_images(labels_dir):
        rel = path.relative_to(labels_dir)
        origin_path = origin_dir / rel
        if not origin_path.is_file():
            raise BadInput(f"{origin_path} is missing: {labels_dir} and {origin_dir} must come from one ingest")
        origin = read_label(origin_path)
        expanded = origin == ORIGIN_EXPANDED
        if not expanded.any():
            continue
        stem = rel.with_suffix("").as_posix()
        gt_path = gt_dir / rel.with_suffix(".png")
        if not gt_path.is_file():
            missing.append(stem)
            continue
        label, gt = read_label(path), read_label(gt_path)
        if gt.shape != label.shape or origin.shape != label.shape:
            mismatched.append(stem)
            continue
        totals["images"] += 1
        totals["expanded_pixels"] += int(expanded.sum())
        totals["click_pixels"] += int((origin == ORIGIN_ORACLE).sum())
        scored = expanded & (gt != IGNORE)
        totals["gt_ignore_pixels"] += int((expanded & ~scored).sum())
        values = label[scored]
        tally[0] += np.bincount(values, minlength=IGNORE + 1)
        tally[1] += np.bincount(values[values == gt[scored]], minlength=IGNORE + 1)
    scored_n, correct_n = int(tally[0].sum()), int(tally[1].sum())
    per_class = {
        (classes[v] if classes is not None and v < len(classes) else str(v)): {
            "pixels": int(tally[0, v]), "correct": int(tally[1, v]), "accuracy": float(tally[1, v] / tally[0, v]),
        }
        for v in np.flatnonzero(tally[0]).tolist()
    }
    return {
        **totals,
        "scored_pixels": scored_n,
        "correct_pixels": correct_n,
        "accuracy": correct_n / scored_n if scored_n else None,
        "per_class": per_class,
        "missing_gt": missing,
        "size_mismatch": mismatched,
    }


__all__ = ["METHODS", "SuperpixelParams", "parse_expansion", "superpixels", "segment_stats", "Expansion", "expand_points", "expansion_accuracy"]
