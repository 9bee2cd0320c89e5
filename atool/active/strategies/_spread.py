"""Shared machinery of the spreading strategies (coverage, ripu, hybrid).

Not a plug-in (the leading underscore keeps it out of module discovery):
importers name it explicitly.

* ``jittered_grid``: a stratified pixel sample, one uniform pixel per cell of
  a near-square grid, so a few thousand pixels stand for the whole image and
  every part of it is represented (a plain uniform sample leaves holes).
* ``peaks``: greedy spread picks on a score map computed on a strided
  lattice of the image (``Lattice``): strict local maxima in a window, in
  rounds, each round blocking the neighbourhoods of the points already
  taken, so any two points are more than ``radius`` pixels apart
  (Chebyshev) and a map with few maxima can still fill the request.
* ``block_around``: the lattice cells within ``radius`` pixels of given points.
* ``sequence_scores``: the scores of an image's ranked sequence for a total
  budget, the scheme of ``random``: the j-th point gets 1 / (j + 1 + u), so
  every image's first point comes before any image's second.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from atool.active.strategies.entropy_patch import grid_edges
from atool.active.strategies.pixel import local_maxima, top_by_score

# Suppression rounds in ``peaks``: a smooth map yields few maxima per round, and
# each round fills in around the last one's points; four rounds reach ~all
# of an image at the radii used here, and bound the work when a total budget
# asks every image for thousands of points.
_ROUNDS = 4


def jittered_grid(h: int, w: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """About ``n`` distinct pixels, one uniform pixel per cell of a gh x gw grid (gh * gw <= n).

    Returns (y, x), int64 (gh * gw,), row-major by cell.
    """
    gh = int(max(1, min(h, round(np.sqrt(n * h / max(w, 1))))))
    gw = int(max(1, min(w, n // gh)))
    ye, xe = grid_edges(h, gh), grid_edges(w, gw)
    u = rng.random((2, gh, gw))
    y = ye[:-1, None] + np.floor(u[0] * np.diff(ye)[:, None]).astype(np.int64)
    x = xe[None, :-1] + np.floor(u[1] * np.diff(xe)[None, :]).astype(np.int64)
    return y.reshape(-1), x.reshape(-1)


@dataclass(frozen=True)
class Lattice:
    """Pixels (oy + i * stride, ox + j * stride) of an H x W image, i < rows, j < cols.

    The phase (oy, ox) is drawn from the image's generator, so successive
    rounds on one image do not query the same lattice.
    """

    h: int
    w: int
    stride: int
    oy: int
    ox: int

    @staticmethod
    def draw(h: int, w: int, stride: int, rng: np.random.Generator) -> "Lattice":
        s = max(1, min(int(stride), h, w))
        oy, ox = (rng.integers(0, s, size=2) if s > 1 else (0, 0))
        return Lattice(h, w, s, int(oy), int(ox))

    def view(self, arr: np.ndarray) -> np.ndarray:
        """The lattice's samples of an (..., H, W) array (a view, no copy)."""
        return arr[..., self.oy :: self.stride, self.ox :: self.stride]

    def to_pixels(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flat lattice indices (K,) -> image (y, x), int64 (K,)."""
        cols = len(range(self.ox, self.w, self.stride))
        i, j = np.divmod(flat, cols)
        return self.oy + i * self.stride, self.ox + j * self.stride


def block_around(lat: Lattice, y: np.ndarray, x: np.ndarray, radius: int) -> np.ndarray:
    """bool lattice-shaped mask: cells whose pixel is within ``radius`` (Chebyshev) of a point (y, x)."""
    hit = np.zeros((lat.h, lat.w), np.uint8)
    if y.size:
        hit[y, x] = 1
        if radius > 0:
            hit = cv2.dilate(hit, np.ones((2 * radius + 1, 2 * radius + 1), np.uint8))
    return lat.view(hit).astype(bool)


def peaks(score: np.ndarray, blocked: np.ndarray, lat: Lattice, radius: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``k`` flat lattice indices of high, spread-out cells of ``score``.

    ``score``: float32 lattice-shaped, >= 0; ``blocked``: bool lattice-shaped,
    cells never to pick. Each round takes the best strict local maxima of the
    unblocked map in a window of ``ceil(radius / stride)`` cells, then blocks
    around them, so picks are pairwise more than ``radius`` pixels apart.
    Returns int64 (K,), K <= k, in no particular order.
    """
    cells = -(-max(radius, 0) // lat.stride)
    shape = score.shape
    free = ~blocked
    chosen: list[np.ndarray] = []
    left = int(k)
    for _ in range(_ROUNDS):
        if left <= 0 or not free.any():
            break
        # Blocked cells sit below every real score, so they never shadow a free neighbour's maximum.
        masked = np.where(free, score, np.float32(-1.0)).astype(np.float32)
        idx = local_maxima(masked, cells, rng)
        idx = idx[free.reshape(-1)[idx]]
        if idx.size == 0:
            break
        idx = idx[top_by_score(masked.reshape(-1)[idx], idx, left)]
        chosen.append(idx)
        left -= idx.size
        if cells == 0:
            break  # no suppression: one round already ranked every free cell
        hit = np.zeros(shape, np.uint8)
        hit.reshape(-1)[idx] = 1
        free &= ~cv2.dilate(hit, np.ones((2 * cells + 1, 2 * cells + 1), np.uint8)).astype(bool)
    return np.concatenate(chosen) if chosen else np.zeros(0, np.int64)


def sequence_scores(n: int, rng: np.random.Generator) -> np.ndarray:
    """float64 (n,): 1 / (j + 1 + u), u uniform in [0, 1): strictly falling with the rank j."""
    return 1.0 / (np.arange(n) + 1.0 + rng.random(n))

