"""``QueryConfig``: how one query run chooses its points.

Kept apart from ``atool.active.query`` so that ``atool query --help`` builds
its options from it without importing the query machinery.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass
from typing import Any

from atool.core.config import setting
from atool.core.errors import BadInput


def default_decode_workers(cpus: int | None = None) -> int:
    """Decode threads by default: half the cores, at least 2 and at most 8.

    Decoding a 1024x512 PNG takes ~25 ms of one core, so the 2 threads that
    suit a 2-core machine cap a query near 80 img/s, below what a GPU infers
    (an H200 ran the demo model at 113 img/s through onnxruntime). The other
    half of the cores stays with inference and selection.
    """
    cpus = cpus if cpus is not None else (os.cpu_count() or 2)
    return max(2, min(8, cpus // 2))


@dataclass
class QueryConfig:
    """How one query run chooses its points: ``atool query`` options, ``--config`` keys, ``atool loop``'s ``query:``."""

    strategy: str = setting("stratified", "Selection strategy (stratified: measured best against random on the built-in pair, README).")
    params: dict[str, Any] = setting(help="Strategy parameters, e.g. {radius: 8} (--param KEY=VALUE on the command line).", default_factory=dict)
    budget: int | None = setting(None, "Point queries in total (or per image with --per-image).")
    per_image: bool = setting(False, "The budget is per image, as in the papers.", cli=(" /--total",))
    seed: int = setting(0, "Seed of the strategies' random draws; the same seed gives the same list.")
    pseudo_out: str | None = setting(None, "Write pseudo labels of unselected candidates here.", metavar="DIR")
    pseudo_min_confidence: float = setting(0.0, "Keep pseudo labels only at this confidence or above.")
    batch_size: int = setting(4, "Same-sized images per inference batch.")
    workers: int = setting(help="Decode threads (0 = decode on the main thread); half the cores, 2 to 8.", default_factory=default_decode_workers)
    device: str | None = setting(None, "Backend device (cpu, cuda, cuda:1)  [default: the backend's own]")
    exclude: str | None = setting(None, "Label PNGs of earlier rounds: their labeled pixels are not queried again.", metavar="DIR")

    def validate(self) -> None:
        budget = self.budget
        if budget is None:
            raise BadInput("no query budget: give budget N, the number of point queries")
        if isinstance(budget, bool) or not isinstance(budget, numbers.Integral):
            raise BadInput(f"budget must be a whole number of points, got {budget!r}")
        if budget < 0:
            raise BadInput(f"budget must be 0 or more points, got {budget}")
        if self.batch_size < 1:
            raise BadInput(f"batch size must be at least 1, got {self.batch_size}")
        if self.workers < 0:
            raise BadInput(f"workers must be 0 (decode on the main thread) or more, got {self.workers}")
        if not 0.0 <= self.pseudo_min_confidence <= 1.0:
            raise BadInput(f"pseudo-label minimum confidence must lie in [0, 1], got {self.pseudo_min_confidence}")


__all__ = ["QueryConfig"]
