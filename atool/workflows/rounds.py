"""Active-learning stages (``atool loop``): LabOR's three rounds, or any strategy's.

Each stage: (selector) -> query -> oracle -> ingest -> merge labels -> retrain.

* The selector (``atool train selector``) is trained only when the strategy
  reads selector heads (``inconsistency_*``); it starts from the stage's
  current model, as LabOR copies the adapted model into its selector.
* The query excludes every pixel labeled in an earlier stage, so labels grow
  without duplicates (the merge counts any it still finds).
* Retraining (``finetune``: source CE + CE on all labeled target pixels,
  LabOR eq. 6) starts from the current model and reads the accumulated labels.

Resume (crash safety): a stage that finished (``stage_k/done.json``) is not
redone when the same command runs again, so an interrupted loop (even by
kill -9) resumes at the stage it was in. A half-done stage is redone: its
query, answers and ingest are deterministic and rewritten, and its training
runs resume from their last checkpoint (``resume``; set ``checkpoint_every``
in ``train:`` to checkpoint within a run). The labels a stage trains on are
``stage_k/accumulated`` (the previous stage's plus this stage's answers),
built in a temp folder and renamed into place, so a redone stage sees
exactly what an uninterrupted one saw; ``OUT/labels`` is a copy of the
latest finished stage's.
Each stage calls the same library functions as its CLI command.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from atool.active.query import QueryConfig
from atool.core.config import build_config, config_dict, setting
from atool.core.errors import BadInput
from atool.core.io import atomic_write_json, remove_stale_temps, replace_dir, temp_prefix
from atool.core.train_config import TrainConfig

log = logging.getLogger("atool.loop")

# Keys of ingest_answers that the loop sets itself.
_INGEST_OWN = ("pseudo_dir", "images_root", "classes")


@dataclass
class LoopConfig:
    """``atool loop --config`` keys; every section is laid over its default key by key."""

    stages: int = setting(3, "Active-learning stages (LabOR: 3).")
    query: QueryConfig = setting(
        help="QueryConfig keys of every stage's query (seed and exclude are the loop's).",
        default_factory=lambda: QueryConfig(strategy="stratified", budget=10, per_image=True),
    )
    selector: dict[str, Any] = setting(help="TrainConfig keys of the selector runs.", default_factory=lambda: {"iters": 200}, keys=TrainConfig)
    retrain: dict[str, Any] = setting(help="TrainConfig keys of the retraining runs.", default_factory=lambda: {"iters": 200}, keys=TrainConfig)
    train: dict[str, Any] = setting(help="TrainConfig keys shared by the selector and retraining runs.", default_factory=dict, keys=TrainConfig)
    ingest: dict[str, Any] = setting(help="Options of every stage's ingest (atool.annotate.ingest.ingest_answers), e.g. expand.", default_factory=dict)

    def validate(self) -> None:
        if isinstance(self.stages, bool) or self.stages < 1:
            raise BadInput(f"loop config: stages must be a positive integer, got {self.stages!r}")
        q = self.query
        if q.exclude is not None or q.pseudo_out is not None or q.seed != 0:
            raise BadInput("loop config: query.seed, query.exclude and query.pseudo_out are the loop's "
                           "(stage k queries with --seed + k and excludes the labels of earlier stages)")
        for section, method in (("selector", "selector"), ("retrain", self.retrain_method)):
            try:
                build_config(TrainConfig, {**self.train, **getattr(self, section)}, {"method": method})
            except BadInput as exc:
                raise BadInput(f"loop config, train + {section}: {exc}") from None
        if self.ingest:
            import inspect

            from atool.annotate.ingest import ingest_answers

            options = [p.name for p in inspect.signature(ingest_answers).parameters.values()
                       if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in _INGEST_OWN]
            unknown = sorted(set(self.ingest) - set(options))
            if unknown:
                raise BadInput(f"unknown loop config key(s) {', '.join('ingest.' + k for k in unknown)}; valid in ingest: {', '.join(options)}")


    @property
    def retrain_method(self) -> str:
        """The retraining method: ``retrain.method`` or LabOR's ``finetune`` (eq. 6)."""
        return self.retrain.get("method", "finetune")


