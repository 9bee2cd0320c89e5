"""Decode ahead of inference and group decoded images into same-size batches.

Worker threads read and decode (OpenCV and file reads release the GIL) while
the caller runs the backend on the previous batch. At most ``prefetch``
decoded images wait in memory, so memory does not grow with the folder size.
Images come back in listing order, which keeps runs reproducible and lets a
batch be cut wherever the image size changes.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from atool.data.images import BadImage, read_image


@dataclass
class Decoded:
    """One listed image: ``rgb`` uint8 H x W x 3, or None with ``reason`` when unreadable."""

    index: int
    path: Path
    rgb: np.ndarray | None
    reason: str | None
    seconds: float


def _decode(index: int, path: Path) -> Decoded:
    start = time.perf_counter()
    try:
        rgb, reason = read_image(path), None
    except BadImage as exc:
        rgb, reason = None, str(exc)
    except OSError as exc:  # vanished or unreadable between listing and decoding
        rgb, reason = None, f"{path}: {exc.strerror or exc}"
    return Decoded(index, path, rgb, reason, time.perf_counter() - start)


def decode_ahead(paths: list[Path], workers: int, prefetch: int) -> Iterator[Decoded]:
    """Yield every path decoded, in order; ``workers`` = 0 decodes on the calling thread."""
    if workers <= 0:
        for i, path in enumerate(paths):
            yield _decode(i, path)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="atool-decode") as pool:
        pending: deque[Future[Decoded]] = deque()
        next_index = 0
        try:
            while pending or next_index < len(paths):
                while next_index < len(paths) and len(pending) < max(prefetch, 1):
                    pending.append(pool.submit(_decode, next_index, paths[next_index]))
                    next_index += 1
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()


def same_size_batches(decoded: Iterator[Decoded], batch_size: int, waited: list[float]) -> Iterator[tuple[list[Decoded], list[Decoded]]]:
    """Group readable images into batches of one size, at most ``batch_size`` long.

    Yields (batch, unreadable) pairs; ``unreadable`` holds the failures met
    since the previous yield (the batch may then be empty). Time spent waiting
    for the decoder is added to ``waited[0]``, which shows whether decoding or
    inference is the bottleneck.
    """
    batch: list[Decoded] = []
    bad: list[Decoded] = []
    it = iter(decoded)
    while True:
        start = time.perf_counter()
        item = next(it, None)
        waited[0] += time.perf_counter() - start
        if item is None:
            break
        if item.rgb is None:
            bad.append(item)
            continue
        if batch and (item.rgb.shape != batch[0].rgb.shape or len(batch) >= batch_size):
            yield batch, bad
            batch, bad = [], []
        batch.append(item)
    if batch or bad:
        yield batch, bad
