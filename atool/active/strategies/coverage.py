"""``coverage``: spread an image's clicks over its predicted regions and its looks.

Uncertainty cannot see a confident error: a model that calls the sky
"building" at 0.9 confidence has low entropy there, and no uncertainty
strategy asks about it (DESIGN.md, measured pitfalls). Coverage asks about
every large predicted region whatever the model's confidence, and inside a
region about every part that looks different, so a "building" region that
is half sky gets a point in the sky half.

How one image's points are ranked:

1. A stratified sample of about ``samples`` pixels (one per cell of a
   near-square grid) stands for the image; everything below runs on it.
2. Each sampled pixel gets a descriptor: its position (x, y divided by the
   image's longer side) times ``xy_weight``; its colour in CIE Lab (from a
   smoothed copy of ``maps["image"]``, L/100, a/100, b/100) times
   ``color_weight``, when the backend's caller passes the image; and the
   square root of its class probabilities (Hellinger geometry) times
   ``prob_weight``.
3. Predicted classes covering at least ``min_area`` of the image are the
   regions; smaller ones (speckle) are not proposed.
4. Clicks are shared among regions by a divisor rule: the n-th new point
   of region c ranks at key (labeled_c + n + 1/2) / area_c ** alpha, where
   labeled_c counts the region's earlier clicks (connected groups of
   labeled pixels, so a click grown into its superpixel counts once, each
   counted in the predicted class at its first pixel). Each region's first point
   thus comes early, so every large predicted region, right or confidently
   wrong, is asked; the first K keys give region c about area ** alpha of
   the K clicks: ``alpha`` 1 follows area (as random clicks do, 35 % of
   them on road), 0.5 (default) its square root, 0 equal shares.
5. Within a region, points come from greedy k-medians on the descriptors:
   first the region's medoid (its most typical pixel), then each time the
   sampled pixel that most reduces the summed descriptor distance from the
   region's pixels to their nearest point, chosen or labeled. That is the
   centre of the largest part still poorly represented, e.g. the sky half
   of a "building" region, and lies inside that part, not on its rim
   (farthest-point sampling would pick corners and borders).

Pixels labeled in earlier rounds (``maps["labeled"]``) are never proposed;
they count as the clicks a region already had and as points its new ones
keep away from (at most 512 of them, sampled).

Scores (``score``): ``rank`` (default) gives the j-th point of an image
1 / (j + 1 + u) as ``random`` does, so a total budget goes round the images
evenly, every image's first point before any image's second. ``region``
scores a point 1 / key = area ** alpha / (clicks in its region + 1/2), so
under a total budget images with more or larger unasked regions get more
clicks. Any prefix of an image's ranking is itself a spread set, so
``--per-image`` takes its first B.

Parameters: ``samples`` (4096), ``min_area`` (0.002 of the image),
``alpha`` (0.5), ``xy_weight`` (1), ``color_weight`` (1), ``prob_weight``
(0.5), ``max_points`` (128), ``score`` (``rank``). An image offers at
most ``max_points`` points: under a total budget every image is asked for
the whole budget, and each point costs a pass over its region's sample.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from atool.active.candidates import Candidates
from atool.active.strategies import STRATEGIES, Maps, Strategy
from atool.active.strategies._spread import jittered_grid, sequence_scores
from atool.core.errors import BadInput
from atool.ops.uncertainty import at_points

# Labeled pixels used as already-chosen centres: enough to stand for a round of
# clicks or a dense mask, bounded so the distance matrix stays small.
_MAX_LABELED = 512
# Greedy k-medians per region: distances from at most _EVAL of its sampled pixels to
# _CAND candidate points, so a pick costs O(_EVAL * _CAND) whatever the region's size.
_EVAL = 512
_CAND = 128
# Colour is read from a copy whose longer side is about this many pixels:
# smoothing away texture and sensor noise so that colour tells apart regions, not grain.
_COLOR_SIDE = 128

COVERAGE_DEFAULTS = {
    "samples": 4096, "min_area": 0.002, "alpha": 0.5, "xy_weight": 1.0, "color_weight": 1.0, "prob_weight": 0.5,
    "max_points": 128,
}


def check_coverage_params(strategy: Strategy) -> None:
    """Range checks of the coverage parameters of ``strategy.params`` (BadInput)."""
    p = strategy.params
    strategy._require(p["samples"] >= 16, f"samples must be at least 16, got {p['samples']}")
    strategy._require(0.0 <= p["min_area"] < 1.0, f"min_area must be in [0, 1), got {p['min_area']}")
    strategy._require(0.0 <= p["alpha"] <= 1.0, f"alpha must be in [0, 1], got {p['alpha']}")
    for key in ("xy_weight", "color_weight", "prob_weight"):
        strategy._require(p[key] >= 0.0 and math.isfinite(p[key]), f"{key} must be a finite number >= 0, got {p[key]}")
    strategy._require(p["xy_weight"] > 0 or p["color_weight"] > 0 or p["prob_weight"] > 0,
                      "xy_weight, color_weight and prob_weight are all 0: nothing to spread the points over")
    strategy._require(p["max_points"] >= 1, f"max_points must be at least 1, got {p['max_points']}")


def _lab_at(image: np.ndarray, h: int, w: int, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """float32 (N, 3) smoothed Lab / 100 of an H x W x 3 uint8 RGB image at pixels (y, x)."""
    if image.shape != (h, w, 3):
        raise BadInput(f"maps image is {'x'.join(map(str, image.shape))}, expected {h}x{w}x3 RGB matching the prediction")
    f = max(1, max(h, w) // _COLOR_SIDE)
    sh, sw = max(1, h // f), max(1, w // f)
    small = cv2.resize(np.ascontiguousarray(image), (sw, sh), interpolation=cv2.INTER_AREA) if f > 1 else image
    lab = cv2.cvtColor(np.ascontiguousarray(small, dtype=np.float32) * np.float32(1 / 255), cv2.COLOR_RGB2Lab)
    return lab[np.minimum(y * sh // h, sh - 1), np.minimum(x * sw // w, sw - 1)] * np.float32(0.01)


def _descriptors(maps: Maps, p: dict, y: np.ndarray, x: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """float32 (N, D) descriptors of pixels (y, x); ``prob`` is their (C, N) probabilities."""
    h, w = maps["prob"].shape[1:]
    side = float(max(h, w))
    parts = [np.float32(p["xy_weight"] / side) * np.stack([x, y], axis=1).astype(np.float32)]
    if p["color_weight"] > 0 and "image" in maps:
        parts.append(np.float32(p["color_weight"]) * _lab_at(maps["image"], h, w, y, x))
    if p["prob_weight"] > 0:
        parts.append(np.float32(p["prob_weight"]) * np.sqrt(np.clip(prob.T, 0.0, 1.0)))
    return np.concatenate(parts, axis=1).astype(np.float32)


def _greedy_medoids(feat: np.ndarray, k: int, near: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-medians on one region's descriptors (n, D): up to ``k`` row indices, in picking order.

    Each pick is the candidate row that most reduces the summed distance from
    the region's rows to their nearest pick (or labeled point): the first is
    the region's medoid, its most typical pixel, and each next one the centre
    of the largest part still poorly represented (the sky half of a
    "building" region), inside it rather than at its edge as farthest-point
    sampling would. ``near``: float64 (n,) distance of each row to the
    nearest labeled point of the region, or None when it has none.
    Distances are taken from at most ``_EVAL`` rows to ``_CAND`` candidate rows.
    """
    n = feat.shape[0]
    rows = np.sort(rng.choice(n, _EVAL, replace=False)) if n > _EVAL else np.arange(n)
    cand = np.sort(rng.choice(n, _CAND, replace=False)) if n > _CAND else np.arange(n)
    dist = np.sqrt(_pairwise2(feat[rows], feat[cand]))  # (rows, cand)
    # Without labels every row starts farther than any candidate, so the first pick is the medoid.
    cur = near[rows].copy() if near is not None else np.full(rows.size, dist.max() + 1.0)
    picks: list[int] = []
    free = np.ones(cand.size, bool)
    for _ in range(min(k, cand.size)):  # a loop over picks, not pixels
        gain = np.where(free, np.maximum(cur[:, None] - dist, 0.0).sum(axis=0), -1.0)
        j = int(np.argmax(gain))
        if not gain[j] > 0.0:
            break  # every row is as close to a pick or label as any candidate could bring it
        picks.append(j)
        free[j] = False
        np.minimum(cur, dist[:, j], out=cur)
    return cand[np.asarray(picks, np.int64)]


