#!/usr/bin/env python3
"""Compare query strategies over LabOR-style stages on the built-in pair (issue 3, item 8).

Starting from one UDA model (the demo's ADVENT G1), every arm runs the same
``atool loop``: STAGES x (selector if needed -> query -> oracle -> ingest ->
finetune on all labeled target pixels). Arms:

* ``inconsistency_ppl`` with a separate-backbone selector (LabOR's PPL), and
  again with the shared-backbone selector (heads on the frozen adapted
  features: one backbone pass at query time);
* ``random`` and ``entropy_patch`` at exactly the clicks PPL used, stage by
  stage (total budget = PPL's count, so the comparison is at equal clicks);
* ``inconsistency_spl``: whole inconsistency regions up to a pixel ratio per
  stage (LabOR: about 2.2% of pixels after three stages), with either selector
  (the separate-backbone mask can be smaller than the ratio allows);
* target-supervised (full labels), from the demo run.

For every arm the report also gives where the labels landed (labeled pixels
by ground-truth class, DESIGN.md §4) and the final model's IoU per class, so a
strategy's mIoU can be traced to the classes it asked about.

Query time is the ``atool query`` wall time of each stage (selector or model
forward, selection, writing), summed over stages, measured in this one run.

Usage: tools/compare_strategies.py --out runs/compare [--demo-dir DIR] [--seed S]
If --demo-dir has no finished ``atool demo`` run, one is made there first.
--report-only rebuilds compare.json and the tables from the arms already in OUT.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path


def _args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for the arms' runs and compare.json")
    p.add_argument("--demo-dir", help="an `atool demo` output folder to start from (default: OUT/demo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stages", type=int, default=3)
    p.add_argument("--ppl-points", type=int, default=4, help="PPL points per image per stage, at most one per class")
    p.add_argument("--spl-ratio", type=float, default=0.0073, help="SPL pixel ratio per stage (3 x 0.0073 = 2.2%%)")
    p.add_argument("--selector-iters", type=int, default=100)
    p.add_argument("--selector-warmup", type=int, default=50, help="selector steps before the discrepancy step starts")
    p.add_argument("--retrain-iters", type=int, default=150)
    p.add_argument("--report-only", action="store_true", help="do not train: report the finished arms found in OUT")
    p.add_argument("--arms", default="ppl,ppl_shared,random,entropy_patch,spl,spl_shared", help="comma-separated subset")
    return p.parse_args(argv)


def _train_common(demo_cfg: dict) -> dict:
    common = dict(demo_cfg["train"])
    common.pop("disc_channels", None)
    return common


def _time_queries(out: Path, images: Path, adapted: Path, points: int, repeats: int = 3) -> dict:
    """`atool query` wall time of the stage-1 selectors (and the adapted model alone), back to back."""
    import statistics
    import tempfile

    from atool.runtime.backends import load_backend
    from atool.workflows.query import QueryConfig, query_to_file

    models = {"adapted model, entropy_patch": (adapted, "entropy_patch"),
              "separate-backbone selector, ppl": (out / "ppl" / "stage_1" / "selector.pt", "inconsistency_ppl"),
              "shared-backbone selector, ppl": (out / "ppl_shared" / "stage_1" / "selector.pt", "inconsistency_ppl")}
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (path, strategy) in models.items():
            if not path.is_file():
                continue
            backend = load_backend(path)
            times = []
            for _ in range(repeats):
                q = query_to_file(backend, images, QueryConfig(strategy=strategy, budget=points, per_image=True), Path(tmp) / "q.json")
                times.append(q["timings"]["total"])
            sec = statistics.median(times)
            result[name] = {"seconds": round(sec, 3), "images_per_s": round(q["stats"]["images_processed"] / sec, 2)}
    return result


# Arm folder under OUT -> arm name in the report.
ARM_NAMES = {
    "ppl": "inconsistency_ppl",
    "ppl_shared": "inconsistency_ppl (shared backbone)",
    "random": "random",
    "entropy_patch": "entropy_patch",
    "spl": "inconsistency_spl",
    "spl_shared": "inconsistency_spl (shared backbone)",
}


def _labeled_by_class(labels: Path | None, oracle_labels: Path) -> dict[str, int]:
    """Pixel counts per class: of an arm's accumulated labels (a loop's OUT/labels), or of the
    whole pool's ground truth when ``labels`` is None (the reference share of each class)."""
    import numpy as np
    from PIL import Image

    root = labels if labels is not None else oracle_labels.parent
    classes = [c for c in (root / "classes.txt").read_text().splitlines() if c.strip()]
    counts = np.zeros(256, dtype=np.int64)
    for path in sorted((labels / "labels" if labels is not None else oracle_labels).glob("*.png")):
        counts += np.bincount(np.asarray(Image.open(path)).ravel(), minlength=256)
    return {c: int(counts[i]) for i, c in enumerate(classes)}


