"""``entropy_patch``: the active-points protocol of Pan et al.

The entropy map is cut into a ``grid_cols`` x ``grid_rows`` grid (16 x 8 by
default: 64x64 patches at 1024x512). Each patch is scored by its mean (or
summed) entropy, and ``points_per_patch`` = n distinct pixels are drawn
uniformly inside it. Every one of those points is a candidate carrying its
patch's score, so the selectors take whole patches, best first.

Budget, K and n (B = budget in points):
  * per image (``--per-image``): each image gets exactly B points, i.e. its
    top K = B // n patches with all n points, plus B % n points of patch K+1.
    The paper's setting K = 10, n = 5 is ``--per-image --budget 50``.
  * total (default): patches of all images compete by score; the best
    B // n patches of the whole run get n points each, and the next one the
    remaining B % n.
A patch smaller than n pixels offers all its pixels.
"""

from __future__ import annotations

import numpy as np

from atool.active.candidates import Candidates
from atool.active.strategies import STRATEGIES, Maps, Strategy
from atool.ops.uncertainty import at_points


def grid_edges(length: int, parts: int) -> np.ndarray:
    """Integer cut positions (parts + 1,) splitting ``length`` into near-equal parts."""
    return (np.arange(parts + 1, dtype=np.int64) * length) // parts


def patch_scores(ent: np.ndarray, cols: int, rows: int, mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Score every patch of an H x W float map.

    Returns (score float64 rows x cols, area int64 rows x cols, x edges (cols+1,),
    y edges (rows+1,)). Patches with no pixels (grids finer than the image) get area 0.
    """
    h, w = ent.shape
    xe, ye = grid_edges(w, cols), grid_edges(h, rows)
    if h % rows == 0 and w % cols == 0:
        # Equal patches (64x64 at 1024x512): one reshape and a sum, 6x cheaper than two reduceats.
        total = ent.reshape(rows, h // rows, cols, w // cols).sum(axis=(1, 3), dtype=np.float64)
    elif np.all(np.diff(xe) > 0) and np.all(np.diff(ye) > 0):
        # Every patch has pixels: two reductions, several times cheaper than a summed-area table
        # (this runs once per image in the query pipeline, beside inference).
        total = np.add.reduceat(np.add.reduceat(ent, ye[:-1], axis=0, dtype=np.float64), xe[:-1], axis=1)
    else:
        # A summed-area table makes every patch sum four lookups, whatever the grid.
        table = np.zeros((h + 1, w + 1), dtype=np.float64)
        np.cumsum(np.cumsum(ent, axis=0, dtype=np.float64), axis=1, out=table[1:, 1:])
        total = table[np.ix_(ye[1:], xe[1:])] - table[np.ix_(ye[:-1], xe[1:])] - table[np.ix_(ye[1:], xe[:-1])] + table[np.ix_(ye[:-1], xe[:-1])]
    area = np.diff(ye)[:, None] * np.diff(xe)[None, :]
    if mode == "sum":
        return total, area, xe, ye
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(area > 0, total / np.maximum(area, 1), 0.0), area, xe, ye


def sample_in_patches(
    rng: np.random.Generator, area: np.ndarray, widths: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw min(n, area) distinct offsets in each patch, all patches at once.

    ``area`` and ``widths`` are (P,) int arrays. Floyd's algorithm, one step
    for all patches at a time: step s draws t uniform in [0, area - k + s] and
    keeps t, or the upper end if t was drawn before; after k steps every
    k-subset is equally likely. It costs O(P n^2), where drawing a key for
    every pixel and partitioning them cost O(pixels) per image (3 ms of CPU
    at 1024x512, beside inference). Returns (patch index, dy, dx), each
    (sum of min(n, area),) int64, patch by patch.
    """
    area = np.asarray(area, dtype=np.int64)
    p = area.shape[0]
    k = np.minimum(area, max(int(n), 0))
    steps = int(k.max()) if p else 0
    if steps == 0:
        z = np.zeros(0, np.int64)
        return z, z, z
    drawn = np.full((p, steps), -1, dtype=np.int64)
    for s in range(steps):
        active = s < k
        top = np.where(active, area - k + s, 0)  # inclusive upper end of this step's draw
        t = rng.integers(0, top + 1)
        seen = (drawn[:, :s] == t[:, None]).any(axis=1)
        drawn[:, s] = np.where(active, np.where(seen, top, t), -1)
    keep = drawn >= 0
    patch = np.broadcast_to(np.arange(p, dtype=np.int64)[:, None], drawn.shape)[keep]
    local = drawn[keep]
    dy, dx = np.divmod(local, np.asarray(widths, dtype=np.int64)[patch])
    return patch, dy, dx


@STRATEGIES.register("entropy_patch")
class EntropyPatch(Strategy):
    defaults = {"grid_cols": 16, "grid_rows": 8, "points_per_patch": 5, "score": "mean"}
    choices = {"score": ("mean", "sum")}

    def check(self) -> None:
        for key in ("grid_cols", "grid_rows", "points_per_patch"):
            self._require(self.params[key] >= 1, f"{key} must be at least 1, got {self.params[key]}")

    def candidates(self, maps: Maps, rng: np.random.Generator, want: int) -> Candidates:
        ent = maps["entropy"]
        cols, rows = self.params["grid_cols"], self.params["grid_rows"]
        score, area, xe, ye = patch_scores(ent, cols, rows, self.params["score"])
        widths = np.broadcast_to(np.diff(xe)[None, :], area.shape).reshape(-1)
        patch, dy, dx = sample_in_patches(rng, area.reshape(-1), widths, self.params["points_per_patch"])
        y = ye[patch // cols] + dy
        x = xe[patch % cols] + dx
        cls, conf = at_points(maps["prob"], x, y)
        return Candidates.build(x, y, score.reshape(-1)[patch], patch, cls, conf, size=ent.shape)
