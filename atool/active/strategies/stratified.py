"""``stratified``: random points, shared out over the image's predicted-class regions.

Random clicks land in proportion to area: on a driving image a third of them
go to the road, which the adapted model already gets right, while the small
classes (sidewalk, car, person, pole) wait. Uncertainty strategies fix that
but never ask about a confident error (sky called "building" at 0.9), which
random clicks find by chance. ``stratified`` keeps what random does well and
drops what it wastes:

* Each predicted class covering at least ``min_area`` of the image is a
  region. The image's clicks are shared among its regions by a divisor
  rule: the n-th point of region c ranks at (n + 1/2) / area_c ** alpha, so
  region c gets about area_c ** alpha of them. ``alpha`` 1 is random's
  share, 0 equal shares, 0.5 (default) the square root: large regions still
  get several points, small ones at least one early.
* ``jitter`` draws each offset of the rule uniformly in [0, 1) instead of
  1/2. With the fixed rule a small budget always goes to the largest
  regions (3 clicks on an image of 6 regions: road, building and sky every
  time, never the sidewalk); jittered, each region still gets its share
  within one point, but which regions get the first points varies, so
  over a pool the classes are asked in proportion to area ** alpha at any
  budget.
* Inside a region the points are uniformly random, not its most typical or
  most uncertain pixels, so a region that is confidently wrong in part
  (the sky half of a "building" region) is asked in proportion to that part,
  and boundaries are not avoided either.

* ``rarity`` (beta) draws the points inside a region towards colours that
  are rare in that region. Each pixel is weighted by
  (1 - rarity_share) / n + rarity_share * m ** -beta / sum(m ** -beta),
  where m is how many pixels of the region share its colour (RGB quantised
  to ``colour_levels`` (a power of 2) steps per channel) and n the region's size. A region
  is what the model calls one class, so its rare looks are the pixels that
  most likely are something else: a pedestrian or car inside what the model
  calls road, grass inside "sidewalk". A large confident error (the sky half
  of a "building" region) is a common colour of its region and keeps about
  its area share, so it is still asked. On the built-in pool, beta 1 moves
  clicks from road (30% -> 15%) to car, person, traffic sign and terrain
  (x3-x5 each) while sky keeps its 12%. beta 0 (the default) is uniform.

Pixels labeled in earlier rounds (``maps["labeled"]``) are never proposed.
Points are ordered by their divisor key, so every prefix of an image's list
is itself stratified (``--per-image`` takes the first B); scores are
1 / (j + 1 + u) for the j-th point, as ``random``'s, so a total budget goes
round the images evenly.
"""

from __future__ import annotations

import numpy as np

from atool.active.candidates import Candidates
from atool.active.strategies import STRATEGIES, Maps, Strategy
from atool.active.strategies._spread import sequence_scores
from atool.ops.uncertainty import argmax, at_points


def region_quota(area: np.ndarray, want: int, alpha: float, offsets: np.ndarray | None = None) -> np.ndarray:
    """int64 (R,): points per region, summing to ``want``, by the divisor rule on ``area ** alpha``.

    The n-th point of region c ranks at (n + o) / area_c ** alpha with o = 0.5,
    or ``offsets[c, n]`` (float R x want, in [0, 1)) for the jittered rule.
    """
    if want <= 0 or area.size == 0:
        return np.zeros(area.size, np.int64)
    keys = (np.arange(want)[None, :] + (0.5 if offsets is None else offsets)) / (area[:, None] ** alpha)
    first = np.argsort(keys, axis=None, kind="stable")[:want]
    return np.bincount(np.unravel_index(first, keys.shape)[0], minlength=area.size)


