"""``domain_gap``: ask where the model's features look least like the source domain.

Under domain shift the costliest errors are confident: on the built-in pair the
adapted model calls 73% of the dark sky "building" at 0.91, where entropy,
margin and head disagreement are all lowest (DESIGN.md, measured pitfalls).
Those pixels' features resemble no source "building", though. The model's
``gap`` output (``atool prototypes``; ``atool.models.features.gap_map``) is
1 - cosine(pixel feature, source prototype of the predicted class), in [0, 2].

Score: ``gap * (1 + entropy_weight * entropy)``. The default weight is 0, the
pure gap: the point of this signal is to find what doubt-based signals miss,
and an entropy factor would hand the top ranks back to class boundaries,
which are both uncertain and (their features mixing two classes) somewhat
far from every prototype. A weight of 1 at most doubles a pixel's score, a
tie-breaker toward pixels that are also uncertain.

Spread (``radius`` r, ``rounds``): greedy non-maximum suppression done in
vectorised rounds. Each round takes the strict local maxima of the score in a
(2r+1) x (2r+1) window among the pixels still free, then frees no pixel
within r of a point taken (Chebyshev distance). So any two points of an image
are more than r pixels apart, and a wide region of high gap (a whole
mislabeled sky) offers a point every r or so pixels rather than one per
smooth bump, while the best points still come first by score. Pixels
labeled in earlier rounds neither become points nor suppress their
neighbours. Equal scores are told apart by a jitter below half a float32
step from the image's own generator, so the result is deterministic per seed
and image.
"""

from __future__ import annotations

import cv2
import numpy as np

from atool.active.candidates import Candidates
from atool.active.strategies import STRATEGIES, Maps, Strategy
from atool.core.errors import BadInput
from atool.ops.uncertainty import at_points

HINT = (
    "add source prototypes with `atool prototypes --checkpoint CKPT --source SOURCE_DATASET --out CKPT_WITH_PROTOTYPES.pt` "
    "and query with that checkpoint (or its `atool export`)"
)


def spread_points(score: np.ndarray, free: np.ndarray, radius: int, rounds: int, rng: np.random.Generator) -> np.ndarray:
    """Flat indices (int64, ascending) of points more than ``radius`` apart; see the module doc.

    ``score`` float32 H x W, ``free`` bool H x W (pixels that may be taken and
    may suppress others). At most ``rounds`` rounds of local maxima.
    """
    s32 = score.astype(np.float32, copy=False)
    free = free & np.isfinite(s32)
    spacing = np.where(free, np.spacing(np.abs(np.where(free, s32, 0))), 0).astype(np.float64)
    key = np.where(free, s32.astype(np.float64) + rng.random(s32.shape) * (0.5 * spacing), -np.inf)
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    taken = []
    for _ in range(rounds):
        if not free.any():
            break
        masked = np.where(free, key, -np.inf)
        peak = cv2.dilate(masked, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=-np.inf)
        new = np.flatnonzero(free & (masked == peak))
        taken.append(new)
        hit = np.zeros(s32.shape, np.uint8)
        hit.flat[new] = 1
        free = free & (cv2.dilate(hit, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0) == 0)
    return np.sort(np.concatenate(taken)) if taken else np.zeros(0, np.int64)


@STRATEGIES.register("domain_gap")
class DomainGap(Strategy):
    needs_maps = ("gap",)
    needs_maps_hint = HINT
    defaults = {"radius": 8, "rounds": 4, "entropy_weight": 0.0}

    def check(self) -> None:
        self._require(self.params["radius"] >= 0, f"radius must be 0 or more, got {self.params['radius']}")
        self._require(self.params["rounds"] >= 1, f"rounds must be at least 1, got {self.params['rounds']}")
        w = self.params["entropy_weight"]
        self._require(np.isfinite(w) and w >= 0, f"entropy_weight must be 0 or more, got {w}")

    def score_map(self, maps: Maps) -> np.ndarray:
        """float32 H x W: gap * (1 + entropy_weight * entropy)."""
        if "gap" not in maps:
            raise BadInput(f"strategy {self.name!r} needs the model's gap output; {HINT}")
        gap = maps["gap"].astype(np.float32, copy=False)
        w = np.float32(self.params["entropy_weight"])
        return gap if w == 0 else (gap * (np.float32(1.0) + w * maps["entropy"])).astype(np.float32)

    def candidates(self, maps: Maps, rng: np.random.Generator, want: int) -> Candidates:
        score = self.score_map(maps)
        h, w = score.shape
        free = ~maps["labeled"] if "labeled" in maps else np.ones((h, w), bool)
        idx = spread_points(score, free, self.params["radius"], self.params["rounds"], rng)
        flat = score.reshape(-1)
        # The best `want` by score, ties to the lower pixel index (the selectors' own order).
        idx = idx[np.lexsort((idx, -flat[idx].astype(np.float64)))[: max(want, 0)]]
        y, x = np.divmod(idx, w)
        cls, conf = at_points(maps["prob"], x, y)
        return Candidates.build(x, y, flat[idx], idx, cls, conf, size=(h, w))
