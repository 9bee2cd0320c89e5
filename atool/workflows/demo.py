"""The whole active-adaptation loop on the built-in synthetic pair (``atool demo``).

synth -> source -> advent (G1) -> export ONNX -> query (active and random, same
clicks) -> oracle -> ingest -> adapt (G2) for each selection -> eval, plus the
target-supervised upper bound. Each stage calls the same library function its
CLI command calls; the equivalent command is logged so a newcomer can rerun
any stage alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from atool.core.config import build_config, config_dict, setting
from atool.core.errors import BadInput
from atool.core.io import atomic_write_json, atomic_write_text
from atool.core.train_config import TrainConfig

log = logging.getLogger("atool.workflows.demo")


@dataclass
class DemoData:
    """The synthetic pair (``atool data synth``)."""

    n_source: int = setting(help="Labeled source ('game') images.")
    n_target: int = setting(help="Target pool images (their labels answer the queries).")
    n_val: int = setting(help="Labeled target validation images.")
    size: tuple[int, int] = setting(help="Image size [width, height].")


@dataclass
class DemoQuery:
    """Both query arms (active and random) spend the same clicks."""

    clicks_per_image: int = setting(help="Total budget = clicks_per_image x pool images, shared by score.")
    strategy: str = setting(help="Strategy of the active arm.")
    pseudo_min_confidence: float = setting(0.0, "Pseudo labels of unselected candidates kept at this confidence or above.")


def _train_section(help: str) -> Any:
    return setting(help=help, default_factory=dict, keys=TrainConfig)


@dataclass
class DemoConfig:
    """``atool demo --config`` keys. Defaults: the packaged atool/workflows/demo.yaml; a user's YAML names what it changes."""

    data: DemoData = setting(help="The synthetic domain pair.")
    query: DemoQuery = setting(help="The query arms.")
    train: dict[str, Any] = _train_section("TrainConfig keys shared by every training run.")
    source: dict[str, Any] = _train_section("TrainConfig keys of the source-only run.")
    advent: dict[str, Any] = _train_section("TrainConfig keys of the ADVENT (G1) run.")
    retrain: dict[str, Any] = _train_section("TrainConfig keys of the retraining on the clicks, one per arm (method: finetune unless set).")
    supervised: dict[str, Any] = _train_section("TrainConfig keys of the target-supervised upper bound.")

    def validate(self) -> None:
        d = self.data
        for key in ("n_source", "n_target", "n_val"):
            if getattr(d, key) < 1:
                raise BadInput(f"demo config: data.{key} must be a positive integer, got {getattr(d, key)!r}")
        if min(d.size) < 1:
            raise BadInput(f"demo config: data.size must be [width, height] of positive integers, got {list(d.size)!r}")
        if self.query.clicks_per_image < 1:
            raise BadInput(f"demo config: query.clicks_per_image must be a positive integer, got {self.query.clicks_per_image!r}")
        for section, method in (("source", "source"), ("advent", "advent"), ("retrain", self.retrain.get("method", "finetune")), ("supervised", "source")):
            try:
                build_config(TrainConfig, {**self.train, **getattr(self, section)}, {"method": method})
            except BadInput as exc:
                raise BadInput(f"demo config, train + {section}: {exc}") from None


