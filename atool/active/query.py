"""``run_query``: scan a folder, score every image, choose points under a budget.

Per image only a compact candidate list leaves the inner loop (see
``atool.active.candidates``); under a total budget a bounded selector keeps the
best of them, so a run over 100,000 images holds O(budget) points, never maps.

The returned dict is the ``atool.query/v1`` list plus ``timings`` (seconds per
stage). The file written to ``out`` leaves ``timings`` out, so two runs with
the same inputs, model and seed write the same bytes apart from ``created``.

Budget accounting in the list: ``budget.points`` is the run's total point
budget. Under ``per_image`` it is budget x readable images, and the per-image
figure is kept in ``budget.per_image``.

Region strategies (``kind = "region"``, e.g. ``inconsistency_spl``) write
``kind: "region"`` queries with a COCO RLE ``mask`` and a point inside it.
For them ``budget`` counts regions (``budget.points``/``used`` as above), and
the strategy's ``pixel_ratio`` caps their pixels: ``budget.pixel_ratio``,
``budget.pixels`` (the pixel budget: the ratio times the pixels of the
processed images, or of each image with ``per_image``, summed) and
``budget.pixels_used``. Region lists are written in the atool JSON format
only, and take no pseudo labels.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

import atool
from atool.data.adapters.folder import IGNORE
from atool.data.images import list_images, read_label, relative_id
from atool.active.candidates import Candidates, Regions, RegionSelector, TotalSelector, order, select_image, select_regions
from atool.annotate.formats import FORMATS, write_query_list
from atool.runtime.decode import Decoded, decode_ahead, same_size_batches
from atool.active.pseudo import PseudoWriter
from atool.active.strategies import Strategy, image_rng, make_strategy
from atool.core.errors import BadInput, Failure, Mismatch
from atool.core.io import sha256_file

log = logging.getLogger(__name__)

QUERY_FORMAT = "atool.query/v1"


def _check_args(budget: int, batch_size: int, workers: int, pseudo_min_confidence: float, fmt: str) -> None:
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)):
        raise BadInput(f"budget must be a whole number of points, got {budget!r}")
    if budget < 0:
        raise BadInput(f"budget must be 0 or more points, got {budget}")
    if batch_size < 1:
        raise BadInput(f"batch size must be at least 1, got {batch_size}")
    if workers < 0:
        raise BadInput(f"workers must be 0 (decode on the main thread) or more, got {workers}")
    if not 0.0 <= pseudo_min_confidence <= 1.0:
        raise BadInput(f"pseudo-label minimum confidence must lie in [0, 1], got {pseudo_min_confidence}")
    FORMATS.get(fmt)


def _check_stems(rels: list[str]) -> None:
    """Pseudo labels (and ingest) key images by path without suffix; two images must not share one."""
    seen: dict[str, str] = {}
    for rel in rels:
        stem = PurePosixPath(rel).with_suffix("").as_posix()
        if stem in seen:
            raise BadInput(
                f"images {seen[stem]} and {rel} share the name {stem}; labels are keyed by path without suffix, "
                "so rename one before writing pseudo labels"
            )
        seen[stem] = rel


def _score_json(value: float) -> float:
    # The shortest text that reads back as the same float32: stable, short,
    # and it keeps the order of distinct float32 scores.
    return float(str(np.float32(value)))


def _group_by_image(
    rels: list[str], sizes: np.ndarray, chosen_image: np.ndarray, chosen: Candidates | Regions, make_query
) -> list[dict[str, Any]]:
    """Group chosen queries by image; images by best score then path, queries by score then (y, x).

    ``make_query(j, height, width)`` turns chosen item ``j`` into its query dict (without ``id``);
    ids are numbered afterwards in file order.
    """
    if len(chosen) == 0:
        return []
    # File order ignores patch ids: score, then image, then (y, x).
    idx = order(chosen.score, np.zeros(len(chosen), np.int32), chosen.y, chosen.x, chosen_image)
    img_sorted = chosen_image[idx]
    # A stable sort by image groups each image's queries and keeps their order.
    by_image = np.argsort(img_sorted, kind="stable")
    grouped = idx[by_image]
    images, bounds = np.unique(img_sorted[by_image], return_index=True)
    entries = []
    for img, part in zip(images.tolist(), np.split(grouped, bounds[1:])):
        h, w = (int(v) for v in sizes[img])
        queries = [make_query(j, h, w) for j in part.tolist()]
        best = float(chosen.score[part].max())
        entries.append((-best, rels[img], {"image": rels[img], "width": w, "height": h, "score": _score_json(best), "queries": queries}))
    entries.sort(key=lambda e: (e[0], e[1]))
    out = []
    n = 0
    for _, _, entry in entries:
        for q in entry["queries"]:
            n += 1
            q["id"] = f"q{n:06d}"
        out.append(entry)
    return out


def _predicted(classes: list[str], cls: int) -> str | None:
    return classes[cls] if 0 <= cls < len(classes) else None


def _build_images(
    rels: list[str], sizes: np.ndarray, chosen_image: np.ndarray, chosen: Candidates, classes: list[str]
) -> list[dict[str, Any]]:
    def point(j: int, h: int, w: int) -> dict[str, Any]:
        return {"kind": "point", "x": int(chosen.x[j]), "y": int(chosen.y[j]), "score": _score_json(chosen.score[j]),
                "predicted": _predicted(classes, int(chosen.cls[j]))}

    return _group_by_image(rels, sizes, chosen_image, chosen, point)


def _build_region_images(
    rels: list[str], sizes: np.ndarray, chosen_image: np.ndarray, chosen: Regions, classes: list[str]
) -> list[dict[str, Any]]:
    """Like ``_build_images`` for regions: each query carries its RLE ``mask``."""

    def region(j: int, h: int, w: int) -> dict[str, Any]:
        return {"kind": "region", "x": int(chosen.x[j]), "y": int(chosen.y[j]), "score": _score_json(chosen.score[j]),
                "predicted": _predicted(classes, int(chosen.cls[j])), "area": int(chosen.area[j]),
                "mask": {"size": [h, w], "counts": str(chosen.counts[j])}}

    return _group_by_image(rels, sizes, chosen_image, chosen, region)


class _Scan:
    """The per-image loop's state: candidates in, compact choices out, timings kept.

    Under a total budget the choices live in a ``TotalSelector`` (O(budget)
    points); per image they are made at once and only the chosen points kept.
    """

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
            self._one(item, {name: arr[k] for name, arr in maps.items()})
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

    def chosen(self) -> tuple[np.ndarray, Any]:
        """(image index int32 (K,), chosen candidates or regions) over the whole run."""
        t0 = time.perf_counter()
        if self.region and self.per_image:
            if self.kept:
                image = np.concatenate([np.full(len(c), i, np.int32) for i, c in self.kept])
                result = image, Regions.concat([c for _, c in self.kept])
            else:
                result = np.zeros(0, np.int32), Regions.empty()
            self.timings["select"] += time.perf_counter() - t0
            return result
        if not self.per_image:
            result = self.selector.result()
        elif self.kept:
            image = np.concatenate([np.full(len(c), i, np.int32) for i, c in self.kept])
            result = image, Candidates.concat([c for _, c in self.kept])
        else:
            result = np.zeros(0, np.int32), Candidates.empty()
        self.timings["select"] += time.perf_counter() - t0
        return result


def run_query(
    model: Any,
    images: str | os.PathLike,
    budget: int,
    *,
    per_image: bool = False,
    strategy: str = "entropy_patch",
    strategy_params: dict[str, Any] | None = None,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    fmt: str = "json",
    pseudo_out: str | os.PathLike | None = None,
    pseudo_min_confidence: float = 0.0,
    batch_size: int = 4,
    workers: int = 2,
    progress: bool = False,
    format_options: dict[str, Any] | None = None,
    device: str | None = None,
    exclude: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Choose point queries on every image under ``images``.

    ``model``: a model file (.pt/.pth/.ckpt, .onnx, ...) or an already loaded
    ``atool.runtime.backends.Backend``. ``budget``: points in total, or per
    image with ``per_image``. Images are decoded by ``workers`` threads ahead
    of inference and run in batches of up to ``batch_size`` same-sized images.
    ``device`` goes to the backend (None: its default). ``exclude``: a folder
    of label PNGs keyed like the images (e.g. labels of earlier rounds); their
    non-255 pixels are never queried again.
    Unreadable files are listed in ``skipped``; if none is readable, BadInput.

    Returns the query list (see module doc) with ``timings``.
    """
    t_start = time.perf_counter()
    _check_args(budget, batch_size, workers, pseudo_min_confidence, fmt)
    budget = int(budget)
    strat = make_strategy(strategy, strategy_params)
    root = Path(images)
    paths = list_images(root)
    if not paths:
        raise BadInput(f"{root} holds no images (png, jpg, jpeg, bmp, tif, tiff)")
    rels = [relative_id(p, root) for p in paths]

    # The backends bring torch (and maybe onnxruntime) with them: import only when a query runs.
    from atool.runtime.backends import Backend, load_backend

    backend = model if isinstance(model, Backend) else load_backend(model, **({"device": device} if device else {}))
    model_path = Path(backend.path) if isinstance(model, Backend) else Path(model)
    classes = list(backend.classes)
    if strat.needs_heads and not backend.heads:
        from atool.active.strategies.inconsistency import heads_message

        raise BadInput(f"{heads_message(strategy)}; {model_path.name} has no head1/head2 outputs")
    region = strat.kind == "region"
    if region and pseudo_out is not None:
        raise BadInput(f"strategy {strategy!r} writes region queries; pseudo labels (--pseudo-out) come only from point strategies")
    if region and fmt != "json":
        raise BadInput(f"strategy {strategy!r} writes region queries, which only the json format carries (got --format {fmt})")
    if pseudo_out is not None:
        if len(classes) > 254:
            raise BadInput(f"the model has {len(classes)} classes; pseudo labels are uint8 PNGs and hold at most 254")
        _check_stems(rels)

    pseudo = PseudoWriter(Path(pseudo_out), pseudo_min_confidence, deferred=not per_image) if pseudo_out is not None else None
    if exclude is not None and not Path(exclude).is_dir():
        raise BadInput(f"exclude folder {exclude} does not exist")
    scan = _Scan(strat, budget, per_image, seed, rels, pseudo, Path(exclude) if exclude is not None else None)
    bar = None
    if progress and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=len(paths), unit="img", desc="query", file=sys.stderr)
    waited = [0.0]
    try:
        decoded = decode_ahead(paths, workers, prefetch=max(2 * batch_size, 2 * workers, 2))
        for batch, bad in same_size_batches(decoded, batch_size, waited):
            for item in bad:
                scan.timings["decode"] += item.seconds
                scan.skip(item.index, _reason(item.reason, item.path))
            if batch:
                scan.run_batch(backend, batch)
            if bar is not None:
                bar.update(len(bad) + len(batch))
        scan.timings["decode_wait"] = waited[0]
        if scan.processed == 0:
            if scan.infer_error is not None:
                raise Failure(f"inference failed on every readable image under {root}: {scan.infer_error}")
            first = scan.skipped[0]["reason"] if scan.skipped else "?"
            raise BadInput(f"none of the {len(paths)} images under {root} could be read (first: {first})")
        chosen_image, chosen = scan.chosen()
        t0 = time.perf_counter()
        build = _build_region_images if region else _build_images
        entries = build(rels, scan.sizes, chosen_image, chosen, classes)
        t1 = time.perf_counter()
        if pseudo is not None:
            pseudo.finish(chosen_image, chosen)
        scan.timings["select"] += t1 - t0
        scan.timings["write"] += time.perf_counter() - t1
    finally:
        if pseudo is not None:
            pseudo.close()
        if bar is not None:
            bar.close()
    timings, skipped, processed = scan.timings, scan.skipped, scan.processed

    used = sum(len(e["queries"]) for e in entries)
    points = budget * processed if per_image else budget
    budget_block: dict[str, Any] = {"points": points, "scope": "per_image" if per_image else "total", "used": used}
    if per_image:
        budget_block["per_image"] = budget
    if region:
        budget_block["pixel_ratio"] = scan.pixel_ratio
        budget_block["pixels"] = int(scan.pixel_budget)
        budget_block["pixels_used"] = int(sum(q["area"] for e in entries for q in e["queries"]))
    if used < points and not region:
        log.warning(
            "only %d candidate points for a budget of %d%s; all usable ones are listed (strategy %s, %d images)",
            used, points, " (per image: %d)" % budget if per_image else "", strategy, processed,
        )
    query_list: dict[str, Any] = {
        "format": QUERY_FORMAT,
        "atool_version": atool.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {"path": str(model_path), "sha256": sha256_file(model_path), "backend": backend.name},
        "classes": classes,
        "strategy": {"name": strategy, "params": dict(strat.params), "seed": int(seed)},
        "budget": budget_block,
        "images": entries,
        "skipped": skipped,
        "stats": {"images_found": len(paths), "images_processed": processed, "candidates": int(scan.offered),
                  "excluded_pixels": int(scan.excluded_pixels)},
    }
    if pseudo is not None:
        query_list["pseudo"] = {"dir": str(pseudo_out), "images": pseudo.images, "points": pseudo.points, "min_confidence": float(pseudo_min_confidence)}

    from atool.core.schemas import validate

    try:
        validate(query_list, "query-list", "the query list atool built")
    except BadInput as exc:  # our own output breaking the contract is a bug, not the user's input
        raise Failure(str(exc)) from None

    written: list[Path] = []
    t4 = time.perf_counter()
    if out is not None:
        written = write_query_list(query_list, out, fmt, format_options)
    timings["write"] += time.perf_counter() - t4
    timings["total"] = time.perf_counter() - t_start
    result = dict(query_list)
    result["timings"] = {k: round(v, 4) for k, v in timings.items()}
    result["written"] = [str(p) for p in written]
    log.info(
        "query: %d images (%d skipped), %d/%d queries%s; decode %.2fs (waited %.2fs), infer %.2fs, select %.2fs, write %.2fs, total %.2fs",
        processed, len(skipped), used, points, f" -> {written[0]}" if written else "",
        timings["decode"], timings["decode_wait"], timings["infer"], timings["select"], timings["write"], timings["total"],
    )
    return result


def _reason(reason: str | None, path: Path) -> str:
    """Decode errors start with the file's path; the list already names the image, so keep the cause."""
    text = reason or "unreadable"
    prefix = f"{path}: "
    return (text[len(prefix):].strip() if text.startswith(prefix) else text) or "unreadable"
