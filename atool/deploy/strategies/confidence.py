"""``confidence``: least confidence (1 - max P), with a suppression radius."""

from __future__ import annotations

import numpy as np

from atool.deploy.strategies import STRATEGIES, Maps
from atool.deploy.strategies.pixel import PixelStrategy
from atool.deploy.uncertainty import least_confidence


@STRATEGIES.register("confidence")
class LeastConfidence(PixelStrategy):
    name = "confidence"

    def uncertainty(self, maps: Maps) -> np.ndarray:
        return least_confidence(maps["prob"])
