"""Budget sweeps (``atool curve``): mIoU against clicks, per strategy, over seeds.

Every arm starts from the same adapted model, labels the same pool through
the same oracle and retrains with the same recipe; only the choice of pixels
differs. An arm is (strategy, clicks per image, seed) and runs as an
``atool loop`` with ``rounds`` stages, so spending a budget in one round or
in several is the same code path. Two references frame the curve: the start
model (0 clicks; or a ``--source-only`` checkpoint) and the same retraining on
every pool label ("full labels"), which gives the ceiling of the gap.

Layout of OUT:
  curve_config.json          the recipe; a rerun with another recipe is refused
  arms/<strategy>/b<B>_s<S>/  the arm's loop folder and ``result.json``
  arms/full_labels/s<S>/      the ceiling, per seed
  curve.json, curve.md, curve.png

A finished arm (its ``result.json``) is never run again, so an interrupted
sweep resumes where it stopped and a wider sweep (more budgets, strategies or
seeds) only runs what is new.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from atool.core.errors import BadInput, Mismatch
from atool.core.io import atomic_write_json

log = logging.getLogger("atool.curve")


@dataclass
class CurveConfig:
    """What one sweep compares and how every arm retrains."""

    strategies: list = field(default_factory=lambda: ["random", "coverage"], metadata={"help": "Selection strategies to compare (comma-separated on the CLI)."})
    budgets: list = field(default_factory=lambda: [2, 5, 10, 20, 40], metadata={"help": "Clicks per pool image (comma-separated)."})
    seeds: list = field(default_factory=lambda: [0, 1, 2], metadata={"help": "Seeds of selection and retraining (comma-separated)."})
    rounds: int = field(default=1, metadata={"help": "Rounds each budget is spent over (each budget must divide by it)."})
    params: dict = field(default_factory=dict, metadata={"help": "Strategy parameters: {strategy: {key: value}} (YAML only)."})
    retrain: dict = field(default_factory=lambda: {"iters": 200}, metadata={"help": "Train-config keys of the retraining (YAML only), e.g. iters, method."})
    ingest: dict = field(default_factory=dict, metadata={"help": "Ingest options of every arm (YAML only), e.g. expand."})
    full_labels: bool = field(default=True, metadata={"help": "Also retrain on every pool label: the ceiling of the gap."})
    report_budget: int = field(default=0, metadata={"help": "Budget whose per-class tables the report shows; 0: 10 if swept, else the middle one."})

    def validate(self) -> None:
        from atool.active.strategies import STRATEGIES

        for what in ("strategies", "budgets", "seeds"):
            if not isinstance(getattr(self, what), list) or not getattr(self, what):
                raise BadInput(f"curve: {what} must be a non-empty list, got {getattr(self, what)!r}")
        for name in self.strategies:
            STRATEGIES.get(name)  # unknown: one line listing the valid names
            if STRATEGIES.get(name).kind != "point":
                raise BadInput(f"curve: strategy {name!r} proposes regions; the sweep counts clicks, so use a point strategy")
        if len(set(self.strategies)) != len(self.strategies):
            raise BadInput(f"curve: a strategy is listed twice in {self.strategies}")
        for b in self.budgets:
            if isinstance(b, bool) or not isinstance(b, int) or b <= 0:
                raise BadInput(f"curve: budgets must be positive whole numbers of clicks per image, got {b!r}")
        for s in self.seeds:
            if isinstance(s, bool) or not isinstance(s, int) or s < 0:
                raise BadInput(f"curve: seeds must be whole numbers >= 0, got {s!r}")
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or self.rounds < 1:
            raise BadInput(f"curve: rounds must be a positive integer, got {self.rounds!r}")
        uneven = [b for b in self.budgets if b % self.rounds]
        if uneven:
            raise BadInput(f"curve: budgets {uneven} do not split into {self.rounds} equal rounds")
        unknown = sorted(set(self.params) - set(self.strategies))
        if unknown:
            raise BadInput(f"curve: params given for {', '.join(unknown)}, which is not among the strategies {self.strategies}")
        self.budgets = sorted(set(self.budgets))
        if self.report_budget and self.report_budget not in self.budgets:
            raise BadInput(f"curve: report_budget {self.report_budget} is not one of the budgets {self.budgets}")

    def recipe(self) -> dict[str, Any]:
        """What must be equal for two arms to be comparable (and for a resume to reuse them)."""
        return {"rounds": self.rounds, "retrain": self.retrain, "ingest": self.ingest, "params": self.params}


def _oracle_dir(pool: Path, oracle_labels: str | Path | None) -> Path:
    if oracle_labels is not None:
        path = Path(oracle_labels)
    else:
        found = [pool / name for name in ("oracle_labels", "labels") if (pool / name).is_dir()]
        if not found:
            raise BadInput(f"pool {pool} has no oracle labels (labels/ or oracle_labels/); give --oracle-labels DIR with the pool's ground truth")
        path = found[0]
        log.info("curve: oracle labels from %s", path)
    if not path.is_dir() or not any(path.rglob("*.png")):
        raise BadInput(f"oracle labels {path} hold no label PNGs; the sweep needs the pool's ground truth to answer queries")
    return path


def _check_inputs(init: Path, source: Path, pool: Path, val: Path, oracle: Path) -> list[str]:
    """The classes every input agrees on; any disagreement is a one-line Mismatch."""
    from atool.data.adapters.folder import FolderDataset, read_classes
    from atool.models.checkpoint import load_checkpoint

    for what, path in (("--source", source), ("--pool", pool), ("--val", val)):
        if not path.is_dir():
            raise BadInput(f"{what} {path} is not a folder")
    model_classes = list(load_checkpoint(init)["classes"])
    FolderDataset(val, require_labels=True)  # a val set without labels fails here, in one line
    lists = {"the model": model_classes}
    for what, path in (("--source", source), ("--pool", pool), ("--val", val)):
        if (path / "classes.txt").is_file():
            lists[what] = read_classes(path / "classes.txt")
    if (oracle / "classes.txt").is_file():
        lists["--oracle-labels"] = read_classes(oracle / "classes.txt")
    for what, classes in lists.items():
        if classes != model_classes:
            raise Mismatch(f"class lists differ: {what} has {len(classes)} classes {classes[:4]}..., the model {len(model_classes)} {model_classes[:4]}...; "
                           "the sweep needs one class list everywhere")
    return model_classes


def _pool_shares(oracle: Path, classes: list[str]) -> dict[str, float]:
    from atool.data.images import list_images, read_label

    counts = np.zeros(256, np.int64)
    for path in list_images(oracle):  # paths under ``oracle`` already, relative or not
        counts += np.bincount(read_label(path).ravel(), minlength=256)
    total = counts[: len(classes)].sum()
    return {c: round(float(counts[i] / total * 100), 2) if total else 0.0 for i, c in enumerate(classes)}


def _clicks_by_class(arm_dir: Path, classes: list[str]) -> dict[str, int]:
    counts = {c: 0 for c in classes}
    counts["(null)"] = 0
    for answers in sorted(arm_dir.glob("stage_*/answers.json")):
        for image in json.loads(answers.read_text(encoding="utf-8"))["images"]:
            for a in image["answers"]:
                counts[a["label"] if a["label"] is not None else "(null)"] += 1
    return counts


class _Scorer:
    """mIoU and per-class IoU of a model file on the validation set."""

    def __init__(self, val: Path) -> None:
        from atool.data.adapters.folder import FolderDataset

        self.val_set = FolderDataset(val, require_labels=True)

    def __call__(self, model: Path) -> dict[str, Any]:
        from atool.eval.evaluate import backend_predictor, evaluate
        from atool.runtime.backends import load_backend

        metrics = evaluate(backend_predictor(load_backend(model)), self.val_set).as_dict()
        return {"miou": metrics["miou"], "iou": metrics["iou"]}


def _finished(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _recipe_guard(out: Path, recipe: dict[str, Any], inputs: dict[str, str]) -> None:
    path = out / "curve_config.json"
    record = {"recipe": recipe, "inputs": inputs}
    old = _finished(path)
    if old is not None and old != json.loads(json.dumps(record)):
        changed = sorted(k for k in {**old["recipe"], **old["inputs"]} if {**old["recipe"], **old["inputs"]}.get(k) != {**recipe, **inputs}.get(k))
        raise BadInput(f"{out} holds a sweep made with other settings ({', '.join(changed) or 'recipe'}); its arms would not be comparable. Use a new --out")
    atomic_write_json(path, record)


def run_curve(
    *,
    init: str | Path,
    source: str | Path,
    pool: str | Path,
    val: str | Path,
    out: str | Path,
    cfg: CurveConfig,
    oracle_labels: str | Path | None = None,
    source_only: str | Path | None = None,
) -> dict[str, Any]:
    """Run every missing arm, then write curve.json, curve.md and curve.png; returns the summary."""
    from atool.workflows.curve_report import summarise, write_reports
    from atool.workflows.rounds import run_loop
    from atool.workflows.stage import train_stage

    cfg.validate()
    init, source, pool, val, out = Path(init), Path(source), Path(pool), Path(val), Path(out)
    oracle = _oracle_dir(pool, oracle_labels)
    classes = _check_inputs(init, source, pool, val, oracle)
    out.mkdir(parents=True, exist_ok=True)
    _recipe_guard(out, cfg.recipe(), {"init": str(init), "source": str(source), "pool": str(pool), "val": str(val), "oracle": str(oracle)})
    score = _Scorer(val)
    t0 = time.perf_counter()

    start = _finished(out / "start.json") or {"model": str(init), **score(init)}
    atomic_write_json(out / "start.json", start)
    lower = start
    if source_only is not None:
        lower = _finished(out / "source_only.json") or {"model": str(source_only), **score(Path(source_only))}
        atomic_write_json(out / "source_only.json", lower)

    ceiling: list[dict[str, Any]] = []
    if cfg.full_labels:
        for seed in cfg.seeds:
            done = out / "arms" / "full_labels" / f"s{seed}" / "result.json"
            record = _finished(done)
            if record is None:
                t = time.perf_counter()
                model = done.parent / "model.pt"
                train_stage("full labels", {"method": "finetune", **cfg.retrain}, {"seed": seed, "progress": False},
                            source=str(source), target=str(pool), target_labels=str(oracle), init=str(init), out=str(model))
                record = {"seed": seed, "model": str(model), **score(model), "seconds": round(time.perf_counter() - t, 1)}
                atomic_write_json(done, record)
            ceiling.append(record)

    arms: list[dict[str, Any]] = []
    todo = [(s, b, seed) for s in cfg.strategies for b in cfg.budgets for seed in cfg.seeds]
    for i, (strategy, budget, seed) in enumerate(todo, 1):
        arm_dir = out / "arms" / strategy / f"b{budget}_s{seed}"
        record = _finished(arm_dir / "result.json")
        if record is None:
            log.info("[curve %d/%d] %s, %d clicks per image, seed %d", i, len(todo), strategy, budget, seed)
            t = time.perf_counter()
            loop_cfg = {
                "stages": cfg.rounds,
                "query": {"strategy": strategy, "budget": budget // cfg.rounds, "per_image": True, "params": cfg.params.get(strategy, {})},
                "retrain": dict(cfg.retrain),
                "ingest": dict(cfg.ingest),
            }
            summary = run_loop(source=source, target=pool, oracle_labels=oracle, init=init, out=arm_dir, val=None, seed=seed, config=loop_cfg)
            final = Path(summary["final_model"])
            record = {
                "strategy": strategy, "budget": budget, "seed": seed, "model": str(final),
                "clicks": sum(s["queries"] for s in summary["stages"]),
                "labeled_pixels": summary["stages"][-1]["merge"]["total_pixels"],
                "clicks_by_class": _clicks_by_class(arm_dir, classes),
                **score(final),
                "seconds": round(time.perf_counter() - t, 1),
            }
            atomic_write_json(arm_dir / "result.json", record)
        else:
            log.info("[curve %d/%d] %s b%d s%d: done before (mIoU %.2f), not rerun", i, len(todo), strategy, budget, seed, record["miou"])
        arms.append(record)

    summary = summarise(cfg, classes, start, lower, ceiling, arms, _pool_shares(oracle, classes))
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    write_reports(out, summary)
    return summary
