"""``ripu``: region impurity x prediction uncertainty, as points (Xie et al., CVPR 2022).

RIPU scores a pixel by how mixed the model's prediction is around it and by
how unsure the model is there:

  * region impurity: the entropy of the histogram of predicted classes in
    the square neighbourhood of half-side ``region_radius`` pixels,
    normalised by log C, so 0 inside a uniform predicted region and high
    where several predicted classes meet (boundaries, clutter, small objects);
  * prediction uncertainty (``uncertainty``): the pixel's normalised entropy
    (``pixel``, default) or its mean over the same neighbourhood (``region``,
    the region-level form of the paper).

The acquisition score is their product, in [0, 1], so scores of different
images compare directly under a total budget. Points are the score's peaks
with a suppression radius: any two points of an image are more than
``radius`` pixels apart (Chebyshev), the paper's remedy for clicks that
pile up on one boundary.

Speed: the maps are read on a lattice of every ``stride``-th pixel (random
phase per image). The backends' maps are bilinear upsamplings of an output
at 1/4 of the image (DeepLab-v3+) or coarser, so ``stride`` 4 (default)
loses little and is about 3x faster than 2 at 1024 x 512; ``stride`` 1 is
exact. The neighbourhood is ``round(region_radius / stride)`` lattice cells (at least
one) and points lie on the lattice.

Parameters: ``region_radius`` (px, default 8: 17 x 17), ``radius`` (px,
default 16), ``stride`` (default 4), ``uncertainty`` (``pixel``/``region``).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from atool.active.candidates import Candidates
from atool.active.strategies import STRATEGIES, Maps, Strategy
from atool.active.strategies._spread import Lattice, peaks
from atool.ops.uncertainty import argmax, at_points, entropy



def box_mean(arr: np.ndarray, r: int) -> np.ndarray:
    """Mean of each (2r+1) x (2r+1) window of an h x w or P x h x w array, windows clipped at the border.

    Returns float32 of the same shape (a loop over the P planes, not pixels).
    """
    k = (2 * r + 1, 2 * r + 1)
    planes = arr.reshape((-1,) + arr.shape[-2:])
    # Zero padding plus a division by the in-image pixel count: the clipped-window mean.
    count = cv2.boxFilter(np.ones(planes.shape[1:], np.float32), -1, k, normalize=False, borderType=cv2.BORDER_CONSTANT)
    out = np.empty(planes.shape, np.float32)
    for i, plane in enumerate(planes):
        src = np.ascontiguousarray(plane, dtype=np.float32)
        cv2.boxFilter(src, -1, k, dst=out[i], normalize=False, borderType=cv2.BORDER_CONSTANT)
    out /= count
    return out.reshape(arr.shape)


def region_impurity(pred: np.ndarray, classes: int, r: int) -> np.ndarray:
    """float32 h x w in [0, 1]: entropy of the predicted-class histogram in each window, / log C.

    ``pred``: integer h x w predicted classes in [0, classes).
    """
    imp = np.zeros(pred.shape, np.float32)
    present = np.flatnonzero(np.bincount(pred.reshape(-1), minlength=classes))
    if present.size < 2 or classes < 2:
        return imp
    # Inside a uniform predicted region the impurity is 0: only windows whose min and max
    # class differ need the logarithms, a small part of a real prediction.
    code = pred.astype(np.uint16 if classes <= 0xFFFF else np.float32)
    kernel = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
    mixed = np.flatnonzero(cv2.dilate(code, kernel) != cv2.erode(code, kernel))
    # Only classes that occur can have a non-zero share: one plane each, not C.
    frac = box_mean(pred[None, :, :] == present[:, None, None], r).reshape(present.size, -1)[:, mixed]
    # Divided by log C, not by log of the classes present, so scores compare across images.
    imp.reshape(-1)[mixed] = entropy(frac, normalise=False) * np.float32(1.0 / math.log(classes))
    return imp


def ripu_scores(maps: Maps, lat: Lattice, cells: int, uncertainty: str) -> np.ndarray:
    """float32 lattice-shaped acquisition map: impurity x uncertainty, in [0, 1]."""
    prob = lat.view(maps["prob"])
    imp = region_impurity(argmax(prob), prob.shape[0], cells)
    ent = lat.view(maps["entropy"]).astype(np.float32)
    if uncertainty == "region":
        ent = box_mean(ent, cells).astype(np.float32)
    return np.clip(imp * ent, 0.0, 1.0).astype(np.float32)


def lattice_cells(region_radius: int, stride: int) -> int:
    """The neighbourhood half-side in lattice cells: region_radius / stride, rounded, at least 1."""
    return max(1, int(round(region_radius / stride)))


def pick_uncertain(
    score: np.ndarray, maps: Maps, lat: Lattice, radius: int, k: int, rng: np.random.Generator, avoid: np.ndarray | None = None
) -> Candidates:
    """Spread peaks of a lattice score map as candidates of the full image.

    ``avoid``: bool lattice-shaped cells not to propose besides the labeled ones.
    """
    blocked = np.zeros(score.shape, bool) if avoid is None else avoid.copy()
    if "labeled" in maps:
        blocked |= lat.view(maps["labeled"]).astype(bool)
    idx = peaks(score, blocked, lat, radius, k, rng)
    y, x = lat.to_pixels(idx)
    cls, conf = at_points(maps["prob"], x, y)
    return Candidates.build(x, y, score.reshape(-1)[idx], y * lat.w + x, cls, conf, size=(lat.h, lat.w))


@STRATEGIES.register("ripu")
class RIPU(Strategy):
    defaults = {"region_radius": 8, "radius": 16, "stride": 4, "uncertainty": "pixel"}
    choices = {"uncertainty": ("pixel", "region")}

    def check(self) -> None:
        p = self.params
        self._require(p["region_radius"] >= 1, f"region_radius must be at least 1 pixel, got {p['region_radius']}")
        self._require(p["radius"] >= 0, f"radius must be 0 or more, got {p['radius']}")
        self._require(p["stride"] >= 1, f"stride must be at least 1, got {p['stride']}")

    def candidates(self, maps: Maps, rng: np.random.Generator, want: int) -> Candidates:
        if want <= 0:
            return Candidates.empty()
        h, w = maps["entropy"].shape
        lat = Lattice.draw(h, w, self.params["stride"], rng)
        score = ripu_scores(maps, lat, lattice_cells(self.params["region_radius"], lat.stride), self.params["uncertainty"])
        return pick_uncertain(score, maps, lat, self.params["radius"], want, rng)