@STRATEGIES.register("stratified")
class Stratified(Strategy):
    defaults = {"alpha": 0.5, "min_area": 0.002, "jitter": False, "rarity": 0.0, "rarity_share": 1.0, "colour_levels": 8}

    def check(self) -> None:
        p = self.params
        self._require(0.0 <= p["alpha"] <= 1.0, f"alpha must be in [0, 1], got {p['alpha']}")
        self._require(0.0 <= p["min_area"] < 1.0, f"min_area must be in [0, 1), got {p['min_area']}")
        self._require(0.0 <= p["rarity"] <= 4.0, f"rarity must be in [0, 4], got {p['rarity']}")
        self._require(0.0 <= p["rarity_share"] <= 1.0, f"rarity_share must be in [0, 1], got {p['rarity_share']}")
        self._require(p["colour_levels"] in (2, 4, 8, 16, 32), f"colour_levels must be 2, 4, 8, 16 or 32, got {p['colour_levels']}")

    def _colour_counts(self, maps: Maps, pred: np.ndarray, shape: tuple[int, int]) -> np.ndarray | None:
        """float32 (H*W,): pixels of the same predicted class and quantised colour, per pixel; None when rarity is off."""
        if self.params["rarity"] <= 0.0 or self.params["rarity_share"] <= 0.0:
            return None
        image = maps.get("image")
        if image is None or image.shape[:2] != shape:
            # The query pipeline always passes the decoded image; anything else is a caller bug, not bad input.
            raise ValueError(f"stratified with rarity needs the RGB image of the prob map's size {shape}, got "
                             f"{None if image is None else image.shape}")
        bits = int(self.params["colour_levels"]).bit_length() - 1
        q = image.reshape(-1, 3) >> (8 - bits)
        key = pred.astype(np.int32) << (3 * bits)
        key |= (q[:, 0].astype(np.int32) << (2 * bits)) | (q[:, 1].astype(np.int32) << bits) | q[:, 2]
        return np.bincount(key)[key].astype(np.float32)

    def candidates(self, maps: Maps, rng: np.random.Generator, want: int) -> Candidates:
        prob = maps["prob"]
        c, h, w = prob.shape
        pred = argmax(prob).reshape(-1)
        free = np.flatnonzero(~maps["labeled"].reshape(-1)) if "labeled" in maps else np.arange(h * w)
        counts = np.bincount(pred[free], minlength=c)
        area = counts.astype(np.float64) / (h * w)
        regions = np.flatnonzero(area >= max(self.params["min_area"], 1e-12))
        if regions.size == 0:
            return Candidates.empty()
        want = int(max(want, 0))
        offsets = rng.random((regions.size, want)) if self.params["jitter"] else np.full((regions.size, want), 0.5)
        quota = region_quota(area[regions], want, float(self.params["alpha"]), offsets)
        # The free pixels grouped by predicted class, each group in increasing pixel order (a stable
        # radix sort of int16): the same arrays as one flatnonzero per class, in one pass.
        grouped = free[np.argsort(pred[free], kind="stable")]
        colour_counts = self._colour_counts(maps, pred, (h, w))
        starts = np.concatenate([[0], np.cumsum(counts)])
        picked, keys = [], []
        for i, (region, k) in enumerate(zip(regions.tolist(), quota.tolist())):
            if k == 0:
                continue
            pixels = grouped[starts[region]:starts[region + 1]]
            k = min(k, pixels.size)
            picked.append(self._draw(pixels, k, colour_counts, rng))
            keys.append((np.arange(k) + offsets[i, :k]) / area[region] ** self.params["alpha"])
        if not picked:
            return Candidates.empty()
        idx = np.concatenate(picked)
        idx = idx[np.argsort(np.concatenate(keys), kind="stable")]
        y, x = np.divmod(idx, w)
        cls, conf = at_points(prob, x, y)
        return Candidates.build(x, y, sequence_scores(idx.size, rng), idx, cls, conf, size=(h, w))

    def _draw(self, pixels: np.ndarray, k: int, colour_counts: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
        """``k`` distinct pixels of one region: uniform, or weighted towards its rare colours."""
        if colour_counts is None:
            return rng.choice(pixels, size=k, replace=False)
        beta = float(self.params["rarity"])
        counts = colour_counts[pixels]
        rare = 1.0 / counts if beta == 1.0 else counts ** -beta
        share = float(self.params["rarity_share"])
        weight = (1.0 - share) / pixels.size + share * rare / rare.sum()
        # Weighted sampling without replacement (Efraimidis-Spirakis): the k smallest Exp(1) / w.
        keys = rng.exponential(size=pixels.size) / weight
        first = np.argpartition(keys, k - 1)[:k] if k < pixels.size else np.arange(pixels.size)
        return pixels[first[np.argsort(keys[first], kind="stable")]]
