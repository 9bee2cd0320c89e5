"""The per-image state of a query run: candidates in, compact choices out, timings kept.

Per image only a compact candidate list leaves ``Scan.select_one`` (see
``atool.active.candidates``). Under a total budget the choices live in a
bounded selector (O(budget) points, never maps); per image they are made at
once and only the chosen points are kept.
"""

from __future__ import annotations

import time
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from atool.active.candidates import (
    Candidates, Regions, RegionSelector, TotalSelector, fields_of, from_fields, select_image, select_regions,
)
from atool.active.pseudo import PseudoWriter
from atool.active.strategies import Strategy, image_rng
from atool.active.strategies.inconsistency import heads_agree_at
from atool.core.errors import Mismatch
from atool.data.adapters.folder import IGNORE
from atool.data.images import read_label
from atool.runtime.decode import Decoded


class Scan:
    """One run over ``rels`` (relative image paths) with strategy ``strat`` under ``budget``."""

    def __init__(
        self, strat: Strategy, budget: int, per_image: bool, seed: int, rels: list[str], pseudo: PseudoWriter | None,
        exclude: Path | None = None,
    ):
        self.strat, self.budget, self.per_image, self.seed, self.rels, self.pseudo = strat, budget, per_image, seed, rels, pseudo
        self.exclude = exclude
        self.excluded_pixels = 0
        self.region = strat.kind == "region"
        self.pixel_ratio = float(strat.params["pixel_ratio"]) if self.region else None
        self.pixel_budget = 0  # region strategies: pixels allowed, summed over processed images (per image)
        self.selector: TotalSelector | RegionSelector | None
        if per_image:
            self.selector = None
        elif self.region:
            self.selector = RegionSelector(budget, self.pixel_ratio)
        else:
            self.selector = TotalSelector(budget)
        self.kept: list[tuple[np.ndarray, Any]] = []  # per image: (image index int32 (K,), chosen)
        self.sizes = np.zeros((len(rels), 2), dtype=np.int32)  # (height, width) per listed image
        self.skipped: list[dict[str, str]] = []
        self._skip_index: list[int] = []
        self.timings = {"decode": 0.0, "decode_wait": 0.0, "infer": 0.0, "select": 0.0, "write": 0.0}
        self.processed = 0
        self.offered = 0
        self.infer_error: str | None = None

    def skip(self, index: int, reason: str) -> None:
        self.skipped.append({"image": self.rels[index], "reason": reason})
        self._skip_index.append(index)

    def skipped_in_order(self) -> list[dict[str, str]]:
        """``skipped`` in listing order, however the images were batched, resumed or sharded."""
        order_ = sorted(range(len(self.skipped)), key=lambda k: self._skip_index[k])
        return [self.skipped[k] for k in order_]

    def state(self) -> dict[str, Any]:
        """Everything the final list depends on, as plain arrays and numbers (O(budget) for a total
        budget, O(chosen points) per image; never maps). ``absorb`` reads it back."""
        if self.per_image:
            image, chosen = self.chosen(timed=False)
        elif self.region:
            image, chosen = self.selector.snapshot()
        else:
            image, chosen = self.selector.result()
        return {
            "image": np.asarray(image, np.int32), "chosen": fields_of(chosen), "sizes": self.sizes.copy(),
            "skip_index": list(self._skip_index), "skip_reason": [s["reason"] for s in self.skipped],
            "processed": self.processed, "offered": self.offered, "excluded_pixels": self.excluded_pixels,
            "pixel_budget": self.pixel_budget, "region_pixels": self.selector.pixels if isinstance(self.selector, RegionSelector) else 0,
            "infer_error": self.infer_error,
        }

    def absorb(self, state: dict[str, Any]) -> None:
        """Add a ``state`` (this run's own from a checkpoint, or another rank's) to this scan."""
        kind = Regions if self.region else Candidates
        image, chosen = np.asarray(state["image"], np.int32), from_fields(kind, state["chosen"])
        if self.per_image:
            if len(chosen):
                self.kept.append((image, chosen))
            self.pixel_budget += int(state["pixel_budget"])
        elif self.region:
            self.selector.absorb(image, chosen, int(state["region_pixels"]))
            self.pixel_budget = self.selector.max_pixels()
        else:
            self.selector.absorb(image, chosen)
        self.sizes = np.maximum(self.sizes, np.asarray(state["sizes"], np.int32))
        for index, reason in zip(state["skip_index"], state["skip_reason"]):
            self.skip(int(index), str(reason))
        self.processed += int(state["processed"])
        self.offered += int(state["offered"])
        self.excluded_pixels += int(state["excluded_pixels"])
        self.infer_error = self.infer_error or state["infer_error"]

    def select_one(self, item: Decoded, maps: dict[str, np.ndarray]) -> None:
        """Candidates of one decoded image from its maps (each C x H x W or H x W, plus ``image``), then the choice."""
        t0 = time.perf_counter()
        rel = self.rels[item.index]
        size = item.rgb.shape[:2]
        self.sizes[item.index] = size
        labeled = self._labeled(rel, size)
        if labeled is not None:
            maps = heads_agree_at(dict(maps, labeled=labeled), labeled)
        if self.region:
            self._one_region(item.index, rel, size, maps)
            self.timings["select"] += time.perf_counter() - t0
            self.processed += 1
            return
        want = self.budget
        if labeled is not None:
            # Ask for enough extra points that dropping the labeled ones still leaves a full budget.
            want += int(labeled.sum())
        cands = self.strat.candidates(maps, image_rng(self.seed, rel), want)
        if labeled is not None and len(cands):
            cands = cands.take(np.flatnonzero(~labeled[cands.y, cands.x]))
        self.offered += len(cands)
        mask = None
        if self.per_image:
            chosen, mask = select_image(cands, self.budget)
            if len(chosen):
                self.kept.append((np.full(len(chosen), item.index, np.int32), chosen))
        else:
            self.selector.add(item.index, cands)
        t1 = time.perf_counter()
        if self.pseudo is not None:
            self.pseudo.add(item.index, rel, size, cands, mask)
        self.timings["select"] += t1 - t0
        self.timings["write"] += time.perf_counter() - t1
        self.processed += 1

    def _labeled(self, rel: str, size: tuple[int, int]) -> np.ndarray | None:
        """bool H x W of pixels already labeled (``exclude``/<stem>.png != 255), or None."""
        if self.exclude is None:
            return None
        path = self.exclude / f"{PurePosixPath(rel).with_suffix('').as_posix()}.png"
        if not path.is_file():
            return None
        label = read_label(path)
        if label.shape != tuple(size):
            raise Mismatch(f"{path}: excluded-label map is {label.shape[1]}x{label.shape[0]}, image {rel} is {size[1]}x{size[0]}")
        labeled = label != IGNORE
        self.excluded_pixels += int(labeled.sum())
        return labeled

    def _one_region(self, index: int, rel: str, size: tuple[int, int], maps: dict[str, np.ndarray]) -> None:
        regions = self.strat.regions(maps, image_rng(self.seed, rel), self.budget)
        self.offered += len(regions)
        pixels = int(size[0]) * int(size[1])
        if self.per_image:
            allowed = int(np.floor(self.pixel_ratio * pixels))
            self.pixel_budget += allowed
            idx = select_regions(regions, self.budget, allowed)
            if idx.size:
                self.kept.append((np.full(idx.size, index, np.int32), regions.take(idx)))
        else:
            self.selector.add(index, regions, pixels)
            self.pixel_budget = self.selector.max_pixels()

    def chosen(self, timed: bool = True) -> tuple[np.ndarray, Candidates | Regions]:
        """(image index int32 (K,), chosen candidates or regions) over the whole run."""
        t0 = time.perf_counter()
        kind = Regions if self.region else Candidates
        if not self.per_image:
            result = self.selector.result()
        elif self.kept:
            # Fold the per-image parts into one, so that checkpoints stay cheap to take.
            result = np.concatenate([i for i, _ in self.kept]), kind.concat([c for _, c in self.kept])
            self.kept = [result]
        else:
            result = np.zeros(0, np.int32), kind.empty()
        if timed:
            self.timings["select"] += time.perf_counter() - t0
        return result


def skip_reason(reason: str | None, path: Path) -> str:
    """Decode errors start with the file's path; the list already names the image, so keep the cause."""
    text = reason or "unreadable"
    prefix = f"{path}: "
    return (text[len(prefix):].strip() if text.startswith(prefix) else text) or "unreadable"
