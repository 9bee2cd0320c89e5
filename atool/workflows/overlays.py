"""Overlay pictures of a query list (``atool query --overlays DIR``): what annotators are asked, at a glance.

One PNG per queried image, ``DIR/<image path without suffix>.png``, two panels side by side:

- left: the image, each region query as a translucent mask in its predicted
  class's colour (outlined), each point query as a dot coloured by its score
  (viridis over the list's score range: yellow is the most uncertain);
- right: the model's predicted label map in the class palette.

A strip below names the classes by colour and gives the score range. Small
images are enlarged (nearest neighbour for labels) so a panel is at least
``min_width`` pixels wide. The query list does not carry the predicted map, so
the model runs again on each queried image: one forward pass per image, only
for the pictures.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from atool.core.io import atomic_write_bytes
from atool.data.images import BadImage, read_image

log = logging.getLogger("atool.overlays")

# Cityscapes' colours for the names it shares with atool's class sets; other names get PALETTE_FALLBACK.
NAMED_COLOURS = {
    "road": (128, 64, 128), "sidewalk": (244, 35, 232), "building": (70, 70, 70), "wall": (102, 102, 156),
    "fence": (190, 153, 153), "pole": (153, 153, 153), "traffic light": (250, 170, 30), "traffic sign": (220, 220, 0),
    "vegetation": (107, 142, 35), "terrain": (152, 251, 152), "sky": (70, 130, 180), "person": (220, 20, 60),
    "rider": (255, 0, 0), "car": (0, 0, 142), "truck": (0, 0, 70), "bus": (0, 60, 100), "train": (0, 80, 100),
    "motorcycle": (0, 0, 230), "bicycle": (119, 11, 32),
}
PALETTE_FALLBACK = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
                    (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
REGION_ALPHA = 0.45


def class_colours(classes: list[str]) -> np.ndarray:
    """uint8 C x 3 RGB colour of each class (Cityscapes' where the name is one of its classes)."""
    out, spare = [], iter(PALETTE_FALLBACK * (len(classes) // len(PALETTE_FALLBACK) + 1))
    for name in classes:
        out.append(NAMED_COLOURS.get(name.lower()) or next(spare))
    return np.asarray(out, np.uint8).reshape(-1, 3)


def score_colours(scores: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """uint8 N x 3 RGB viridis colour of each score, ``lo``..``hi`` mapped to dark..yellow."""
    import cv2

    t = np.zeros_like(scores, np.float64) if hi <= lo else (np.asarray(scores, np.float64) - lo) / (hi - lo)
    idx = np.clip(np.round(t * 255), 0, 255).astype(np.uint8).reshape(-1, 1)
    return cv2.applyColorMap(idx, cv2.COLORMAP_VIRIDIS).reshape(-1, 3)[:, ::-1].copy()


def draw_overlay(image: np.ndarray, labels: np.ndarray, item: dict[str, Any], classes: list[str], score_range: tuple[float, float],
                 min_width: int = 480) -> np.ndarray:
    """The overlay picture of one query-list image entry.

    image: uint8 H x W x 3 RGB; labels: H x W predicted class indices. Returns
    uint8 H' x W' x 3 RGB (two panels of s*H x s*W plus the legend strip).
    """
    import cv2

    from atool.ops import rle

    h, w = labels.shape
    s = max(1, -(-min_width // w))
    palette = class_colours(classes)
    left = cv2.resize(image, (w * s, h * s), interpolation=cv2.INTER_LINEAR if s > 1 else cv2.INTER_NEAREST).astype(np.float32)
    index = {name: i for i, name in enumerate(classes)}
    points = []
    for q in item["queries"]:
        colour = palette[index[q["predicted"]]] if q.get("predicted") in index else np.array([255, 255, 255], np.uint8)
        if q["kind"] == "region" and isinstance(q.get("mask"), dict):
            mask = rle.decode(q["mask"])
            if mask.shape != (h, w):
                continue
            big = cv2.resize(mask.astype(np.uint8), (w * s, h * s), interpolation=cv2.INTER_NEAREST).astype(bool)
            left[big] = (1 - REGION_ALPHA) * left[big] + REGION_ALPHA * colour.astype(np.float32)
            contours, _ = cv2.findContours(big.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            left_u8 = np.ascontiguousarray(left.astype(np.uint8))
            cv2.drawContours(left_u8, contours, -1, tuple(int(c) for c in colour), max(1, s // 2))
            left = left_u8.astype(np.float32)
        points.append((q["x"], q["y"], q["score"]))
    left = np.ascontiguousarray(np.clip(left, 0, 255).astype(np.uint8))
    if points:
        xy = np.asarray([(x, y) for x, y, _ in points], np.float64)
        cols = score_colours(np.asarray([p[2] for p in points]), *score_range)
        radius = max(3, round(min(h, w) * s / 80))
        for (x, y), c in zip(xy, cols):
            centre = (int((x + 0.5) * s), int((y + 0.5) * s))
            cv2.circle(left, centre, radius + 1, (0, 0, 0), -1, cv2.LINE_AA)
            cv2.circle(left, centre, radius, tuple(int(v) for v in c), -1, cv2.LINE_AA)
    safe = np.clip(labels, 0, len(classes) - 1)
    right = cv2.resize(palette[safe], (w * s, h * s), interpolation=cv2.INTER_NEAREST)
    gap = np.full((h * s, max(4, s * 2), 3), 255, np.uint8)
    top = np.concatenate([left, gap, right], axis=1)
    return np.concatenate([top, _legend(top.shape[1], classes, palette, score_range)], axis=0)


def _legend(width: int, classes: list[str], palette: np.ndarray, score_range: tuple[float, float]) -> np.ndarray:
    """A white strip: class swatches and names, then the score colour bar with its range."""
    import cv2

    row_h, font, scale = 22, cv2.FONT_HERSHEY_SIMPLEX, 0.45
    items = [(name, tuple(int(v) for v in palette[i])) for i, name in enumerate(classes)]
    rows: list[list[tuple[int, str, tuple[int, int, int]]]] = [[]]
    x = 6
    for name, colour in items:
        text_w = cv2.getTextSize(name, font, scale, 1)[0][0]
        if x + 18 + text_w > width - 6 and rows[-1]:
            rows.append([])
            x = 6
        rows[-1].append((x, name, colour))
        x += 18 + text_w + 14
    strip = np.full(((len(rows) + 1) * row_h + 6, width, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        y = 6 + r * row_h
        for x, name, colour in row:
            cv2.rectangle(strip, (x, y + 3), (x + 12, y + 15), colour, -1)
            cv2.putText(strip, name, (x + 18, y + 14), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    y = 6 + len(rows) * row_h
    bar_w = min(200, width // 3)
    lo, hi = score_range
    strip[y + 4 : y + 14, 6 : 6 + bar_w] = score_colours(np.linspace(lo, hi, bar_w), lo, hi)[None]
    cv2.putText(strip, f"point score {lo:.3g} .. {hi:.3g}", (12 + bar_w, y + 14), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def write_overlays(query_list: dict[str, Any], images: str | os.PathLike, model: Any, out_dir: str | os.PathLike) -> list[Path]:
    """Write one overlay PNG per image of ``query_list`` under ``out_dir``; return the paths written.

    ``model``: the model file (or loaded Backend) the queries came from, run
    again for the predicted maps. Images that cannot be read, or whose path
    is not a safe relative one, are skipped with a warning.
    """
    import cv2

    from atool.annotate.collect import safe_rel, stem_of
    from atool.runtime.backends import Backend, load_backend

    backend = model if isinstance(model, Backend) else load_backend(model)
    classes = list(query_list["classes"])
    scores = [q["score"] for item in query_list["images"] for q in item["queries"]]
    score_range = (float(min(scores)), float(max(scores))) if scores else (0.0, 1.0)
    root, out = Path(images), Path(out_dir)
    written = []
    for item in query_list["images"]:
        rel = safe_rel(item["image"])
        if rel is None:
            log.warning("overlays: skipped %r: not a relative path inside the image folder", item["image"])
            continue
        try:
            image = read_image(root / rel)
        except BadImage as exc:
            log.warning("overlays: skipped %s: %s", rel, exc)
            continue
        labels = backend.infer(image[None])["prob"][0].argmax(axis=0)
        picture = draw_overlay(image, labels, item, classes, score_range)
        _, data = cv2.imencode(".png", np.ascontiguousarray(picture[:, :, ::-1]))
        written.append(atomic_write_bytes(out / f"{stem_of(rel)}.png", data.tobytes()))
    log.info("overlays: %d pictures -> %s", len(written), out)
    return written


__all__ = ["class_colours", "score_colours", "draw_overlay", "write_overlays"]
