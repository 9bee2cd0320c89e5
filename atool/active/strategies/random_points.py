"""``random``: uniformly random distinct pixels, the baseline every strategy is compared with.

The j-th point drawn in an image (j = 0, 1, ...) gets score 1 / (j + 1 + u)
with u uniform in [0, 1). Scores fall with j, so per image the first B draws
are kept (a uniform sample); across images the selectors take every image's
first point before any image's second, in random order within a round. A
total budget is thus spread evenly over the images that were readable,
without knowing their number in advance.
"""

from __future__ import annotations

import numpy as np

from atool.active.candidates import Candidates
from atool.active.strategies import STRATEGIES, Maps, Strategy
from atool.ops.uncertainty import at_points


@STRATEGIES.register("random")
class RandomPoints(Strategy):
    defaults: dict = {}

    def candidates(self, maps: Maps, rng: np.random.Generator, want: int) -> Candidates:
        h, w = maps["prob"].shape[1:]
        k = int(min(max(want, 0), h * w))
        idx = rng.choice(h * w, size=k, replace=False) if k else np.zeros(0, np.int64)
        score = 1.0 / (np.arange(k) + 1.0 + rng.random(k))
        y, x = np.divmod(idx, w)
        cls, conf = at_points(maps["prob"], x, y)
        return Candidates.build(x, y, score, idx, cls, conf, size=(h, w))
