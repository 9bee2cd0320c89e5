"""``run_query``: scan a folder, score every image, choose points under a budget.

``QueryConfig`` says how (strategy, budget, seed, pseudo labels, decoding);
``run_query(model, images, cfg)`` returns the ``atool.query/v1`` list, already
checked against its schema, plus ``timings`` (seconds per stage). Writing the
list in an annotation tool's format is the caller's (``atool.workflows.query``
writes through ``atool.annotate.formats``); writers leave ``timings`` out, so
two runs with the same inputs, model and seed write the same bytes apart from
``created``. Pseudo labels of the unselected candidates (``pseudo_out``) are
written here.

The per-image loop lives in ``atool.active.selection``; the list's layout in
``atool.active.query_list``. Under a total budget a bounded selector keeps the
best candidates, so a run over 100,000 images holds O(budget) points, never maps.

Budget accounting in the list: ``budget.points`` is the run's total point
budget. Under ``per_image`` it is budget x readable images, and the per-image
figure is kept in ``budget.per_image``.

Region strategies (``kind = "region"``, e.g. ``inconsistency_spl``) give
``kind: "region"`` queries with a COCO RLE ``mask`` and a point inside it.
For them ``budget`` counts regions (``budget.points``/``used`` as above), and
the strategy's ``pixel_ratio`` caps their pixels: ``budget.pixel_ratio``,
``budget.pixels`` (the pixel budget: the ratio times the pixels of the
processed images, or of each image with ``per_image``, summed) and
``budget.pixels_used``. Region lists take no pseudo labels.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from atool.active.pseudo import PseudoWriter
from atool.active.query_config import QueryConfig
from atool.active.query_list import QUERY_FORMAT, budget_block, check_stems, make_query_list, point_entries, region_entries
from atool.active.selection import Scan, skip_reason
from atool.active.strategies import make_strategy
from atool.core.errors import BadInput, Failure
from atool.data.images import list_images, relative_id
from atool.runtime.decode import decode_ahead, same_size_batches

log = logging.getLogger(__name__)


def run_query(model: Any, images: str | os.PathLike, cfg: QueryConfig, *, progress: bool = False) -> dict[str, Any]:
    """Choose queries on every image under ``images`` as ``cfg`` says.

    ``model``: a model file (.pt/.pth/.ckpt, .onnx, ...) or an already loaded
    ``atool.runtime.backends.Backend``. Images are decoded by ``cfg.workers``
    threads ahead of inference and run in batches of up to ``cfg.batch_size``
    same-sized images. ``progress``: a bar on a terminal's stderr.
    Unreadable files are listed in ``skipped``; if none is readable, BadInput.

    Returns the query list (schema-valid) plus ``timings`` (seconds per stage).
    """
    t_start = time.perf_counter()
    cfg.validate()
    budget = int(cfg.budget)
    strat = make_strategy(cfg.strategy, cfg.params or None)
    root = Path(images)
    paths = list_images(root)
    if not paths:
        raise BadInput(f"{root} holds no images (png, jpg, jpeg, bmp, tif, tiff)")
    rels = [relative_id(p, root) for p in paths]

    # The backends bring torch (and maybe onnxruntime) with them: import only when a query runs.
    from atool.runtime.backends import Backend, load_backend

    backend = model if isinstance(model, Backend) else load_backend(model, **({"device": cfg.device} if cfg.device else {}))
    model_path = Path(backend.path) if isinstance(model, Backend) else Path(model)
    classes = list(backend.classes)
    if strat.needs_heads and not backend.heads:
        from atool.active.strategies.inconsistency import heads_message

        raise BadInput(f"{heads_message(cfg.strategy)}; {model_path.name} has no head1/head2 outputs")
    if strat.needs_maps:
        missing = [m for m in strat.needs_maps if m not in backend.output_names]
        if missing:
            raise BadInput(f"strategy {cfg.strategy!r} reads the model output(s) {', '.join(missing)}, which {model_path.name} "
                           f"does not have; {strat.needs_maps_hint}".rstrip("; "))
    region = strat.kind == "region"
    if region and cfg.pseudo_out is not None:
        raise BadInput(f"strategy {cfg.strategy!r} writes region queries; pseudo labels (--pseudo-out) come only from point strategies")
    if cfg.pseudo_out is not None:
        if len(classes) > 254:
            raise BadInput(f"the model has {len(classes)} classes; pseudo labels are uint8 PNGs and hold at most 254")
        check_stems(rels)
    if cfg.exclude is not None and not Path(cfg.exclude).is_dir():
        raise BadInput(f"exclude folder {cfg.exclude} does not exist")

    pseudo = PseudoWriter(Path(cfg.pseudo_out), cfg.pseudo_min_confidence, deferred=not cfg.per_image) if cfg.pseudo_out is not None else None
    scan = Scan(strat, budget, cfg.per_image, cfg.seed, rels, pseudo, Path(cfg.exclude) if cfg.exclude is not None else None)
    bar = None
    if progress and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=len(paths), unit="img", desc="query", file=sys.stderr)
    waited = [0.0]
    try:
        decoded = decode_ahead(paths, cfg.workers, prefetch=max(2 * cfg.batch_size, 2 * cfg.workers, 2))
        for batch, bad in same_size_batches(decoded, cfg.batch_size, waited):
            for item in bad:
                scan.timings["decode"] += item.seconds
                scan.skip(item.index, skip_reason(item.reason, item.path))
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
        build = region_entries if region else point_entries
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

    block = budget_block(budget, cfg.per_image, processed, entries, scan.pixel_ratio, scan.pixel_budget)
    used, points = block["used"], block["points"]
    if used < points and not region:
        log.warning(
            "only %d candidate points for a budget of %d%s; all usable ones are listed (strategy %s, %d images)",
            used, points, " (per image: %d)" % budget if cfg.per_image else "", cfg.strategy, processed,
        )
    pseudo_block = None
    if pseudo is not None:
        pseudo_block = {"dir": str(cfg.pseudo_out), "images": pseudo.images, "points": pseudo.points,
                        "min_confidence": float(cfg.pseudo_min_confidence)}
    result = make_query_list(
        model_path=model_path, backend_name=backend.name, classes=classes, strategy=cfg.strategy, params=strat.params,
        seed=cfg.seed, budget=block, entries=entries, skipped=skipped,
        stats={"images_found": len(paths), "images_processed": processed, "candidates": int(scan.offered),
               "excluded_pixels": int(scan.excluded_pixels)},
        pseudo=pseudo_block,
    )
    timings["total"] = time.perf_counter() - t_start
    result["timings"] = {k: round(v, 4) for k, v in timings.items()}
    log.info(
        "query: %d images (%d skipped), %d/%d queries; decode %.2fs (waited %.2fs), infer %.2fs, select %.2fs, write %.2fs, total %.2fs",
        processed, len(skipped), used, points,
        timings["decode"], timings["decode_wait"], timings["infer"], timings["select"], timings["write"], timings["total"],
    )
    return result


def query_list_only(result: dict[str, Any]) -> dict[str, Any]:
    """``run_query``'s result without what is not part of the ``atool.query/v1`` file (``timings``)."""
    return {k: v for k, v in result.items() if k != "timings"}


__all__ = ["QueryConfig", "run_query", "query_list_only", "QUERY_FORMAT"]