def default_demo_config() -> dict[str, Any]:
    """The packaged atool/workflows/demo.yaml, as YAML data."""
    text = resources.files("atool.workflows").joinpath("demo.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def demo_config(overrides: DemoConfig | Mapping[str, Any] | None = None) -> DemoConfig:
    """The packaged demo config with ``overrides`` (YAML data) laid over it, section by section.

    Unknown sections or keys are rejected (a typo must not silently fall back to the default).
    """
    if isinstance(overrides, DemoConfig):
        return overrides
    base = build_config(DemoConfig, default_demo_config(), label="packaged demo config")
    if overrides is not None and not isinstance(overrides, Mapping):
        raise BadInput("the demo config must be a YAML mapping of sections (data, query, train, source, advent, retrain, supervised)")
    return build_config(DemoConfig, overrides or {}, base=base, label="demo config")


def run_demo(out: str | Path, seed: int = 0, config: DemoConfig | Mapping[str, Any] | None = None, keep_data: bool = True) -> dict[str, Any]:
    """Run every stage into ``out``; ``config``: a DemoConfig or YAML data laid over the packaged defaults."""
    from atool.data.adapters.folder import FolderDataset
    from atool.data.synth import write_synth_pair
    from atool.runtime.backends import load_backend
    from atool.workflows.rounds import run_loop
    from atool.workflows.stage import train_stage
    from atool.workflows.export import export_checked
    from atool.eval.evaluate import backend_predictor, evaluate

    cfg = demo_config(config)
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
    d = cfg.data
    log.info("[synth] atool data synth --out %s --n-source %d --n-target %d --n-val %d --size %dx%d --seed %d", data, d.n_source, d.n_target, d.n_val, *d.size, seed)
    write_synth_pair(data, n_source=d.n_source, n_target=d.n_target, n_val=d.n_val, size=tuple(d.size), seed=seed)
    done("synth")
    source, pool, val = data / "source", data / "target_train", data / "target_val"
    common = {"seed": seed, "progress": False}

    stage("source")
    train_stage("source", cfg.train, common, cfg.source, method="source", source=source, out=out / "source.pt")
    done("source")
    stage("advent")
    train_stage("advent", cfg.train, common, cfg.advent, method="advent", source=source, target=pool, init=out / "source.pt", out=out / "advent.pt")
    done("advent")

    stage("export")
    onnx_path = out / "advent.onnx"
    log.info("[export] atool export --checkpoint %s --out %s", out / "advent.pt", onnx_path)
    export_checked(out / "advent.pt", onnx_path)
    done("export")

    q = cfg.query
    n_pool = len(FolderDataset(pool))
    arms = {"active": q.strategy, "random": "random"}
    clicks: dict[str, int] = {}
    for arm, strategy in arms.items():
        stage(f"arm_{arm}")
        loop = run_loop(
            source=source, target=pool, oracle_labels=pool / "oracle_labels", init=out / "advent.pt", out=out / f"arm_{arm}",
            seed=seed, config={
                "stages": 1,
                "query": {"strategy": strategy, "budget": q.clicks_per_image, "per_image": True},
                "train": cfg.train,
                "retrain": cfg.retrain,
            },
        )
        clicks[arm] = sum(s["queries"] for s in loop["stages"])
        done(f"arm_{arm}")

    stage("supervised")
    train_stage("supervised", cfg.train, common, cfg.supervised, method="source", source=pool, source_labels=pool / "oracle_labels",
                out=out / "supervised.pt")
    done("supervised")

    stage("eval")
    val_set = FolderDataset(val, require_labels=True)
    rows = [
        ("source-only", out / "source.pt", 0),
        ("UDA (ADVENT)", out / "advent.pt", 0),
        ("clicks: random", out / "arm_random" / "stage_1" / "model.pt", clicks["random"]),
        (f"clicks: {q.strategy}", out / "arm_active" / "stage_1" / "model.pt", clicks["active"]),
        ("target-supervised", out / "supervised.pt", None),
    ]
    results = []
    for name, ckpt, n_clicks in rows:
        metrics = evaluate(backend_predictor(load_backend(ckpt)), val_set)
        results.append({"model": name, "checkpoint": str(ckpt), "miou": round(metrics.miou * 100, 2), "clicks": n_clicks, "iou": metrics.as_dict()["iou"]})
    done("eval")
    summary = {
        "seed": seed,
        "clicks_per_image": q.clicks_per_image,
        "strategy": q.strategy,
        "target_images": n_pool,
        "results": results,
        "seconds": round(time.perf_counter() - t_start, 1),
        "stage_seconds": timings,
        "config": config_dict(cfg),
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
    arms = [r for r in summary["results"] if r["model"].startswith("clicks: ")]
    if len(arms) == 2:
        # The active arm is listed second; both spent the same clicks and retrained alike.
        lines.append(f"{summary['strategy']} - random: {arms[1]['miou'] - arms[0]['miou']:+.2f} mIoU at {arms[1]['clicks']} clicks each "
                     f"({summary['clicks_per_image']} per pool image, same retraining)")
    lines.append(f"(target_val, {summary['target_images']} pool images, seed {summary['seed']}, {summary['seconds']:.0f}s)")
    return "\n".join(lines)
