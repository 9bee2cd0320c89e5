"""``confidence``: least confidence (1 - max P), with a suppression radius."""

from __future__ import annotations

import numpy as np

from atool.active.strategies import STRATEGIES, Maps
from atool.active.strategies.pixel import PixelStrategy
from atool.ops.uncertainty import least_confidence


@STRATEGIES.register("confidence")
class LeastConfidence(PixelStrategy):

    def uncertainty(self, maps: Maps) -> np.ndarray:
        return least_confidence(maps["prob"])
