"""Shared machinery of the per-pixel strategies (entropy, confidence, margin).

A pixel strategy maps one image to an H x W uncertainty map and proposes its
highest pixels. With ``radius`` r > 0 only strict local maxima of the map in a
(2r+1) x (2r+1) window are proposed, so any two points of one image are more
than r pixels apart (Chebyshev distance): the suppression radius that keeps
clicks from piling onto one blob (DESIGN.md, measured pitfalls). Equal
scores, common where the map saturates, are told apart by a jitter smaller
than half a float32 step, drawn from the image's own generator, so the
maxima are unique and the order between different scores never changes.
"""

from __future__ import annotations

import cv2
import numpy as np

from atool.active.candidates import Candidates
from atool.active.strategies import Maps, Strategy
from atool.ops.uncertainty import at_points


def local_maxima(score: np.ndarray, radius: int, rng: np.random.Generator) -> np.ndarray:
    """Flat indices (ascending int64) of the strict local maxima of an H x W float32 map."""
    if radius <= 0:
        return np.arange(score.size, dtype=np.int64)
    s32 = score.astype(np.float32, copy=False)
    key = s32.astype(np.float64) + rng.random(s32.shape) * (0.5 * np.spacing(np.abs(s32)).astype(np.float64))
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    peak = cv2.dilate(key, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=-np.inf)
    return np.flatnonzero(key == peak)


def top_by_score(score: np.ndarray, index: np.ndarray, k: int) -> np.ndarray:
    """The k entries of ``index`` (ascending) with the highest ``score``; ties go to the lower index.

    ``score`` is (N,) aligned with ``index``; returns positions into them, in no particular order.
    """
    n = score.shape[0]
    if k >= n:
        return np.arange(n)
    if k <= 0:
        return np.zeros(0, np.int64)
    cut = np.partition(score, n - k)[n - k]
    above = np.flatnonzero(score > cut)
    tied = np.flatnonzero(score == cut)[: k - above.size]
    return np.concatenate([above, tied])


class PixelStrategy(Strategy):
    """Base for strategies that rank single pixels by an uncertainty map."""

    defaults = {"radius": 4}

    def check(self) -> None:
        self._require(self.params["radius"] >= 0, f"radius must be 0 or more, got {self.params['radius']}")

    def uncertainty(self, maps: Maps) -> np.ndarray:
        """H x W float32, higher = ask first."""
        raise NotImplementedError

    def candidates(self, maps: Maps, rng: np.random.Generator, want: int) -> Candidates:
        u = self.uncertainty(maps)
        if "labeled" in maps:
            # Already-labeled pixels must neither be proposed nor suppress their unlabeled neighbours.
            u = np.where(maps["labeled"], np.finfo(np.float32).min, u).astype(np.float32)
        h, w = u.shape
        flat = u.reshape(-1)
        idx = local_maxima(u, self.params["radius"], rng)
        idx = idx[np.sort(top_by_score(flat[idx], idx, want))]
        y, x = np.divmod(idx, w)
        cls, conf = at_points(maps["prob"], x, y)
        return Candidates.build(x, y, flat[idx], idx, cls, conf, size=(h, w))
