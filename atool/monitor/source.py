"""Frames in stream order from a folder, a video file (OpenCV) or a camera index.

A source yields ``Frame`` objects. A frame that cannot be decoded comes through
with ``rgb=None`` and a reason, so the caller can skip it, count it and go on.
``skip(n)`` passes over frames without decoding them (real-time mode drops).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from atool.core.errors import BadInput
from atool.data.images import BadImage, list_images, read_image


@dataclass
class Frame:
    index: int  # position in the stream, from 0
    name: str  # file path relative to the folder, or "frame_<index>" for video and cameras
    rgb: np.ndarray | None  # uint8 H x W x 3, None when the frame could not be decoded
    reason: str | None = None


class FolderSource:
    """Every image under a folder, in path order (subfolders included, sorted)."""

    live = False

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.paths = list_images(self.root)
        if not self.paths:
            raise BadInput(f"no images in {self.root}; give a folder of frames (png, jpg, ...)")
        self.pos = 0

    def __iter__(self) -> Iterator[Frame]:
        while self.pos < len(self.paths):
            i, path = self.pos, self.paths[self.pos]
            self.pos += 1
            name = path.relative_to(self.root).as_posix()
            try:
                yield Frame(i, name, read_image(path))
            except BadImage as exc:
                yield Frame(i, name, None, str(exc))

    def skip(self, n: int) -> int:
        n = max(0, min(n, len(self.paths) - self.pos))
        self.pos += n
        return n

    def close(self) -> None:
        pass


class VideoSource:
    """A video file or a camera, through OpenCV. A camera is live: frames arrive in real time."""

    def __init__(self, spec: str | int):
        self.spec = spec
        self.live = isinstance(spec, int)
        what = f"camera {spec}" if self.live else f"video {spec}"
        if not self.live and not Path(str(spec)).is_file():
            raise BadInput(f"{what} not found; give a folder of frames, a video file or a camera index")
        self.cap = cv2.VideoCapture(spec)
        ok, first = (self.cap.read() if self.cap.isOpened() else (False, None))
        if not ok or first is None:
            self.cap.release()
            raise BadInput(f"cannot read {what}: OpenCV could not open or decode it (unsupported codec, "
                           "corrupt file or no such device)")
        self.first: np.ndarray | None = first
        self.pos = 0

    def __iter__(self) -> Iterator[Frame]:
        while True:
            if self.first is not None:
                bgr, self.first = self.first, None
            else:
                ok, bgr = self.cap.read()
                if not ok:
                    return
            i = self.pos
            self.pos += 1
            if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3:
                yield Frame(i, f"frame_{i:06d}", None, "undecodable frame")
            else:
                yield Frame(i, f"frame_{i:06d}", np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))

    def skip(self, n: int) -> int:
        done = 0
        for _ in range(max(0, n)):
            if self.first is not None:
                self.first = None
            elif not self.cap.grab():
                break
            self.pos += 1
            done += 1
        return done

    def close(self) -> None:
        self.cap.release()


def open_source(spec: str) -> FolderSource | VideoSource:
    """A folder, a video file, or a camera index (digits)."""
    text = str(spec)
    if text.isdigit() and not Path(text).exists():
        return VideoSource(int(text))
    if Path(text).is_dir():
        return FolderSource(text)
    return VideoSource(text)
