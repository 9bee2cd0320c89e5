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
  (x3-x5 each) while sky keeps its 12%. beta 0 is uniform.

Defaults: ``jitter`` on (it fixed a 3-round loss to random) and ``rarity`` 1
(on mIoU a tie with uniform draws, but 4-9 IoU points more on person and car;
README, "Which pixels to ask"); ``{"jitter": false, "rarity": 0}`` gives the
plain divisor rule with uniform draws.

Large images are looked at through a sample of about ``MAX_POOL`` (2**17)
pixels, one drawn uniformly from each run of consecutive pixels: every pixel
stays equally likely to be asked, areas and colour counts are measured on
the sample, and the cost per image stops growing with the camera (at
1024x512 the default went from 30 to 9 ms per image, ``entropy_patch`` 7).

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


# Pixels looked at per image (see _pixel_pool): 1024x512 is sampled one in four.
MAX_POOL = 1 << 17


@STRATEGIES.register("stratified")
class Stratified(Strategy):
    defaults = {"alpha": 0.5, "min_area": 0.002, "jitter": True, "rarity": 1.0, "rarity_share": 1.0, "colour_levels": 8}

    def check(self) -> None:
        p = self.params
        self._require(0.0 <= p["alpha"] <= 1.0, f"alpha must be in [0, 1], got {p['alpha']}")
        self._require(0.0 <= p["min_area"] < 1.0, f"min_area must be in [0, 1), got {p['min_area']}")
        self._require(0.0 <= p["rarity"] <= 4.0, f"rarity must be in [0, 4], got {p['rarity']}")
        self._require(0.0 <= p["rarity_share"] <= 1.0, f"rarity_share must be in [0, 1], got {p['rarity_share']}")
        self._require(p["colour_levels"] in (2, 4, 8, 16, 32), f"colour_levels must be 2, 4, 8, 16 or 32, got {p['colour_levels']}")

    def _colour_bits(self) -> int:
        """Bits per colour channel of the rarity key; 0 when rarity is off (points uniform in a region)."""
        if self.params["rarity"] <= 0.0 or self.params["rarity_share"] <= 0.0:
            return 0
        return int(self.params["colour_levels"]).bit_length() - 1

    def _group_keys(self, maps: Maps, pred: np.ndarray, pool: np.ndarray | None, shape: tuple[int, int], classes: int) -> np.ndarray:
        """Per pool pixel (all when ``pool`` is None): its predicted class, with its quantised colour in the low bits when rarity is on.

        Sorting by this key groups the pixels by region and, inside a region, by
        colour, so the colour counts come from one small bincount and no
        per-pixel weights are ever formed. uint16 whenever it fits, because
        numpy's stable sort is a radix sort for 16-bit keys.
        """
        bits = self._colour_bits()
        dtype = np.uint16 if classes << (3 * bits) <= 1 << 16 else np.uint32
        key = pred.astype(dtype)
        if not bits:
            return key
        image = maps.get("image")
        if image is None or image.shape[:2] != shape:
            # The query pipeline always passes the decoded image; anything else is a caller bug, not bad input.
            raise ValueError(f"stratified with rarity needs the RGB image of the prob map's size {shape}, got "
                             f"{None if image is None else image.shape}")
        rgb = image.reshape(-1, 3) if pool is None else image.reshape(-1, 3)[pool]
        q = rgb >> (8 - bits)
        key <<= 3 * bits
        key |= q[:, 0].astype(dtype) << (2 * bits)
        key |= q[:, 1].astype(dtype) << bits
        key |= q[:, 2]
        return key

    def candidates(self, maps: Maps, rng: np.random.Generator, want: int) -> Candidates:
        prob = maps["prob"]
        c, h, w = prob.shape
        stride = -(-h * w // MAX_POOL)
        pool = _pixel_pool(h * w, stride, maps.get("labeled"), rng)
        # np.take keeps the gathered planes C-contiguous (indexing [:, pool] returns them column-major).
        pred = argmax(prob).reshape(-1) if pool is None else argmax(np.take(prob.reshape(c, -1), pool, axis=1))
        counts = np.bincount(pred, minlength=c)
        area = counts.astype(np.float64) * stride / (h * w)
        regions = np.flatnonzero(area >= max(self.params["min_area"], 1e-12))
        if regions.size == 0:
            return Candidates.empty()
        want = int(max(want, 0))
        offsets = rng.random((regions.size, want)) if self.params["jitter"] else np.full((regions.size, want), 0.5)
        quota = region_quota(area[regions], want, float(self.params["alpha"]), offsets)
        keys = self._group_keys(maps, pred, pool, (h, w), c)
        # The pool's pixels grouped by region (and by colour inside one), each group in increasing
        # pixel order: one stable sort instead of a flatnonzero per class.
        order = np.argsort(keys, kind="stable")
        grouped = order if pool is None else pool[order]
        bins_per_region = 1 << (3 * self._colour_bits())
        key_counts = np.bincount(keys, minlength=c * bins_per_region).reshape(c, bins_per_region)
        starts = np.concatenate([[0], np.cumsum(counts)])
        picked, ranks = [], []
        for i, (region, k) in enumerate(zip(regions.tolist(), quota.tolist())):
            if k == 0:
                continue
            pixels = grouped[starts[region]:starts[region + 1]]
            k = min(k, pixels.size)
            picked.append(self._draw(pixels, key_counts[region], k, rng))
            ranks.append((np.arange(k) + offsets[i, :k]) / area[region] ** self.params["alpha"])
        if not picked:
            return Candidates.empty()
        idx = np.concatenate(picked)
        idx = idx[np.argsort(np.concatenate(ranks), kind="stable")]
        y, x = np.divmod(idx, w)
        cls, conf = at_points(prob, x, y)
        return Candidates.build(x, y, sequence_scores(idx.size, rng), idx, cls, conf, size=(h, w))

    def _draw(self, pixels: np.ndarray, colour_counts: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        """``k`` distinct pixels of one region, ``pixels`` sorted by colour with ``colour_counts`` per colour.

        Uniform when rarity is off. With rarity a pixel weighs
        (1 - share) / n + share * m ** -beta / sum(m ** -beta) (module docstring);
        pixels of one colour weigh the same, so a draw picks a colour by its
        total weight and then a pixel of that colour uniformly.
        """
        if colour_counts.size == 1:
            return rng.choice(pixels, size=k, replace=False)
        m = colour_counts[colour_counts > 0].astype(np.float64)
        beta, share, n = float(self.params["rarity"]), float(self.params["rarity_share"]), pixels.size
        rare = m ** -beta
        pixel_weight = (1.0 - share) / n + share * rare / float((m * rare).sum())
        if 4 * k > n:
            # Nearly used up: Efraimidis-Spirakis keys (the k smallest Exp(1) / w) over the few pixels.
            draw = rng.exponential(size=n) / np.repeat(pixel_weight, m.astype(np.int64))
            first = np.argpartition(draw, k - 1)[:k] if k < n else np.arange(n)
            return pixels[first[np.argsort(draw[first], kind="stable")]]
        return pixels[_successive_draw(m, m * pixel_weight, k, rng)]


def _pixel_pool(n: int, stride: int, labeled: np.ndarray | None, rng: np.random.Generator) -> np.ndarray | None:
    """Flat indices of the pixels a query looks at: the unlabeled ones, one in ``stride``.

    None means every pixel. With ``stride`` = ceil(n / MAX_POOL) > 1, one pixel is drawn
    uniformly from each run of ``stride`` consecutive ones, so every pixel is
    equally likely to be looked at and the cost of a query stays flat as
    cameras grow (2048x1024: one pixel in 16), while 2**17 samples still
    measure a region's area to a small fraction of a percent.
    """
    pool = None
    if stride > 1:
        pool = np.arange(0, n, stride, dtype=np.int64)
        pool += rng.integers(0, stride, size=pool.size)
        pool = pool[pool < n]
    if labeled is not None:
        flat = labeled.reshape(-1)
        pool = np.flatnonzero(~flat) if pool is None else pool[~flat[pool]]
    return pool


def _successive_draw(sizes: np.ndarray, group_weight: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` distinct indices into groups laid end to end (``sizes`` each), drawn one after another.

    Each draw picks a group in proportion to ``group_weight`` and then one of
    its members uniformly, with replacement; keeping each index's first
    appearance makes every new index proportional to its weight among those
    not drawn yet, the same distribution as Efraimidis-Spirakis keys, without
    a random number per pixel. Callers keep k <= n / 4, so repeats stay rare.
    """
    cdf = np.cumsum(group_weight)
    first_index = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    chosen: list[int] = []
    seen: set[int] = set()
    while len(chosen) < k:
        u = rng.random((2 * (k - len(chosen)), 2))
        group = np.minimum(np.searchsorted(cdf, u[:, 0] * cdf[-1], side="right"), sizes.size - 1)
        index = first_index[group] + np.minimum((u[:, 1] * sizes[group]).astype(np.int64), sizes[group].astype(np.int64) - 1)
        for i in index.tolist():
            if i not in seen:
                seen.add(i)
                chosen.append(i)
                if len(chosen) == k:
                    break
    return np.asarray(chosen, dtype=np.int64)
