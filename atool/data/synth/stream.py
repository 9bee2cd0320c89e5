"""Video-like test streams: in-domain and shifted segments with known change points.

A drive is a run of clips. Each clip takes one base frame (a target-domain
image from a folder, or a freshly rendered target scene) and moves the camera
forward through it for 15-40 frames (a slow zoom toward the vanishing point,
with a little sway and fresh sensor noise on every frame), so consecutive
frames are strongly correlated, as in real video. A segment is a number of
frames under one condition: ``in`` (the target domain as is) or one of the
shifts in ``atool.data.synth.shifts``, whose look is drawn once per segment.

``parse_segments("in:300,night:200")`` gives the segment list;
``stream_frames`` yields the frames; ``write_stream`` writes them as a folder
(``frames/f_000000.png`` ...) plus ``stream.json`` with the change points.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np

from atool.core.errors import BadInput
from atool.core.io import atomic_write_json
from atool.data.images import list_images, read_image, write_image
from atool.data.synth.shifts import SHIFTS, apply_shift, draw_params

IN_DOMAIN = "in"
STREAM_FORMAT = "atool.stream/v1"


@dataclass
class Segment:
    """``length`` frames under ``condition`` (``in`` or a shift name); ``params`` are filled in when streamed."""

    condition: str
    length: int
    params: dict[str, Any] = field(default_factory=dict)


def parse_segments(text: str) -> list[Segment]:
    """``"in:300,night:200"`` -> segments. Lengths are whole frames >= 1."""
    segments = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, count = part.partition(":")
        name = name.strip()
        if name != IN_DOMAIN and name not in SHIFTS:
            raise BadInput(f"unknown segment condition {name!r} in {text!r}; valid: {IN_DOMAIN}, {', '.join(SHIFTS)}")
        try:
            length = int(count)
        except ValueError:
            raise BadInput(f"segment {part!r} needs a frame count, e.g. {name}:300") from None
        if length < 1:
            raise BadInput(f"segment {part!r}: the frame count must be >= 1")
        segments.append(Segment(name, length))
    if not segments:
        raise BadInput(f"no segments in {text!r}; write them as in:300,night:200")
    return segments


def change_points(segments: list[Segment]) -> list[int]:
    """Frame indices (from 0) where the condition differs from the previous frame's."""
    points, pos = [], 0
    for prev, seg in zip([None] + segments[:-1], segments):
        if prev is not None and seg.condition != prev.condition:
            points.append(pos)
        pos += seg.length
    return points


def folder_bases(images: str | os.PathLike, size: tuple[int, int] | None = None) -> Callable[[int], np.ndarray]:
    """Base frames from a folder of target images, cycled; unreadable files are passed over."""
    paths = list_images(images)
    if not paths:
        raise BadInput(f"no images in {images}; give a folder of in-domain (target) images")

    def get(i: int) -> np.ndarray:
        for k in range(len(paths)):
            try:
                rgb = read_image(paths[(i + k) % len(paths)])
            except BadInput:
                continue
            return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA) if size and rgb.shape[1::-1] != tuple(size) else rgb
        raise BadInput(f"no readable images in {images}")

    return get


def rendered_bases(seed: int, size: tuple[int, int]) -> Callable[[int], np.ndarray]:
    """Fresh target-domain scenes from the synthetic generator (split index 7: never in a written pair)."""
    from atool.data.synth.scene import render

    return lambda i: render(np.random.default_rng([seed, 7, i]), size[0], size[1], "target")[0]


def _ego_frame(base: np.ndarray, t: float, sway: float, rng: np.random.Generator) -> np.ndarray:
    # Driving forward: the view zooms toward the vanishing point (a bit above the centre).
    h, w = base.shape[:2]
    zoom = 1.0 + 0.35 * t
    cx, cy = w / 2 + sway * w, 0.45 * h
    m = np.float32([[zoom, 0, cx * (1 - zoom)], [0, zoom, cy * (1 - zoom)]])
    frame = cv2.warpAffine(base, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    noisy = frame.astype(np.float32) + rng.normal(0.0, 2.0, frame.shape).astype(np.float32)
    return np.clip(noisy + 0.5, 0, 255).astype(np.uint8)


def stream_frames(
    bases: Callable[[int], np.ndarray], segments: list[Segment], seed: int = 0, severity: float = 1.0,
) -> Iterator[tuple[int, np.ndarray, int]]:
    """Yield (frame index, uint8 HxWx3 RGB, segment index) for the whole stream; fills ``seg.params``."""
    rng = np.random.default_rng([seed, 11])
    frame_i, clip_i = 0, int(rng.integers(0, 1 << 20))
    base, left, span, sway = None, 0, 1, 0.0
    for s, seg in enumerate(segments):
        seg_rng = np.random.default_rng([seed, 13, s])
        if seg.condition != IN_DOMAIN:
            seg.params = draw_params(seg.condition, seg_rng, severity)
        for _ in range(seg.length):
            if left == 0:  # a cut to the next clip
                base, clip_i = bases(clip_i), clip_i + 1
                span = left = int(rng.integers(15, 41))
                sway = float(rng.uniform(-0.05, 0.05))
            frame_rng = np.random.default_rng([seed, 17, frame_i])
            frame = _ego_frame(base, (span - left) / span, sway, frame_rng)
            if seg.condition != IN_DOMAIN:
                frame = apply_shift(frame, seg.condition, seg.params, frame_rng)
            yield frame_i, frame, s
            frame_i, left = frame_i + 1, left - 1


def write_stream(
    out: str | os.PathLike, bases: Callable[[int], np.ndarray], segments: list[Segment], seed: int = 0,
    severity: float = 1.0, suffix: str = ".png",
) -> dict[str, Any]:
    """Write the stream as ``out/frames/f_NNNNNN<suffix>`` plus ``out/stream.json``; returns the json dict."""
    out = Path(out)
    for i, frame, _seg in stream_frames(bases, segments, seed, severity):
        write_image(out / "frames" / f"f_{i:06d}{suffix}", frame)
    info = {
        "format": STREAM_FORMAT, "seed": seed, "severity": severity, "frames": sum(s.length for s in segments),
        "segments": [{"condition": s.condition, "length": s.length, "params": s.params} for s in segments],
        "change_points": change_points(segments),
    }
    atomic_write_json(out / "stream.json", info)
    return info