def _print_class_tables(report: dict) -> None:
    classes = list(report["pool_by_class"])
    head = f"{'':<38}" + "".join(f"{c[:8]:>9}" for c in classes)

    def share(counts: dict[str, int]) -> str:
        total = max(1, sum(counts.values()))
        return "".join(f"{100 * counts[c] / total:9.1f}" for c in classes)

    print("\nlabeled pixels by class, % of the arm's labels (pool: the ground truth of all pool pixels)")
    print(head)
    print(f"{'pool':<38}" + share(report["pool_by_class"]))
    for r in report["arms"]:
        print(f"{r['arm']:<38}" + share(r["labeled_by_class"]))

    def ious(iou: dict) -> str:
        return "".join(f"{iou[c]:9.1f}" if iou.get(c) is not None else f"{'-':>9}" for c in classes)

    print("\nIoU per class on target_val after the last stage")
    print(head)
    print(f"{'start: UDA (ADVENT)':<38}" + ious(report["start_iou"]))
    for r in report["arms"]:
        if "iou" in r:
            print(f"{r['arm']:<38}" + ious(r["iou"]))
    print(f"{'target-supervised':<38}" + ious(report["target_supervised_iou"]))


def main(argv=None) -> int:
    args = _args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from atool.workflows.demo import default_demo_config, run_demo
    from atool.workflows.rounds import run_loop

    out = Path(args.out)
    demo_dir = Path(args.demo_dir) if args.demo_dir else out / "demo"
    if not (demo_dir / "demo_results.json").is_file():
        run_demo(demo_dir, seed=args.seed)
    demo = json.loads((demo_dir / "demo_results.json").read_text())
    data = demo_dir / "data"
    common = _train_common(demo["config"] if "config" in demo else default_demo_config())
    lr = demo["config"]["adapt"]["lr"]
    base = {
        "stages": args.stages,
        "train": common,
        "selector": {"iters": args.selector_iters, "selector_warmup": args.selector_warmup, "lr": lr},
        "retrain": {"iters": args.retrain_iters, "lr": lr},
    }
    paths = dict(source=data / "source", target=data / "target_train", oracle_labels=data / "target_train" / "oracle_labels",
                 init=demo_dir / "advent.pt", val=data / "target_val", seed=args.seed)

    def loop(name: str, query: dict, selector: dict | None = None) -> dict:
        cfg = {**base, "query": query}
        if selector:
            cfg["selector"] = {**base["selector"], **selector}
        t0 = time.perf_counter()
        summary = run_loop(out=out / name, config=cfg, **paths)
        summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
        return summary

    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    if args.report_only:
        results = {ARM_NAMES[d]: json.loads((out / d / "loop.json").read_text()) for d in ARM_NAMES if (out / d / "loop.json").is_file()}
        return _report(args, out, demo_dir, demo, results)
    results: dict[str, dict] = {}
    if "ppl" in arms or "random" in arms or "entropy_patch" in arms:
        results["inconsistency_ppl"] = loop("ppl", {"strategy": "inconsistency_ppl", "budget": args.ppl_points, "per_image": True})
    if "ppl_shared" in arms:
        results["inconsistency_ppl (shared backbone)"] = loop(
            "ppl_shared", {"strategy": "inconsistency_ppl", "budget": args.ppl_points, "per_image": True}, {"shared_backbone": True})
    if "spl" in arms:
        results["inconsistency_spl"] = loop(
            "spl", {"strategy": "inconsistency_spl", "budget": 100_000, "per_image": True, "params": {"pixel_ratio": args.spl_ratio}})
    if "spl_shared" in arms:
        results["inconsistency_spl (shared backbone)"] = loop(
            "spl_shared", {"strategy": "inconsistency_spl", "budget": 100_000, "per_image": True, "params": {"pixel_ratio": args.spl_ratio}},
            {"shared_backbone": True})
    ppl_clicks = [s["queries"] for s in results.get("inconsistency_ppl", {}).get("stages", [])]
    for arm in ("random", "entropy_patch"):
        if arm not in arms:
            continue
        # Equal clicks: each stage spends what PPL spent in that stage, as a total budget.
        stage_results = []
        for k, clicks in enumerate(ppl_clicks, start=1):
            cfg_stage = {"strategy": arm, "budget": clicks, "per_image": False}
            summary = run_loop(out=out / arm, config={**base, "stages": k, "query": cfg_stage}, **paths)
            stage_results = summary["stages"]
        results[arm] = {**summary, "stages": stage_results}
    return _report(args, out, demo_dir, demo, results)