def coverage_ranking(maps: Maps, p: dict, rng: np.random.Generator, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The image's first ``k`` coverage points in ranking order (see the module doc).

    ``p``: the coverage parameters. Returns (flat pixel index int64 (K,),
    region score float64 (K,): area ** alpha / (clicks in the region + 1/2)),
    K <= k, the score not rising along the ranking.
    """
    prob = maps["prob"]
    c, h, w = prob.shape
    none = np.zeros(0, np.int64), np.zeros(0)
    if k <= 0 or h * w == 0:
        return none
    ys, xs = jittered_grid(h, w, p["samples"], rng)
    ps = prob[:, ys, xs]
    pred = ps.argmax(axis=0)
    area = np.bincount(pred, minlength=c) / float(pred.size)
    eligible = (area >= p["min_area"]) & (area > 0)
    keep = eligible[pred]
    labeled = maps.get("labeled")
    if labeled is not None:
        keep &= ~labeled[ys, xs]
    ys, xs, ps, pred = ys[keep], xs[keep], ps[:, keep], pred[keep]
    if ys.size == 0:
        return none
    feat = _descriptors(maps, p, ys, xs, ps)
    members = [np.flatnonzero(pred == cl) for cl in range(c)]
    # Labeled pixels: clicks already spent on a region, and points its new ones keep away from.
    spent = np.zeros(c)
    lpred = lfeat = None
    if labeled is not None and labeled.any():
        # A click may have grown into its superpixel (ingest --expand): count connected
        # groups of labeled pixels, each by the predicted class at its first pixel.
        _, comp = cv2.connectedComponents(labeled.astype(np.uint8), connectivity=8)
        li = np.flatnonzero(comp)
        _, first_px = np.unique(comp.reshape(-1)[li], return_index=True)
        ry, rx = np.divmod(li[first_px], w)
        spent = np.bincount(prob[:, ry, rx].argmax(axis=0), minlength=c).astype(np.float64)
        if li.size > _MAX_LABELED:
            li = np.sort(rng.choice(li, _MAX_LABELED, replace=False))
        ly, lx = np.divmod(li, w)
        lp = prob[:, ly, lx]
        lpred, lfeat = lp.argmax(axis=0), _descriptors(maps, p, ly, lx, lp)
    # Divisor (Sainte-Lague) allocation: the n-th new point of region c comes at
    # (spent_c + n + 1/2) / area_c ** alpha, so the first K keys give shares ~ area ** alpha.
    weight = np.where(eligible, area, 0.0) ** p["alpha"] * eligible
    n = np.arange(k)
    with np.errstate(divide="ignore"):
        keys = (spent[:, None] + n[None, :] + 0.5) / weight[:, None]
    sizes = np.array([m.size for m in members])
    keys[n[None, :] >= sizes[:, None]] = np.inf
    flat_keys = keys.reshape(-1)
    first = np.lexsort((np.arange(flat_keys.size), flat_keys))[:k]
    first = first[np.isfinite(flat_keys[first])]
    cls_of = first // k
    quota = np.bincount(cls_of, minlength=c)
    chosen = np.zeros(first.size, np.int64)
    for cl in np.flatnonzero(quota):  # a loop over regions, not pixels
        m = members[cl]
        near = None
        if lfeat is not None and (lpred == cl).any():
            near = np.sqrt(_pairwise2(feat[m], lfeat[lpred == cl]).min(axis=1))
        picks = m[_greedy_medoids(feat[m], int(quota[cl]), near, rng)]
        slots = np.flatnonzero(cls_of == cl)[: picks.size]
        chosen[slots] = picks
        # A region whose descriptors ran out leaves its later slots empty.
        cls_of[np.flatnonzero(cls_of == cl)[picks.size:]] = -1
    ok = cls_of >= 0
    idx = chosen[ok]
    return ys[idx] * w + xs[idx], 1.0 / flat_keys[first[ok]]


def _pairwise2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 (N, M): squared distances between the rows of ``a`` (N, D) and ``b`` (M, D)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    d2 = (a64**2).sum(axis=1)[:, None] + (b64**2).sum(axis=1)[None, :] - 2.0 * a64 @ b64.T
    return np.maximum(d2, 0.0)


@STRATEGIES.register("coverage")
class Coverage(Strategy):
    defaults = dict(COVERAGE_DEFAULTS, score="rank")
    choices = {"score": ("rank", "region")}

    def check(self) -> None:
        check_coverage_params(self)

    def candidates(self, maps: Maps, rng: np.random.Generator, want: int) -> Candidates:
        h, w = maps["prob"].shape[1:]
        flat, need = coverage_ranking(maps, self.params, rng, min(int(want), self.params["max_points"]))
        score = need if self.params["score"] == "region" else sequence_scores(flat.size, rng)
        y, x = np.divmod(flat, w)
        cls, conf = at_points(maps["prob"], x, y)
        return Candidates.build(x, y, score, flat, cls, conf, size=(h, w))