def loop_config(config: LoopConfig | Mapping[str, Any] | None) -> LoopConfig:
    """A LoopConfig from a YAML mapping laid over the defaults (or the config itself); bad keys are BadInput."""
    if isinstance(config, LoopConfig):
        return config
    return build_config(LoopConfig, config or {}, label="loop config")


def run_loop(
    *,
    source: str | Path,
    target: str | Path,
    oracle_labels: str | Path,
    init: str | Path,
    out: str | Path,
    val: str | Path | None = None,
    seed: int = 0,
    config: LoopConfig | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the stages; returns (and writes to OUT/loop.json) what each stage labeled and scored.

    ``config``: a LoopConfig, or a mapping of its keys laid over the defaults.
    """
    from atool.active.strategies import STRATEGIES
    from atool.data.adapters.folder import FolderDataset
    from atool.annotate.accumulate import merge_stage_labels
    from atool.runtime.backends import load_backend
    from atool.annotate.ingest import ingest_answers
    from atool.annotate.oracle import answer_queries
    from atool.workflows.query import query_command, query_to_file
    from atool.workflows.stage import train_stage
    from atool.models.checkpoint import load_checkpoint
    from atool.eval.evaluate import backend_predictor, evaluate

    cfg = loop_config(config)
    out, target = Path(out), Path(target)
    for what, path in (("--source", source), ("--target", target), ("--oracle-labels", oracle_labels)):
        if not Path(path).is_dir():
            raise BadInput(f"{what} {path} is not a folder")
    load_checkpoint(init)  # a corrupt or missing --init fails here, before any work
    _claim_run_folder(out, {"config": config_dict(cfg), "seed": seed, "source": str(source), "target": str(target),
                            "oracle_labels": str(oracle_labels), "init": str(init), "val": str(val) if val else None})
    q = cfg.query
    shared = {"seed": seed, "progress": False}
    accumulated = out / "labels"
    current = Path(init)
    val_set = FolderDataset(val, require_labels=True) if val else None
    stages: list[dict[str, Any]] = []
    summary_path = out / "loop.json"

    def score(model_path: Path) -> float | None:
        if val_set is None:
            return None
        return round(evaluate(backend_predictor(load_backend(model_path)), val_set).miou * 100, 2)

    start = {"stage": 0, "model": str(current), "miou": score(current)}
    previous: Path | None = None  # the labels accumulated up to the last stage (its stage_k/accumulated)
    for k in range(1, cfg.stages + 1):
        stage_dir = out / f"stage_{k}"
        done_file = stage_dir / "done.json"
        stage_acc = stage_dir / "accumulated"
        if done_file.is_file():
            record = json.loads(done_file.read_text(encoding="utf-8"))
            log.info("[stage %d] already done, skipped (%s)", k, done_file)
            stages.append(record)
            current = Path(record["model"])
            # A run folder from before per-stage snapshots only has OUT/labels.
            previous = stage_acc if stage_acc.is_dir() else (accumulated if accumulated.is_dir() else previous)
            continue
        t0 = time.perf_counter()
        query_model = current
        if STRATEGIES.get(q.strategy).needs_heads:
            query_model = stage_dir / "selector.pt"
            train_stage(f"stage {k} selector", cfg.train, shared, cfg.selector, method="selector", source=source, target=target,
                        init=current, out=query_model, resume=True)
        if "gap" in STRATEGIES.get(q.strategy).needs_maps:
            # Prototypes describe one model's features: the model that queries needs its own, every stage.
            from atool.models.prototypes import compute_prototypes, save_with_prototypes

            protos = compute_prototypes(query_model, source)
            query_model = save_with_prototypes(query_model, stage_dir / "query_model.pt", protos)
            log.info("[stage %d] atool prototypes --checkpoint %s --source %s --out %s", k, current, source, query_model)
        qfile, answers, ingested = stage_dir / "queries.json", stage_dir / "answers.json", stage_dir / "ingest"
        exclude = previous / "labels" if previous is not None and (previous / "labels").is_dir() else None
        stage_query = dataclasses.replace(q, seed=seed + k, exclude=str(exclude) if exclude else None)
        log.info("[stage %d] %s", k, query_command(query_model, target / "images", stage_query, qfile))
        qlist = query_to_file(query_model, target / "images", stage_query, qfile)
        answer_queries(qfile, oracle_labels, answers)
        ingest_answers(answers, ingested, images_root=target / "images", **cfg.ingest)
        merged = _merge_into_snapshot(previous, ingested, stage_acc, merge_stage_labels)
        previous = stage_acc
        model_path = stage_dir / "model.pt"
        if merged.total_pixels:
            train_stage(f"stage {k} retrain", cfg.train, shared, {"method": cfg.retrain_method, **cfg.retrain}, source=source, target=target,
                        target_labels=stage_acc, init=current, out=model_path, resume=True)
            current = model_path
        else:
            log.warning("[stage %d] no target pixel is labeled yet: nothing to retrain on, the model stays %s", k, current)
            model_path = current
        record = {
            "stage": k,
            "strategy": q.strategy,
            "queries": int(qlist["budget"]["used"]),
            "query_seconds": round(float(qlist["timings"]["total"]), 3),
            "merge": asdict(merged),
            "model": str(model_path),
            "miou": score(model_path),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        atomic_write_json(done_file, record)
        stages.append(record)
        _publish(stage_acc, accumulated)
        log.info("[stage %d] %d queries, %d new labeled pixels (%d in all, %d duplicates), mIoU %s",
                 k, record["queries"], merged.new_pixels, merged.total_pixels, merged.duplicate_pixels, record["miou"])
    if previous is not None and previous != accumulated:
        _publish(previous, accumulated)  # again, in case a kill came between a stage's done.json and its copy
    summary = {"config": config_dict(cfg), "seed": seed, "start": start, "stages": stages, "final_model": str(current)}
    atomic_write_json(summary_path, summary)
    return summary


def _claim_run_folder(out: Path, settings: dict[str, Any]) -> None:
    """Record the run's settings in OUT/loop.settings.json, or check them against an earlier run's.

    Finished stages are skipped on a rerun, so a rerun with other settings would silently mix two
    runs: it is refused, naming the first setting that differs.
    """
    from atool.core.errors import Mismatch

    path = out / "loop.settings.json"
    settings = json.loads(json.dumps(settings))  # tuples -> lists, as they read back
    if path.is_file():
        before = json.loads(path.read_text(encoding="utf-8"))
        if before != settings:
            key = _first_difference(before, settings)
            raise Mismatch(f"{out} holds a loop run with other settings ({key}); rerun it with the same options "
                           "to resume it, or give another --out")
        return
    atomic_write_json(path, settings)


def _first_difference(a: Any, b: Any, where: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{where}.{k}" if where else k)
    return f"{where}: {a!r} before, {b!r} now"


def _merge_into_snapshot(previous: Path | None, ingested: Path, dst: Path, merge: Any) -> Any:
    """``dst`` = a copy of ``previous`` (or nothing) merged with the ingest folder ``ingested``.

    Built in a temp folder beside ``dst`` and renamed into place, so ``previous`` is never touched
    and a crash leaves no half-merged folder under ``dst``. Returns ``merge``'s report.
    """
    remove_stale_temps(dst.parent)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(dst.name), dir=dst.parent))
    try:
        if previous is not None and previous.is_dir():
            shutil.copytree(previous, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*"))
        report = merge(tmp, ingested)
        replace_dir(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def _publish(snapshot: Path, dst: Path) -> None:
    """Replace ``dst`` (OUT/labels) with a copy of a finished stage's ``snapshot``."""
    if not snapshot.is_dir():
        return
    remove_stale_temps(dst.parent)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(dst.name), dir=dst.parent))
    try:
        shutil.copytree(snapshot, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*"))
        replace_dir(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
