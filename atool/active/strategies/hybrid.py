"""``hybrid``: uncertainty clicks with a share of coverage clicks.

Uncertainty strategies find boundaries and hard pixels but never a
confident error; ``coverage`` finds every large predicted region but spends
clicks on easy ones. ``hybrid`` gives a fraction ``share`` of each image's
clicks to coverage and the rest to the peaks of an uncertainty map:

  * ``uncertainty``: ``ripu`` (default: region impurity x entropy, see
    ``ripu``), ``entropy`` (pixel entropy) or ``margin`` (1 - (top1 - top2));
  * the uncertainty points keep more than ``radius`` pixels (Chebyshev) from
    each other and from the coverage points, so the two parts never
    duplicate each other and uncertainty does not pile onto one blob;
  * the two rankings are interleaved in proportion (coverage point i sits at
    (i + 1/2) / share, uncertainty point i at (i + 1/2) / (1 - share)), so
    every prefix of the image's ranking, hence ``--per-image`` at any
    budget, has about ``share`` coverage points.

Scores are 1 / (j + 1 + u) for the image's j-th point (the scheme of
``random``): a total budget goes round the images evenly. Coverage and
uncertainty scores have different scales, and an uncertainty score across
images is exactly what misses confident errors, so neither decides how
many clicks an image gets.

Parameters: ``share`` (default 0.5), ``uncertainty``, ``radius`` (px,
default 16), ``stride`` and ``region_radius`` (of the uncertainty map, as
in ``ripu``), and the coverage parameters ``samples``, ``min_area``,
``alpha``, ``xy_weight``, ``color_weight``, ``prob_weight``, ``max_points``
(at most that many points per image in all), as in ``coverage``.
"""

from __future__ import annotations

import math

import numpy as np

from atool.active.candidates import Candidates
from atool.active.strategies import STRATEGIES, Maps, Strategy
from atool.active.strategies._spread import Lattice, block_around, sequence_scores
from atool.active.strategies.coverage import COVERAGE_DEFAULTS, check_coverage_params, coverage_ranking
from atool.active.strategies.ripu import lattice_cells, pick_uncertain, ripu_scores
from atool.ops.uncertainty import at_points, margin_uncertainty


@STRATEGIES.register("hybrid")
class Hybrid(Strategy):
    defaults = dict(
        {"share": 0.5, "uncertainty": "ripu", "radius": 16, "stride": 4, "region_radius": 8}, **COVERAGE_DEFAULTS
    )
    choices = {"uncertainty": ("ripu", "entropy", "margin")}

    def check(self) -> None:
        p = self.params
        self._require(0.0 <= p["share"] <= 1.0, f"share must be in [0, 1], got {p['share']}")
        self._require(p["radius"] >= 0, f"radius must be 0 or more, got {p['radius']}")
        self._require(p["stride"] >= 1, f"stride must be at least 1, got {p['stride']}")
        self._require(p["region_radius"] >= 1, f"region_radius must be at least 1 pixel, got {p['region_radius']}")
        check_coverage_params(self)

    def parts(self, maps: Maps, rng: np.random.Generator, want: int) -> tuple[Candidates, Candidates]:
        """(coverage points, uncertainty points), each in its own ranking order.

        Coverage points carry score 0, uncertainty points their map's score;
        ``candidates`` replaces both by the merged ranking's scores.
        """
        p = self.params
        prob = maps["prob"]
        h, w = prob.shape[1:]
        k = min(int(want), p["max_points"])
        if k <= 0:
            return Candidates.empty(), Candidates.empty()
        share = p["share"]
        k_cov = min(k, math.ceil(share * k)) if share > 0 else 0
        flat, _ = coverage_ranking(maps, p, rng, k_cov)
        cy, cx = np.divmod(flat, w)
        cls, conf = at_points(prob, cx, cy)
        cov = Candidates.build(cx, cy, np.zeros(flat.size), flat, cls, conf, size=(h, w))
        k_unc = k - flat.size if share < 1 else 0
        if k_unc <= 0:
            return cov, Candidates.empty()
        lat = Lattice.draw(h, w, p["stride"], rng)
        score = self._uncertainty(maps, lat)
        unc = pick_uncertain(score, maps, lat, p["radius"], k_unc, rng, avoid=block_around(lat, cy, cx, p["radius"]))
        # Uncertainty points in their own ranking order: score, then position.
        order = np.lexsort((unc.x, unc.y, -unc.score.astype(np.float64)))
        return cov, unc.take(order)

    def _uncertainty(self, maps: Maps, lat: Lattice) -> np.ndarray:
        kind = self.params["uncertainty"]
        if kind == "ripu":
            return ripu_scores(maps, lat, lattice_cells(self.params["region_radius"], lat.stride), "pixel")
        if kind == "entropy":
            return np.ascontiguousarray(lat.view(maps["entropy"]), dtype=np.float32)
        return margin_uncertainty(np.ascontiguousarray(lat.view(maps["prob"])))

    def candidates(self, maps: Maps, rng: np.random.Generator, want: int) -> Candidates:
        cov, unc = self.parts(maps, rng, want)
        share = self.params["share"]
        key = np.concatenate([
            (np.arange(len(cov)) + 0.5) / share if len(cov) else np.zeros(0),
            (np.arange(len(unc)) + 0.5) / (1.0 - share) if len(unc) else np.zeros(0),
        ])
        merged = Candidates.concat([cov, unc]).take(np.argsort(key, kind="stable"))
        return Candidates(
            merged.x, merged.y, sequence_scores(len(merged), rng).astype(np.float32), merged.group, merged.cls, merged.conf
        )