def _report(args, out: Path, demo_dir: Path, demo: dict, results: dict[str, dict]) -> int:
    from atool.core.io import atomic_write_json

    data = demo_dir / "data"
    folder_of = {name: folder for folder, name in ARM_NAMES.items()}
    rows = []
    for name, summary in results.items():
        stages = summary["stages"]
        rows.append({
            "arm": name,
            "miou_per_stage": [s["miou"] for s in stages],
            "miou": stages[-1]["miou"] if stages else None,
            "clicks": sum(s["queries"] for s in stages),
            "labeled_pixels": stages[-1]["merge"]["total_pixels"] if stages else 0,
            "query_seconds": round(sum(s.get("query_seconds", 0.0) for s in stages), 2),
            "final_model": str(stages[-1]["model"]) if stages else None,
            "labeled_by_class": _labeled_by_class(out / folder_of[name] / "labels", data / "target_train" / "oracle_labels"),
        })
    # Scored here, with this version's evaluation, rather than copied from the demo's table.
    from atool.data.adapters.folder import FolderDataset
    from atool.runtime.backends import load_backend
    from atool.eval.evaluate import backend_predictor, evaluate

    val_set = FolderDataset(data / "target_val", require_labels=True)

    def score(ckpt: Path) -> dict:
        result = evaluate(backend_predictor(load_backend(ckpt)), val_set)
        return {"miou": round(result.miou * 100, 2), "iou": result.as_dict()["iou"]}

    for r in rows:
        if r["final_model"]:
            r["iou"] = score(Path(r["final_model"]))["iou"]
    sup = score(demo_dir / "supervised.pt")
    start = score(demo_dir / "advent.pt")
    n_pool = demo["target_images"]
    pixels = n_pool * demo["config"]["data"]["size"][0] * demo["config"]["data"]["size"][1]
    query_time = _time_queries(out, data / "target_train" / "images", demo_dir / "advent.pt", args.ppl_points)
    report = {"query_time": query_time, "seed": args.seed, "pool_images": n_pool, "pool_pixels": pixels, "start_miou": start["miou"],
              "start_iou": start["iou"], "target_supervised_miou": sup["miou"], "target_supervised_iou": sup["iou"],
              "pool_by_class": _labeled_by_class(None, data / "target_train" / "oracle_labels"), "arms": rows}
    atomic_write_json(out / "compare.json", report)
    print(f"{'arm':<38} {'mIoU':>6} {'clicks':>7} {'px %':>6} {'query s':>8}  per stage")
    print(f"{'start: UDA (ADVENT)':<38} {start['miou']:6.2f} {0:7d} {0:6.2f} {'-':>8}")
    for r in rows:
        print(f"{r['arm']:<38} {r['miou']:6.2f} {r['clicks']:7d} {100 * r['labeled_pixels'] / pixels:6.2f} "
              f"{r['query_seconds']:8.2f}  {r['miou_per_stage']}")
    print(f"{'target-supervised':<38} {sup['miou']:6.2f} {'all':>7} {100:6.2f}")
    _print_class_tables(report)
    if query_time:
        print("query time over the pool, median of 3, same process: " +
              ", ".join(f"{k} {v['seconds']:.2f}s ({v['images_per_s']:.1f} img/s)" for k, v in query_time.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
