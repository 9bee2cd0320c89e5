"""``entropy``: the pixels of highest (normalised) entropy, with a suppression radius."""

from __future__ import annotations

import numpy as np

from atool.active.strategies import STRATEGIES, Maps
from atool.active.strategies.pixel import PixelStrategy


@STRATEGIES.register("entropy")
class EntropyPixels(PixelStrategy):

    def uncertainty(self, maps: Maps) -> np.ndarray:
        return maps["entropy"]
