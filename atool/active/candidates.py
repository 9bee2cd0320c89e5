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

Region strategies (LabOR's SPL) offer ``Regions`` instead: the same order,
but a region is taken only while it fits both the count budget and the pixel
budget (``select_regions``, ``RegionSelector``).
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

    def absorb(self, image: np.ndarray, cands: Candidates) -> None:
        """Add candidates of several images at once (``image`` int32 (M,)): a resumed run's
        saved choices, or another rank's. Counted as chosen before, not as offered."""
        if self.budget == 0 or len(cands) == 0:
            return
        self._parts.append((np.asarray(image, dtype=np.int32), cands))
        self._count += len(cands)
        self._prune()


@dataclass(frozen=True)
class Regions:
    """Candidate regions of one image (region strategies), all arrays of shape (R,).

    ``x``, ``y``: a pixel inside the region (uint16/uint32); ``score``: float32;
    ``group``: int32 region id within the image (tie-break); ``area``: int64
    pixels; ``cls``: int16 the model's majority class over the region;
    ``conf``: float32 the share of the region's pixels predicted as ``cls``;
    ``counts``: object array of COCO compressed RLE strings (image-sized,
    column-major, see ``atool.ops.rle``). A region costs its RLE string,
    a few hundred bytes, never an image-sized mask.
    """

    x: np.ndarray
    y: np.ndarray
    score: np.ndarray
    group: np.ndarray
    area: np.ndarray
    cls: np.ndarray
    conf: np.ndarray
    counts: np.ndarray

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def take(self, index: np.ndarray) -> "Regions":
        return Regions(*(getattr(self, f)[index] for f in _REGION_FIELDS))

    @staticmethod
    def build(x, y, score, group, area, cls, conf, counts, size: tuple[int, int]) -> "Regions":
        coord = np.uint16 if max(size) <= 0xFFFF else np.uint32
        packed = np.empty(len(counts), dtype=object)
        packed[:] = list(counts)
        return Regions(
            x=np.asarray(x).astype(coord),
            y=np.asarray(y).astype(coord),
            score=np.asarray(score, dtype=np.float32),
            group=np.asarray(group).astype(np.int32),
            area=np.asarray(area).astype(np.int64),
            cls=np.asarray(cls).astype(np.int16),
            conf=np.asarray(conf, dtype=np.float32),
            counts=packed,
        )

    @staticmethod
    def concat(parts: list["Regions"]) -> "Regions":
        if not parts:
            return Regions.empty()
        return Regions(*(np.concatenate([getattr(p, f) for p in parts]) for f in _REGION_FIELDS))

    @staticmethod
    def empty() -> "Regions":
        return Regions.build(*(np.zeros(0) for _ in range(7)), counts=[], size=(1, 1))


_REGION_FIELDS = ("x", "y", "score", "group", "area", "cls", "conf", "counts")


def select_regions(regions: Regions, max_count: int, max_pixels: int, image: np.ndarray | None = None) -> np.ndarray:
    """Greedy choice under a count and a pixel budget: indices into ``regions``, in selection order.

    Regions are visited in selection order (score, image, group, position); one
    is taken when it still fits both budgets, otherwise skipped, so a smaller
    region further down may still use the pixels left. The loop is over
    regions, not pixels.
    """
    idx = order(regions.score, regions.group, regions.y, regions.x, image)
    chosen: list[int] = []
    used = 0
    limit = max(int(max_count), 0)
    for j, a in zip(idx.tolist(), regions.area[idx].tolist()):
        if len(chosen) >= limit:
            break
        if used + a <= max_pixels:
            chosen.append(j)
            used += a
    return np.asarray(chosen, dtype=np.int64)


class RegionSelector:
    """Total-budget selection of regions: at most ``budget`` regions and
    ``floor(pixel_ratio x pixels of all processed images)`` pixels.

    The pixel budget is known only once every image is in, so every offered
    region is kept until ``result`` (each as an RLE string; strategies offer
    at most ``budget`` regions per image). Memory is O(regions offered).
    """

    def __init__(self, budget: int, pixel_ratio: float) -> None:
        self.budget = max(int(budget), 0)
        self.pixel_ratio = float(pixel_ratio)
        self.pixels = 0
        self._parts: list[tuple[np.ndarray, Regions]] = []
        self.offered = 0

    def add(self, image: int, regions: Regions, pixels: int) -> None:
        self.pixels += int(pixels)
        self.offered += len(regions)
        if len(regions) and self.budget:
            self._parts.append((np.full(len(regions), image, dtype=np.int32), regions))

    def max_pixels(self) -> int:
        return int(np.floor(self.pixel_ratio * self.pixels))

    def absorb(self, image: np.ndarray, regions: Regions, pixels: int) -> None:
        """Add regions of several images at once (``image`` int32 (R,)) and their ``pixels``."""
        self.pixels += int(pixels)
        if len(regions) and self.budget:
            self._parts.append((np.asarray(image, dtype=np.int32), regions))

    def snapshot(self) -> tuple[np.ndarray, Regions]:
        """(image index int32 (R,), every region kept so far)."""
        if not self._parts:
            return np.zeros(0, np.int32), Regions.empty()
        return np.concatenate([p[0] for p in self._parts]), Regions.concat([p[1] for p in self._parts])

    def result(self) -> tuple[np.ndarray, Regions]:
        """(image index int32 (K,), chosen regions) in selection order."""
        if not self._parts:
            return np.zeros(0, np.int32), Regions.empty()
        image = np.concatenate([p[0] for p in self._parts])
        regions = Regions.concat([p[1] for p in self._parts])
        idx = select_regions(regions, self.budget, self.max_pixels(), image)
        return image[idx], regions.take(idx)


def fields_of(items: Candidates | Regions) -> dict[str, np.ndarray]:
    """Field name -> array: a plain form for checkpoints and for gathering across ranks."""
    return {f: getattr(items, f) for f in (_REGION_FIELDS if isinstance(items, Regions) else _FIELDS)}


def from_fields(kind: type, arrays: dict[str, np.ndarray]) -> Candidates | Regions:
    """``fields_of``'s inverse; ``kind`` is Candidates or Regions (RLE counts come back as an object array)."""
    if kind is Regions:
        counts = np.empty(len(arrays["counts"]), dtype=object)
        counts[:] = [str(c) for c in arrays["counts"]]
        return Regions(**{**{f: np.asarray(arrays[f]) for f in _REGION_FIELDS if f != "counts"}, "counts": counts})
    return Candidates(**{f: np.asarray(arrays[f]) for f in _FIELDS})


__all__ = ["Candidates", "Regions", "fields_of", "from_fields", "order", "select_image", "select_regions", "TotalSelector", "RegionSelector"]
