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

Decoding, inference and selection overlap (``atool.active.pipeline``). A run
given ``checkpoint_to`` saves its state every N images and can be resumed
(``atool.active.resume``); under torchrun the images are sharded over the
ranks and rank 0 chooses with the exact global budget (``atool.active.shard``).

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

from atool.active.pipeline import scan_images
from atool.active.pseudo import PseudoWriter
from atool.active.query_config import QueryConfig
from atool.active.query_list import QUERY_FORMAT, budget_block, check_stems, make_query_list, point_entries, region_entries
from atool.active.resume import Checkpoint, run_identity, state_path
from atool.active.selection import Scan
from atool.active.shard import broadcast, gather, join, leave
from atool.active.strategies import make_strategy
from atool.core.errors import BadInput, Failure
from atool.core.io import sha256_file
from atool.data.images import list_images, relative_id

log = logging.getLogger(__name__)

CHECKPOINT_EVERY = 100  # images between checkpoints of a resumable run (each holds O(budget) points, never maps)


def run_query(
    model: Any, images: str | os.PathLike, cfg: QueryConfig, *, progress: bool = False,
    checkpoint_to: str | os.PathLike | None = None, resume: bool = False, checkpoint_every: int = CHECKPOINT_EVERY,
) -> dict[str, Any]:
    """Choose queries on every image under ``images`` as ``cfg`` says.

    ``model``: a model file (.pt/.pth/.ckpt, .onnx, ...) or an already loaded
    ``atool.runtime.backends.Backend``. Images are decoded by ``cfg.workers``
    threads ahead of inference and run in batches of up to ``cfg.batch_size``
    same-sized images, while a selection thread chooses on the previous batch
    (``atool.active.pipeline``). ``progress``: a bar on a terminal's stderr.
    Unreadable files are listed in ``skipped``; if none is readable, BadInput.

    ``checkpoint_to``: the output path; the state is saved next to it every
    ``checkpoint_every`` images (``atool.active.resume``), and ``resume``
    continues from it. Under torchrun (``WORLD_SIZE > 1``) each rank scores
    its shard and rank 0 chooses over all (``atool.active.shard``); every rank
    gets the same result.

    Returns the query list (schema-valid) plus ``timings`` (seconds per stage)
    and ``shard`` ({rank, world}); ``query_list_only`` drops both.
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
    _check_model(strat, cfg, backend, model_path)
    region = strat.kind == "region"
    if region and cfg.pseudo_out is not None:
        raise BadInput(f"strategy {cfg.strategy!r} writes region queries; pseudo labels (--pseudo-out) come only from point strategies")
    if cfg.pseudo_out is not None:
        if len(classes) > 254:
            raise BadInput(f"the model has {len(classes)} classes; pseudo labels are uint8 PNGs and hold at most 254")
        check_stems(rels)
    if cfg.exclude is not None and not Path(cfg.exclude).is_dir():
        raise BadInput(f"exclude folder {cfg.exclude} does not exist")

    shard = join()
    try:
        mine = shard.positions(len(paths))
        ckpt = None
        model_sha = sha256_file(model_path)  # once: the list and the checkpoint identity both carry it
        if checkpoint_to is not None:
            identity = run_identity(model_sha, rels, paths, _identity_config(cfg, strat), shard.rank, shard.world)
            ckpt = Checkpoint(state_path(checkpoint_to, shard.rank, shard.world), identity, checkpoint_every)
        pseudo = None
        if cfg.pseudo_out is not None:
            pseudo = PseudoWriter(Path(cfg.pseudo_out), cfg.pseudo_min_confidence, deferred=not cfg.per_image,
                                  spill_path=ckpt.spill_path if ckpt is not None else None)
        scan = _new_scan(strat, budget, cfg, rels, pseudo)
        start = 0
        if ckpt is not None and resume:
            loaded = ckpt.load()
            if loaded is not None:
                start, state, pseudo_state = loaded
                scan.absorb(state)
                if pseudo is not None and pseudo_state is not None:
                    pseudo.restore(pseudo_state)
        elif ckpt is not None and ckpt.path.is_file():
            log.info("query: %s holds an earlier run's state; starting over (--resume continues it)", ckpt.path)
        result = _scan_and_choose(scan, shard, backend, paths, mine, start, cfg, ckpt, pseudo, root, progress)
        if shard.rank == 0:
            result = _query_list(result, cfg, strat, budget, region, model_path, backend.name, classes, len(paths), model_sha)
        result = broadcast(shard, result)
    finally:
        leave(shard)
    timings = result["timings"]
    timings["total"] = time.perf_counter() - t_start
    result["timings"] = {k: round(v, 4) for k, v in timings.items()}
    result["shard"] = {"rank": shard.rank, "world": shard.world}
    if shard.rank == 0:
        log.info("query: stage seconds: %s", ", ".join(f"{k} {v:.2f}" for k, v in result["timings"].items()))
    return result


def _check_model(strat: Any, cfg: QueryConfig, backend: Any, model_path: Path) -> None:
    if strat.needs_heads and not backend.heads:
        from atool.active.strategies.inconsistency import heads_message

        raise BadInput(f"{heads_message(cfg.strategy)}; {model_path.name} has no selector-head outputs")
    if strat.needs_maps:
        missing = [m for m in strat.needs_maps if m not in backend.output_names]
        if missing:
            raise BadInput(f"strategy {cfg.strategy!r} reads the model output(s) {', '.join(missing)}, which {model_path.name} "
                           f"does not have; {strat.needs_maps_hint}".rstrip("; "))


def _identity_config(cfg: QueryConfig, strat: Any) -> dict[str, Any]:
    """The options that shape the list (not workers, batch size or device, which only change the speed)."""
    return {"strategy": cfg.strategy, "params": strat.params, "budget": cfg.budget, "per_image": cfg.per_image, "seed": cfg.seed,
            "pseudo_out": cfg.pseudo_out, "pseudo_min_confidence": cfg.pseudo_min_confidence, "exclude": cfg.exclude}


def _new_scan(strat: Any, budget: int, cfg: QueryConfig, rels: list[str], pseudo: PseudoWriter | None) -> Scan:
    return Scan(strat, budget, cfg.per_image, cfg.seed, rels, pseudo, Path(cfg.exclude) if cfg.exclude is not None else None)


def _scan_and_choose(
    scan: Scan, shard: Any, backend: Any, paths: list[Path], mine: list[int], start: int, cfg: QueryConfig,
    ckpt: Checkpoint | None, pseudo: PseudoWriter | None, root: Path, progress: bool,
) -> dict[str, Any] | None:
    """Score this rank's images, then (on rank 0) choose over every rank's candidates.

    Returns, on rank 0, {chosen_image, chosen, scan (the merged one), timings};
    None on the other ranks.
    """
    bar = None
    if progress and sys.stderr.isatty() and shard.rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=len(mine), initial=start, unit="img", desc="query", file=sys.stderr)

    def save(done: int) -> None:
        t0 = time.perf_counter()
        ckpt.save(done, scan.state(), pseudo.state() if pseudo is not None else None)
        scan.timings["checkpoint"] = scan.timings.get("checkpoint", 0.0) + time.perf_counter() - t0

    try:
        scan_images(scan, backend, [paths[i] for i in mine], mine, workers=cfg.workers, batch_size=cfg.batch_size, start=start,
                    every=ckpt.every if ckpt is not None else 0, checkpoint=save if ckpt is not None else None,
                    progress=bar.update if bar is not None else None)
        if ckpt is not None and start < len(mine):
            save(len(mine))  # a crash while the list is written redoes no image
        states = gather(shard, scan.state() if shard.enabled else None)
        total = scan
        outcome: Any = None
        if shard.rank == 0:
            if shard.enabled:
                total = _new_scan(scan.strat, scan.budget, cfg, scan.rels, None)
                for state in states:
                    total.absorb(state)
            outcome = _outcome(total, root, len(paths))
        outcome = broadcast(shard, outcome)
        if isinstance(outcome, BaseException):
            raise outcome
        chosen_image, chosen = outcome
        t0 = time.perf_counter()
        if pseudo is not None:
            pseudo.finish(chosen_image, chosen)
        counts = gather(shard, (pseudo.images, pseudo.points) if pseudo is not None else (0, 0))
        scan.timings["write"] += time.perf_counter() - t0
    finally:
        if pseudo is not None:
            pseudo.close()
        if bar is not None:
            bar.close()
    if shard.rank != 0:
        return None
    return {"chosen_image": chosen_image, "chosen": chosen, "scan": total, "timings": scan.timings,
            "pseudo": [sum(c[0] for c in counts), sum(c[1] for c in counts)]}


def _outcome(scan: Scan, root: Path, found: int) -> Any:
    """(chosen image, chosen) over the whole run, or the error that ends it (handed to every rank)."""
    if scan.processed == 0:
        if scan.infer_error is not None:
            return Failure(f"inference failed on every readable image under {root}: {scan.infer_error}")
        skipped = scan.skipped_in_order()
        first = skipped[0]["reason"] if skipped else "?"
        return BadInput(f"none of the {found} images under {root} could be read (first: {first})")
    return scan.chosen()


def _query_list(
    run: dict[str, Any], cfg: QueryConfig, strat: Any, budget: int, region: bool, model_path: Path, backend_name: str,
    classes: list[str], found: int, model_sha: str,
) -> dict[str, Any]:
    scan, timings = run["scan"], run["timings"]
    t0 = time.perf_counter()
    build = region_entries if region else point_entries
    entries = build(scan.rels, scan.sizes, run["chosen_image"], run["chosen"], classes)
    timings["select"] += time.perf_counter() - t0
    block = budget_block(budget, cfg.per_image, scan.processed, entries, scan.pixel_ratio, scan.pixel_budget)
    used, points = block["used"], block["points"]
    if used < points and not region:
        log.warning(
            "only %d candidate points for a budget of %d%s; all usable ones are listed (strategy %s, %d images)",
            used, points, " (per image: %d)" % budget if cfg.per_image else "", cfg.strategy, scan.processed,
        )
    pseudo_block = None
    if cfg.pseudo_out is not None:
        pseudo_block = {"dir": str(cfg.pseudo_out), "images": run["pseudo"][0], "points": run["pseudo"][1],
                        "min_confidence": float(cfg.pseudo_min_confidence)}
    result = make_query_list(
        model_path=model_path, backend_name=backend_name, classes=classes, strategy=cfg.strategy, params=strat.params,
        seed=cfg.seed, budget=block, entries=entries, skipped=scan.skipped_in_order(),
        stats={"images_found": found, "images_processed": scan.processed, "candidates": int(scan.offered),
               "excluded_pixels": int(scan.excluded_pixels)},
        pseudo=pseudo_block, model_sha256=model_sha,
    )
    result["timings"] = timings
    log.info("query: %d images (%d skipped), %d/%d queries", scan.processed, len(scan.skipped), used, points)
    return result


def query_list_only(result: dict[str, Any]) -> dict[str, Any]:
    """``run_query``'s result without what is not part of the ``atool.query/v1`` file (``timings``, ``shard``)."""
    return {k: v for k, v in result.items() if k not in ("timings", "shard")}


__all__ = ["QueryConfig", "run_query", "query_list_only", "QUERY_FORMAT", "CHECKPOINT_EVERY", "state_path"]
