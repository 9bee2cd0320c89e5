"""Active-learning stages (``atool loop``): LabOR's three rounds, or any strategy's.

Each stage: (selector) -> query -> oracle -> ingest -> merge labels -> retrain.

* The selector (``atool train selector``) is trained only when the strategy
  reads selector heads (``inconsistency_*``); it starts from the stage's
  current model, as LabOR copies the adapted model into its selector.
* The query excludes every pixel labeled in an earlier stage, so labels grow
  without duplicates (the merge counts any it still finds).
* Retraining (``finetune``: source CE + CE on all labeled target pixels,
  LabOR eq. 6) starts from the current model and reads the accumulated labels.

A stage that finished (``stage_k/done.json``) is not redone when the same
command runs again, so an interrupted loop resumes at the stage it was in.
Each stage calls the same library functions as its CLI command.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from atool.core.config import TrainConfig, build_config
from atool.core.errors import BadInput
from atool.core.io import atomic_write_json

log = logging.getLogger("atool.loop")

DEFAULTS: dict[str, Any] = {
    "stages": 3,
    "query": {"strategy": "inconsistency_ppl", "budget": 10, "per_image": True, "params": {}},
    "selector": {"iters": 200},
    "retrain": {"iters": 200},
    "train": {},  # shared by selector and retrain runs
}


def loop_config(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """DEFAULTS with ``overrides`` laid over them; unknown keys are BadInput."""
    cfg = copy.deepcopy(DEFAULTS)
    for key, value in (overrides or {}).items():
        if key not in cfg:
            raise BadInput(f"loop config: unknown key {key!r}; valid: {', '.join(cfg)}")
        if isinstance(cfg[key], dict):
            if not isinstance(value, dict):
                raise BadInput(f"loop config: {key!r} must be a mapping")
            if key == "query":
                unknown = sorted(set(value) - set(cfg["query"]))
                if unknown:
                    raise BadInput(f"loop config: unknown query key(s) {', '.join(unknown)}; valid: {', '.join(cfg['query'])}")
            cfg[key].update(value)
        else:
            cfg[key] = value
    stages = cfg["stages"]
    if isinstance(stages, bool) or not isinstance(stages, int) or stages < 1:
        raise BadInput(f"loop config: stages must be a positive integer, got {stages!r}")
    budget = cfg["query"]["budget"]
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
        raise BadInput(f"loop config: query.budget must be 0 or more points, got {budget!r}")
    return cfg


def _train(section: dict, shared: dict, **paths: Any) -> dict:
    from atool.train.trainer import train

    cfg: TrainConfig = build_config(TrainConfig, {**shared, **section}, paths)
    log.info("[%s] atool train %s %s", Path(cfg.out).stem, cfg.method,
             " ".join(f"--{k.replace('_', '-')} {v}" for k, v in paths.items() if k != "method" and v is not None))
    return train(cfg)


def run_loop(
    *,
    source: str | Path,
    target: str | Path,
    oracle_labels: str | Path,
    init: str | Path,
    out: str | Path,
    val: str | Path | None = None,
    seed: int = 0,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the stages; returns (and writes to OUT/loop.json) what each stage labeled and scored."""
    from atool.active.strategies import STRATEGIES
    from atool.data.adapters.folder import FolderDataset
    from atool.annotate.accumulate import merge_stage_labels
    from atool.runtime.backends import load_backend
    from atool.annotate.ingest import ingest_answers
    from atool.annotate.oracle import answer_queries
    from atool.active.query import run_query
    from atool.models.checkpoint import load_checkpoint
    from atool.eval.evaluate import backend_predictor, evaluate

    cfg = loop_config(config)
    out, target = Path(out), Path(target)
    for what, path in (("--source", source), ("--target", target), ("--oracle-labels", oracle_labels)):
        if not Path(path).is_dir():
            raise BadInput(f"{what} {path} is not a folder")
    load_checkpoint(init)  # a corrupt or missing --init fails here, before any work
    q = cfg["query"]
    shared = dict(cfg["train"], seed=seed, progress=False)
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
    for k in range(1, cfg["stages"] + 1):
        stage_dir = out / f"stage_{k}"
        done_file = stage_dir / "done.json"
        if done_file.is_file():
            record = json.loads(done_file.read_text(encoding="utf-8"))
            log.info("[stage %d] already done, skipped (%s)", k, done_file)
            stages.append(record)
            current = Path(record["model"])
            continue
        t0 = time.perf_counter()
        query_model = current
        if STRATEGIES.get(q["strategy"]).needs_heads:
            query_model = stage_dir / "selector.pt"
            _train(cfg["selector"], shared, method="selector", source=str(source), target=str(target),
                   init=str(current), out=str(query_model))
        qfile, answers, ingested = stage_dir / "queries.json", stage_dir / "answers.json", stage_dir / "ingest"
        exclude = accumulated / "labels" if (accumulated / "labels").is_dir() else None
        log.info("[stage %d] atool query --model %s --images %s --budget %d%s --strategy %s%s --out %s", k, query_model,
                 target / "images", q["budget"], " --per-image" if q["per_image"] else "", q["strategy"],
                 f" --exclude {exclude}" if exclude else "", qfile)
        qlist = run_query(query_model, target / "images", q["budget"], per_image=q["per_image"], strategy=q["strategy"],
                          strategy_params=q["params"] or None, seed=seed + k, out=qfile, exclude=exclude)
        answer_queries(qfile, oracle_labels, answers)
        ingest_answers(answers, ingested, images_root=target / "images")
        merged = merge_stage_labels(accumulated, ingested)
        model_path = stage_dir / "model.pt"
        if merged.total_pixels:
            _train(cfg["retrain"], shared, method="finetune", source=str(source), target=str(target),
                   target_labels=str(accumulated), init=str(current), out=str(model_path))
            current = model_path
        else:
            log.warning("[stage %d] no target pixel is labeled yet: nothing to retrain on, the model stays %s", k, current)
            model_path = current
        record = {
            "stage": k,
            "strategy": q["strategy"],
            "queries": int(qlist["budget"]["used"]),
            "query_seconds": round(float(qlist["timings"]["total"]), 3),
            "merge": asdict(merged),
            "model": str(model_path),
            "miou": score(model_path),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        atomic_write_json(done_file, record)
        stages.append(record)
        log.info("[stage %d] %d queries, %d new labeled pixels (%d in all, %d duplicates), mIoU %s",
                 k, record["queries"], merged.new_pixels, merged.total_pixels, merged.duplicate_pixels, record["miou"])
    summary = {"config": cfg, "seed": seed, "start": start, "stages": stages, "final_model": str(current)}
    atomic_write_json(summary_path, summary)
    return summary
