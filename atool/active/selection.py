"""The per-image state of a query run: candidates in, compact choices out, timings kept.

Per image only a compact candidate list leaves ``Scan._one`` (see
``atool.active.candidates``). Under a total budget the choices live in a
bounded selector (O(budget) points, never maps); per image they are made at
once and only the chosen points are kept.
"""

from __future__ import annotations

import time
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from atool.active.candidates import Candidates, Regions, RegionSelector, TotalSelector, select_image, select_regions
from atool.active.pseudo import PseudoWriter
from atool.active.strategies import Strategy, image_rng
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
        self.kept: list[tuple[int, Any]] = []
        self.sizes = np.zeros((len(rels), 2), dtype=np.int32)  # (height, width) per listed image
        self.skipped: list[dict[str, str]] = []
        self.timings = {"decode": 0.0, "decode_wait": 0.0, "infer": 0.0, "select": 0.0, "write": 0.0}
        self.processed = 0
        self.offered = 0
        self.infer_error: str | None = None

    def skip(self, index: int, reason: str) -> None:
        self.skipped.append({"image": self.rels[index], "reason": reason})

    def run_batch(self, backend: Any, batch: list[Decoded]) -> None:
        """Infer one batch of same-sized decoded images (uint8 N x H x W x 3) and select on each."""
        self.timings["decode"] += sum(item.seconds for item in batch)
        t0 = time.perf_counter()
        try:
            maps = backend.infer(np.stack([item.rgb for item in batch]))
        except (RuntimeError, ValueError, MemoryError) as exc:
            # One odd image (e.g. too small for the network) must not sink the run.
            text = str(exc).strip()
            self.infer_error = text.splitlines()[0][:200] if text else type(exc).__name__
            for item in batch:
                self.skip(item.index, f"inference failed: {self.infer_error}")
            self.timings["infer"] += time.perf_counter() - t0
            return
        self.timings["infer"] += time.perf_counter() - t0
        for k, item in enumerate(batch):
            # "image" (uint8 H x W x 3 RGB): colour-aware strategies (coverage) read the pixels.
            self._one(item, {**{name: arr[k] for name, arr in maps.items()}, "image": item.rgb})
            item.rgb = None  # the decoded pixels are not needed past this point

    def _one(self, item: Decoded, maps: dict[str, np.ndarray]) -> None:
        t0 = time.perf_counter()
        rel = self.rels[item.index]
        size = item.rgb.shape[:2]
        self.sizes[item.index] = size
        labeled = self._labeled(rel, size)
        if labeled is not None:
            maps = dict(maps, labeled=labeled)
            if "head1" in maps:
                # Heads that agree raise no inconsistency: labeled pixels leave the selector's mask.
                maps["head2"] = np.where(labeled[None], maps["head1"], maps["head2"])
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
                self.kept.append((item.index, chosen))
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
                self.kept.append((index, regions.take(idx)))
        else:
            self.selector.add(index, regions, pixels)
            self.pixel_budget = self.selector.max_pixels()

    def chosen(self) -> tuple[np.ndarray, Candidates | Regions]:
        """(image index int32 (K,), chosen candidates or regions) over the whole run."""
        t0 = time.perf_counter()
        kind = Regions if self.region else Candidates
        if not self.per_image:
            result = self.selector.result()
        elif self.kept:
            image = np.concatenate([np.full(len(c), i, np.int32) for i, c in self.kept])
            result = image, kind.concat([c for _, c in self.kept])
        else:
            result = np.zeros(0, np.int32), kind.empty()
        self.timings["select"] += time.perf_counter() - t0
        return result


def skip_reason(reason: str | None, path: Path) -> str:
    """Decode errors start with the file's path; the list already names the image, so keep the cause."""
    text = reason or "unreadable"
    prefix = f"{path}: "
    return (text[len(prefix):].strip() if text.startswith(prefix) else text) or "unreadable"
