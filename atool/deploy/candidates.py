"""Compact per-image candidates and the selectors that choose among them.

A strategy turns one image's maps into ``Candidates``: a few hundred points
with a score each. Nothing image-sized survives that step, which is what lets
a query run stream over 100,000 images with flat memory.

Selection order (the whole determinism contract lives here):
  1. score, descending (for patch strategies every point carries its patch's score);
  2. image, by index into the sorted list of relative paths, i.e. by path;
  3. group (the patch index, row-major; for pixel strategies the flat pixel
     index), so one patch's points stay together;
  4. position: y, then x.
The first ``budget`` points in that order are chosen, so under a total budget
a patch may be cut short only at the very end, and the result depends neither
on the order images arrive in nor on how they were batched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Candidates:
    """Candidate points of one image, all arrays of shape (M,).

    ``x`` column and ``y`` row: uint16 (uint32 for images over 65535 px);
    ``score``: float32, higher is chosen first; ``group``: int32 unit id
    (patch index or flat pixel index); ``cls``: int16 predicted class;
    ``conf``: float32 probability of that class (float32, not float16, so a
    pseudo-label threshold such as 0.95 is applied exactly).
    """

    x: np.ndarray
    y: np.ndarray
    score: np.ndarray
    group: np.ndarray
    cls: np.ndarray
    conf: np.ndarray

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def take(self, index: np.ndarray) -> "Candidates":
        return Candidates(*(getattr(self, f)[index] for f in _FIELDS))

    @staticmethod
    def build(
        x: np.ndarray, y: np.ndarray, score: np.ndarray, group: np.ndarray, cls: np.ndarray, conf: np.ndarray, size: tuple[int, int]
    ) -> "Candidates":
        """Pack raw arrays into the compact dtypes; ``size`` is (height, width) of the image."""
        coord = np.uint16 if max(size) <= 0xFFFF else np.uint32
        return Candidates(
            x=np.asarray(x).astype(coord),
            y=np.asarray(y).astype(coord),
            score=np.asarray(score, dtype=np.float32),
            group=np.asarray(group).astype(np.int32),
            cls=np.asarray(cls).astype(np.int16),
            conf=np.asarray(conf, dtype=np.float32),
        )

    @staticmethod
    def concat(parts: list["Candidates"]) -> "Candidates":
        if not parts:
            return Candidates.empty()
        return Candidates(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))

    @staticmethod
    def empty() -> "Candidates":
        return Candidates.build(*(np.zeros(0) for _ in range(6)), size=(1, 1))


_FIELDS = ("x", "y", "score", "group", "cls", "conf")


def order(score: np.ndarray, group: np.ndarray, y: np.ndarray, x: np.ndarray, image: np.ndarray | None = None) -> np.ndarray:
    """Indices that sort candidates into selection order (see the module doc)."""
    keys = [x, y, group] + ([image] if image is not None else []) + [-score.astype(np.float64)]
    return np.lexsort(keys)


def select_image(cands: Candidates, budget: int) -> tuple[Candidates, np.ndarray]:
    """The first ``budget`` candidates of one image in selection order.

    Returns (chosen, mask) where mask is bool (M,) marking chosen candidates.
    """
    idx = order(cands.score, cands.group, cands.y, cands.x)[: max(budget, 0)]
    mask = np.zeros(len(cands), dtype=bool)
    mask[idx] = True
    return cands.take(idx), mask


class TotalSelector:
    """Keeps the best ``budget`` points over any number of images.

    Candidates are buffered and pruned back to ``budget`` points whenever the
    buffer doubles, so memory is O(budget) however many images stream past.
    Once full, a candidate scoring below the current budget-th point cannot
    win, and is dropped on arrival (ties are kept: path and position decide).
    """

    def __init__(self, budget: int, slack: int = 4096) -> None:
        self.budget = max(int(budget), 0)
        # pruning sorts the buffer; the slack keeps small budgets from sorting on every image
        self.slack = max(int(slack), 0)
        self._parts: list[tuple[np.ndarray, Candidates]] = []
        self._count = 0
        self._threshold = -np.inf
        self.offered = 0

    def add(self, image: int, cands: Candidates) -> None:
        self.offered += len(cands)
        if self.budget == 0 or len(cands) == 0:
            return
        if self._threshold > -np.inf:
            cands = cands.take(np.flatnonzero(cands.score >= self._threshold))
            if len(cands) == 0:
                return
        self._parts.append((np.full(len(cands), image, dtype=np.int32), cands))
        self._count += len(cands)
        if self._count >= 2 * self.budget + self.slack:
            self._prune()

    def _prune(self) -> None:
        image, cands = self._concat()
        idx = order(cands.score, cands.group, cands.y, cands.x, image)[: self.budget]
        image, cands = image[idx], cands.take(idx)
        self._parts = [(image, cands)]
        self._count = len(cands)
        if self.budget and self._count >= self.budget:
            self._threshold = float(cands.score[-1])

    def _concat(self) -> tuple[np.ndarray, Candidates]:
        if not self._parts:
            return np.zeros(0, np.int32), Candidates.empty()
        return np.concatenate([p[0] for p in self._parts]), Candidates.concat([p[1] for p in self._parts])

    def result(self) -> tuple[np.ndarray, Candidates]:
        """(image index int32 (K,), chosen candidates) in selection order; K <= budget."""
        self._prune()
        return self._parts[0]


__all__ = ["Candidates", "order", "select_image", "TotalSelector"]
