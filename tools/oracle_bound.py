"""How much could any choice of clicks gain? Oracle selections that see the ground truth.

An experiment, not a strategy: these selections read the pool's labels, which no
query can. They bound what a strategy could reach under the same retraining as an
``atool curve`` arm, so a target for real strategies can be checked against what
is reachable at all. Each arm reuses a finished curve arm's query list as the
template (same images, same budget) and replaces its points:

* ``errors``: uniform over the pixels the start model gets wrong (filled with
  uniform pixels when an image has fewer errors than clicks);
* ``true_strat``: the image's clicks split over its *true* classes in proportion
  to sqrt(area), uniform inside each class (``stratified`` with a perfect map);
* ``errors_strat``: the same split over the true classes of the wrong pixels,
  uniform among the wrong pixels of each class;
* ``true_equal`` / ``errors_equal``: as ``true_strat`` / ``errors_strat`` with
  an equal split over the classes (the most class-balanced choice).

Then the arm runs the curve's steps: oracle answers, ingest, retraining
(``finetune`` with the sweep's recipe and the arm's seed), validation mIoU.

    python tools/oracle_bound.py --sweep runs/rare --variants errors,true_strat --budgets 2,10 --seeds 0,1,2 --out runs/oracle

Run it in the folder the sweep was run in (its paths are relative to it).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import zlib
from pathlib import Path

import numpy as np

from atool.core.io import atomic_write_json
from atool.data.images import read_image, read_label

VARIANTS = ("errors", "true_strat", "errors_strat", "true_equal", "errors_equal")
log = logging.getLogger("oracle_bound")


def _quotas(sizes: np.ndarray, k: int, rng: np.random.Generator, alpha: float) -> np.ndarray:
    """Split k clicks over groups in proportion to size ** alpha: largest remainders, random tie order."""
    weight = np.where(sizes > 0, sizes.astype(np.float64) ** alpha, 0.0)
    if k <= 0 or weight.sum() == 0:
        return np.zeros(len(sizes), np.int64)
    share = weight / weight.sum() * k
    base = np.minimum(np.floor(share).astype(np.int64), sizes)
    rest = share - base + rng.random(len(sizes)) * 1e-6
    while base.sum() < min(k, int(sizes.sum())):
        open_ = base < sizes
        j = int(np.argmax(np.where(open_, rest, -np.inf)))
        base[j] += 1
        rest[j] -= 1.0
    return base


def _draw(pool: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(pool, size=min(k, len(pool)), replace=False) if k > 0 and len(pool) else np.zeros(0, np.int64)


def select(variant: str, truth: np.ndarray, pred: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Flat pixel indices of k distinct clicks for one image."""
    valid = truth.ravel() != 255
    wrong = valid & (pred.ravel() != truth.ravel())
    flat = truth.ravel()
    if variant == "errors":
        chosen = _draw(np.flatnonzero(wrong), k, rng)
    else:
        among = wrong if variant.startswith("errors_") else valid
        classes = np.unique(flat[among])
        groups = [np.flatnonzero(among & (flat == c)) for c in classes]
        quota = _quotas(np.array([len(g) for g in groups]), k, rng, 0.0 if variant.endswith("_equal") else 0.5)
        chosen = np.concatenate([_draw(g, int(q), rng) for g, q in zip(groups, quota)] or [np.zeros(0, np.int64)])
    if len(chosen) < k:  # too few errors: the rest uniform over the other labeled pixels
        others = np.setdiff1d(np.flatnonzero(valid), chosen)
        chosen = np.concatenate([chosen, _draw(others, k - len(chosen), rng)])
    return chosen.astype(np.int64)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sweep", required=True, help="a finished atool curve folder with random arms (the template)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--budgets", default="2,10")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from atool.annotate.accumulate import merge_stage_labels
    from atool.annotate.ingest import ingest_answers
    from atool.annotate.oracle import answer_queries
    from atool.runtime.backends import load_backend
    from atool.workflows.curve import _Scorer
    from atool.workflows.stage import train_stage

    sweep, out = Path(args.sweep), Path(args.out)
    variants = [v for v in args.variants.split(",") if v]
    bad = sorted(set(variants) - set(VARIANTS))
    if bad:
        print(f"oracle_bound: unknown variant(s) {', '.join(bad)}; valid: {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    try:
        budgets, seeds = [int(b) for b in args.budgets.split(",")], [int(s) for s in args.seeds.split(",")]
    except ValueError:
        print(f"oracle_bound: --budgets and --seeds take comma-separated integers, got {args.budgets!r} and {args.seeds!r}",
              file=sys.stderr)
        return 2
    missing = [f"b{b}_s{s}" for b in budgets for s in seeds
               if not (sweep / "arms" / "random" / f"b{b}_s{s}" / "stage_1" / "queries.json").is_file()]
    if not (sweep / "curve_config.json").is_file() or missing:
        print(f"oracle_bound: {sweep} is not a finished atool curve folder with random arms {', '.join(missing) or ''}".rstrip(),
              file=sys.stderr)
        return 2
    config = json.loads((sweep / "curve_config.json").read_text(encoding="utf-8"))
    inputs, retrain = config["inputs"], config["recipe"]["retrain"]
    pool, oracle, init = Path(inputs["pool"]), Path(inputs["oracle"]), Path(inputs["init"])
    score = _Scorer(Path(inputs["val"]))
    backend = load_backend(init)
    preds: dict[str, np.ndarray] = {}
    results = []
    for budget in budgets:
        for seed in seeds:
            template = json.loads((sweep / "arms" / "random" / f"b{budget}_s{seed}" / "stage_1" / "queries.json").read_text())
            for variant in variants:
                arm = out / variant / f"b{budget}_s{seed}"
                done = arm / "result.json"
                if done.is_file():
                    results.append(json.loads(done.read_text()))
                    continue
                arm.mkdir(parents=True, exist_ok=True)
                qlist = dict(template, strategy={"name": f"oracle_{variant}", "params": {}, "seed": seed})
                images, n = [], 0
                for entry in template["images"]:
                    rel = entry["image"]
                    truth = read_label(oracle / (Path(rel).stem + ".png"))
                    if rel not in preds:
                        rgb = read_image(pool / "images" / rel)
                        preds[rel] = backend.infer(rgb[None])["prob"][0].argmax(0).astype(np.uint8)
                    rng = np.random.default_rng([seed, zlib.crc32(f"{variant}/{rel}".encode())])
                    idx = select(variant, truth, preds[rel], len(entry["queries"]), rng)
                    y, x = np.divmod(idx, truth.shape[1])
                    queries = []
                    for j, (xx, yy) in enumerate(zip(x.tolist(), y.tolist())):
                        n += 1
                        queries.append({"id": f"q{n:06d}", "kind": "point", "x": xx, "y": yy, "score": 1.0 / (j + 1), "predicted": None})
                    images.append(dict(entry, queries=queries))
                qlist["images"] = images
                atomic_write_json(arm / "queries.json", qlist)
                answer_queries(arm / "queries.json", oracle, arm / "answers.json")
                ingest_answers(arm / "answers.json", arm / "ingest", images_root=pool / "images")
                (arm / "labels").mkdir(exist_ok=True)
                merged = merge_stage_labels(arm / "labels", arm / "ingest")
                model = arm / "model.pt"
                train_stage(f"oracle {variant} b{budget} s{seed}", {"method": "finetune", **retrain}, {"seed": seed, "progress": False},
                            source=inputs["source"], target=str(pool), target_labels=str(arm / "labels"), init=str(init), out=str(model),
                            resume=True)
                record = {"variant": variant, "budget": budget, "seed": seed, "clicks": n,
                          "labeled_pixels": merged.total_pixels, **score(model)}
                atomic_write_json(done, record)
                results.append(record)
                log.info("%s b%d s%d: mIoU %.2f", variant, budget, seed, record["miou"])
    rows = {}
    for r in results:
        rows.setdefault((r["variant"], r["budget"]), []).append(r["miou"])
    for budget in sorted({b for _, b in rows}):
        rand = [json.loads((sweep / "arms" / "random" / f"b{budget}_s{s}" / "result.json").read_text())["miou"]
                for s in seeds]
        print(f"b{budget} random {np.mean(rand):.2f} ± {np.std(rand, ddof=1):.2f}")
        for (variant, b), vals in sorted(rows.items()):
            if b == budget:
                diff = np.array(vals) - np.array(rand[: len(vals)])
                print(f"b{budget} {variant:13s} {np.mean(vals):.2f} ± {np.std(vals, ddof=1) if len(vals) > 1 else 0:.2f}  paired {diff.mean():+.2f}")
    atomic_write_json(out / "oracle_bound.json", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
