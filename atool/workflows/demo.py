"""The whole active-adaptation loop on the built-in synthetic pair (``atool demo``).

synth -> source -> advent (G1) -> export ONNX -> query (active and random, same
clicks) -> oracle -> ingest -> adapt (G2) for each selection -> eval, plus the
target-supervised upper bound. Each stage calls the same library function its
CLI command calls; the equivalent command is logged so a newcomer can rerun
any stage alone.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from atool.core.config import TrainConfig, build_config
from atool.core.errors import BadInput
from atool.core.io import atomic_write_json, atomic_write_text

log = logging.getLogger("atool.workflows.demo")


def default_demo_config() -> dict[str, Any]:
    text = resources.files("atool.workflows").joinpath("demo.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def merge_demo_config(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The packaged demo config with ``overrides`` laid over it, section by section.

    A user's YAML names only what it changes. Unknown sections or keys are
    rejected (a typo must not silently fall back to the default); training
    sections are checked in full later by ``build_config``.
    """
    cfg = default_demo_config()
    if overrides is None:
        return cfg
    if not isinstance(overrides, dict):
        raise BadInput("the demo config must be a YAML mapping of sections (data, train, source, advent, adapt, supervised, query)")
    train_keys = set(TrainConfig.__dataclass_fields__)
    for section, values in overrides.items():
        if section not in cfg:
            raise BadInput(f"demo config: unknown section {section!r}; valid: {', '.join(cfg)}")
        if not isinstance(values, dict):
            raise BadInput(f"demo config: section {section!r} must be a mapping, got {type(values).__name__}")
        valid = train_keys if section in _TRAIN_SECTIONS else set(cfg[section])
        unknown = sorted(set(values) - valid)
        if unknown:
            raise BadInput(f"demo config: unknown key(s) {', '.join(unknown)} in section {section!r}")
        cfg[section].update(values)
    d, q = cfg["data"], cfg["query"]
    for key in ("n_source", "n_target", "n_val"):
        if not isinstance(d[key], int) or d[key] < 1:
            raise BadInput(f"demo config: data.{key} must be a positive integer, got {d[key]!r}")
    size = d["size"]
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise BadInput(f"demo config: data.size must be [width, height], got {size!r}")
    if not (isinstance(q["clicks_per_image"], int) and q["clicks_per_image"] >= 1):
        raise BadInput(f"demo config: query.clicks_per_image must be a positive integer, got {q['clicks_per_image']!r}")
    return cfg


_TRAIN_SECTIONS = ("train", "source", "advent", "adapt", "supervised")


def _train(name: str, common: dict, specific: dict, **paths: Any) -> dict:
    cfg = build_config(TrainConfig, {**common, **specific}, paths)
    log.info("[%s] atool train %s %s", name, cfg.method, " ".join(f"--{k.replace('_', '-')} {v}" for k, v in paths.items() if k != "method" and v is not None))
    from atool.train.trainer import train

    return train(cfg)


