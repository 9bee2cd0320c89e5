"""``margin``: smallest top1 - top2 gap first (scored as 1 - margin), with a suppression radius."""

from __future__ import annotations

import numpy as np

from atool.active.strategies import STRATEGIES, Maps
from atool.active.strategies.pixel import PixelStrategy
from atool.ops.uncertainty import margin_uncertainty


@STRATEGIES.register("margin")
class SmallestMargin(PixelStrategy):

    def uncertainty(self, maps: Maps) -> np.ndarray:
        return margin_uncertainty(maps["prob"])
