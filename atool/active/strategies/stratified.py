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
* Inside a region the points are uniformly random, not its most typical or
  most uncertain pixels, so a region that is confidently wrong in part
  (the sky half of a "building" region) is asked in proportion to that part,
  and boundaries are not avoided either.

* ``focus`` (default 0) moves that share of each region's points from
  uniform draws to draws weighted by the pixel's entropy (Gumbel top-k, no
  repeats): a region's uncertain parts (its borders, where thin classes
  hide) get more of its points while the rest still samples it uniformly,
  so a confidently wrong part keeps being asked. 0 is plain ``stratified``.

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


def region_quota(area: np.ndarray, want: int, alpha: float) -> np.ndarray:
    """int64 (R,): points per region, summing to ``want``, by the divisor rule on ``area ** alpha``."""
    if want <= 0 or area.size == 0:
        return np.zeros(area.size, np.int64)
    keys = (np.arange(want)[None, :] + 0.5) / (area[:, None] ** alpha)
    first = np.argsort(keys, axis=None, kind="stable")[:want]
    return np.bincount(np.unravel_index(first, keys.shape)[0], minlength=area.size)


@STRATEGIES.register("stratified")
class Stratified(Strategy):
    defaults = {"alpha": 0.5, "min_area": 0.002, "focus": 0.0}

    def check(self) -> None:
        p = self.params
        self._require(0.0 <= p["alpha"] <= 1.0, f"alpha must be in [0, 1], got {p['alpha']}")
        self._require(0.0 <= p["min_area"] < 1.0, f"min_area must be in [0, 1), got {p['min_area']}")
        self._require(0.0 <= p["focus"] <= 1.0, f"focus must be in [0, 1], got {p['focus']}")

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
        quota = region_quota(area[regions], int(max(want, 0)), float(self.params["alpha"]))
        # The free pixels grouped by predicted class, each group in increasing pixel order (a stable
        # radix sort of int16): the same arrays as one flatnonzero per class, in one pass.
        grouped = free[np.argsort(pred[free], kind="stable")]
        starts = np.concatenate([[0], np.cumsum(counts)])
        picked, keys = [], []
        for region, k in zip(regions.tolist(), quota.tolist()):
            if k == 0:
                continue
            pixels = grouped[starts[region]:starts[region + 1]]
            k = min(k, pixels.size)
            picked.append(self._draw(pixels, k, maps, rng))
            keys.append((np.arange(k) + 0.5) / area[region] ** self.params["alpha"])
        if not picked:
            return Candidates.empty()
        idx = np.concatenate(picked)
        idx = idx[np.argsort(np.concatenate(keys), kind="stable")]
        y, x = np.divmod(idx, w)
        cls, conf = at_points(prob, x, y)
        return Candidates.build(x, y, sequence_scores(idx.size, rng), idx, cls, conf, size=(h, w))

    def _draw(self, pixels: np.ndarray, k: int, maps: Maps, rng: np.random.Generator) -> np.ndarray:
        """``k`` distinct flat indices from ``pixels`` (int64, increasing): uniform, or a ``focus`` share by entropy."""
        focused = int(round(self.params["focus"] * k))
        if focused == 0:
            return rng.choice(pixels, size=k, replace=False)
        # Gumbel top-k on log-entropy: k draws without repeats, each with probability
        # proportional to the entropy of what is left (Efraimidis-Spirakis), in one pass.
        weight = maps["entropy"].reshape(-1)[pixels].astype(np.float64) + 1e-6
        keys = np.log(weight) + rng.gumbel(size=pixels.size)
        first = np.argpartition(-keys, focused - 1)[:focused] if focused < pixels.size else np.arange(pixels.size)
        first = first[np.argsort(-keys[first], kind="stable")]
        rest = np.delete(pixels, first)
        uniform = rng.choice(rest, size=min(k - focused, rest.size), replace=False)
        return np.concatenate([pixels[first], uniform])