def run_demo(out: str | Path, seed: int = 0, config: dict[str, Any] | None = None, keep_data: bool = True) -> dict[str, Any]:
    from atool.data.adapters.folder import FolderDataset
    from atool.data.synth import write_synth_pair
    from atool.runtime.backends import load_backend
    from atool.annotate.ingest import ingest_answers
    from atool.annotate.oracle import answer_queries
    from atool.active.query import run_query
    from atool.workflows.export import export_checked
    from atool.eval.evaluate import backend_predictor, evaluate

    cfg = merge_demo_config(copy.deepcopy(config) if config is not None else None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}

    def stage(name: str):
        timings[name] = time.perf_counter()

    def done(name: str):
        timings[name] = round(time.perf_counter() - timings[name], 1)

    data = out / "data"
    stage("synth")
    d = cfg["data"]
    log.info("[synth] atool data synth --out %s --n-source %d --n-target %d --n-val %d --size %dx%d --seed %d", data, d["n_source"], d["n_target"], d["n_val"], *d["size"], seed)
    write_synth_pair(data, n_source=d["n_source"], n_target=d["n_target"], n_val=d["n_val"], size=tuple(d["size"]), seed=seed)
    done("synth")
    source, pool, val = data / "source", data / "target_train", data / "target_val"
    common = dict(cfg["train"], seed=seed, progress=False)

    stage("source")
    _train("source", common, cfg["source"], method="source", source=str(source), out=str(out / "source.pt"))
    done("source")
    stage("advent")
    _train("advent", common, cfg["advent"], method="advent", source=str(source), target=str(pool), init=str(out / "source.pt"), out=str(out / "advent.pt"))
    done("advent")

    stage("export")
    onnx_path = out / "advent.onnx"
    log.info("[export] atool export --checkpoint %s --out %s", out / "advent.pt", onnx_path)
    export_checked(out / "advent.pt", onnx_path)
    done("export")

    q = cfg["query"]
    n_pool = len(FolderDataset(pool))
    budget = int(q["clicks_per_image"]) * n_pool
    arms = {"active": q["strategy"], "random": "random"}
    clicks: dict[str, int] = {}
    for arm, strategy in arms.items():
        stage(f"query_{arm}")
        qfile, pseudo = out / f"queries_{arm}.json", out / f"pseudo_{arm}"
        log.info("[query] atool query --model %s --images %s --budget %d --strategy %s --seed %d --out %s --pseudo-out %s", onnx_path, pool / "images", budget, strategy, seed, qfile, pseudo)
        qlist = run_query(onnx_path, pool / "images", budget, strategy=strategy, seed=seed, out=qfile, pseudo_out=pseudo, pseudo_min_confidence=q.get("pseudo_min_confidence", 0.0))
        clicks[arm] = int(qlist["budget"]["used"])
        answers = out / f"answers_{arm}.json"
        log.info("[oracle] atool oracle --queries %s --labels %s --out %s", qfile, pool / "oracle_labels", answers)
        answer_queries(qfile, pool / "oracle_labels", answers)
        sparse = out / f"labels_{arm}"
        log.info("[ingest] atool ingest %s --pseudo %s --out %s", answers, pseudo, sparse)
        ingest_answers(answers, sparse, pseudo_dir=pseudo, images_root=pool / "images")
        done(f"query_{arm}")
        stage(f"adapt_{arm}")
        _train(f"adapt+{arm}", common, cfg["adapt"], method="adapt", source=str(source), target=str(pool), target_labels=str(sparse), init=str(out / "advent.pt"), out=str(out / f"adapt_{arm}.pt"))
        done(f"adapt_{arm}")

    stage("supervised")
    _train("supervised", common, cfg["supervised"], method="source", source=str(pool), source_labels=str(pool / "oracle_labels"), out=str(out / "supervised.pt"))
    done("supervised")

    stage("eval")
    val_set = FolderDataset(val, require_labels=True)
    rows = [
        ("source-only", out / "source.pt", 0),
        ("UDA (ADVENT)", out / "advent.pt", 0),
        ("adapt+random", out / "adapt_random.pt", clicks["random"]),
        ("adapt+active", out / "adapt_active.pt", clicks["active"]),
        ("target-supervised", out / "supervised.pt", None),
    ]
    results = []
    for name, ckpt, n_clicks in rows:
        metrics = evaluate(backend_predictor(load_backend(ckpt)), val_set)
        results.append({"model": name, "checkpoint": str(ckpt), "miou": round(metrics.miou * 100, 2), "clicks": n_clicks, "iou": metrics.as_dict()["iou"]})
    done("eval")
    summary = {
        "seed": seed,
        "budget_points": budget,
        "target_images": n_pool,
        "results": results,
        "seconds": round(time.perf_counter() - t_start, 1),
        "stage_seconds": timings,
        "config": cfg,
    }
    atomic_write_json(out / "demo_results.json", summary)
    table = format_table(summary)
    atomic_write_text(out / "demo_results.txt", table + "\n")
    return summary


def format_table(summary: dict[str, Any]) -> str:
    lines = [f"{'model':<20} {'mIoU':>6} {'clicks':>8}", "-" * 36]
    for r in summary["results"]:
        c = r["clicks"]
        clicks = "all" if c is None else str(c)
        lines.append(f"{r['model']:<20} {r['miou']:6.2f} {clicks:>8}")
    lines.append(f"(target_val, {summary['target_images']} pool images, seed {summary['seed']}, {summary['seconds']:.0f}s)")
    return "\n".join(lines)
