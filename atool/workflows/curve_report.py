"""What a budget sweep measured: per-budget statistics, curve summaries, the report files.

* mIoU mean and sample standard deviation over seeds, per strategy and budget,
  and the paired difference to ``random`` (same seeds, same retraining).
* Area under the mIoU-vs-clicks curve, from 0 clicks (the start model) to the
  largest budget, divided by that budget: the mean mIoU over the range.
* Clicks per image to reach 90% of the gap between the lower reference
  (source-only or start) and the full-label ceiling, interpolated linearly on
  the mean curve; ``None`` when the sweep never gets there.
* Per-class IoU, and the clicks each class received against its share of the
  pool's pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from atool.core.io import atomic_write, atomic_write_json, atomic_write_text

GAP_SHARE = 0.9


def _stats(values: list[float]) -> dict[str, Any]:
    arr = np.asarray(values, dtype=np.float64)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return {"mean": round(float(arr.mean()), 2), "std": round(std, 2), "n": len(arr), "values": [round(float(v), 2) for v in arr]}


def _auc(budgets: list[int], means: list[float], start: float) -> float:
    xs = np.asarray([0, *budgets], dtype=np.float64)
    ys = np.asarray([start, *means], dtype=np.float64)
    return round(float(np.sum((ys[1:] + ys[:-1]) / 2 * np.diff(xs)) / xs[-1]), 2)


def _clicks_to(target: float, budgets: list[int], means: list[float], start: float) -> float | None:
    xs, ys = [0, *budgets], [start, *means]
    if ys[0] >= target:
        return 0.0
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if y1 >= target:
            return round(x0 + (target - y0) / (y1 - y0) * (x1 - x0), 2)
    return None


def summarise(cfg: Any, classes: list[str], start: dict, lower: dict, ceiling: list[dict], arms: list[dict], pool_shares: dict[str, float]) -> dict[str, Any]:
    """The sweep's summary (what curve.json holds)."""
    by = {(a["strategy"], a["budget"], a["seed"]): a for a in arms}
    upper = _stats([c["miou"] for c in ceiling]) if ceiling else None
    target = None
    if upper is not None:
        target = round(lower["miou"] + GAP_SHARE * (upper["mean"] - lower["miou"]), 2)
    report_budget = cfg.report_budget or (10 if 10 in cfg.budgets else cfg.budgets[len(cfg.budgets) // 2])
    strategies: dict[str, Any] = {}
    for s in cfg.strategies:
        per_budget = {}
        for b in cfg.budgets:
            runs = [by[(s, b, seed)] for seed in cfg.seeds]
            entry = _stats([r["miou"] for r in runs])
            entry["clicks"] = round(float(np.mean([r["clicks"] for r in runs])), 1)
            entry["labeled_pixels"] = round(float(np.mean([r["labeled_pixels"] for r in runs])), 1)
            if s != "random" and "random" in cfg.strategies:
                diffs = [by[(s, b, seed)]["miou"] - by[("random", b, seed)]["miou"] for seed in cfg.seeds]
                entry["vs_random"] = _stats(diffs)
            entry["iou"] = {c: _mean_or_none([r["iou"].get(c) for r in runs]) for c in classes}
            clicks = {k: int(sum(r["clicks_by_class"].get(k, 0) for r in runs)) for k in [*classes, "(null)"]}
            total = sum(clicks.values()) or 1
            entry["clicks_by_class_pct"] = {k: round(v / total * 100, 2) for k, v in clicks.items()}
            per_budget[str(b)] = entry
        means = [per_budget[str(b)]["mean"] for b in cfg.budgets]
        strategies[s] = {
            "budgets": per_budget,
            "auc": _auc(cfg.budgets, means, start["miou"]),
            "clicks_to_90": _clicks_to(target, cfg.budgets, means, start["miou"]) if target is not None else None,
        }
    return {
        "format": "atool.curve/v1",
        "classes": classes,
        "config": {"strategies": cfg.strategies, "budgets": cfg.budgets, "seeds": cfg.seeds, **cfg.recipe()},
        "start": {"model": start["model"], "miou": start["miou"]},
        "lower": {"model": lower["model"], "miou": lower["miou"]},
        "full_labels": upper,
        "gap_target": target,
        "report_budget": report_budget,
        "pool_class_pct": pool_shares,
        "strategies": strategies,
    }


def _mean_or_none(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(float(np.mean(kept)), 2) if kept else None


def markdown(summary: dict[str, Any]) -> str:
    budgets = summary["config"]["budgets"]
    strategies = summary["strategies"]
    seeds = summary["config"]["seeds"]
    lines = [
        f"mIoU (mean ± std over seeds {', '.join(map(str, seeds))}) against clicks per pool image; "
        f"start model {summary['start']['miou']:.2f}" + (f", full labels {summary['full_labels']['mean']:.2f} ± {summary['full_labels']['std']:.2f}" if summary["full_labels"] else "") + ".",
        "",
        "| strategy | " + " | ".join(f"{b} clicks" for b in budgets) + " | AUC | clicks to 90% of gap |",
        "|---|" + "---:|" * (len(budgets) + 2),
    ]
    for s, entry in strategies.items():
        cells = [f"{entry['budgets'][str(b)]['mean']:.2f} ± {entry['budgets'][str(b)]['std']:.2f}" for b in budgets]
        to90 = entry["clicks_to_90"]
        if summary["gap_target"] is None:
            reach = "- (no full-label ceiling)"
        else:
            reach = f"> {budgets[-1]}" if to90 is None else f"{to90:.1f}"
        lines.append(f"| {s} | " + " | ".join(cells) + f" | {entry['auc']:.2f} | {reach} |")
    if "random" in strategies and len(strategies) > 1:
        lines += ["", "Paired difference to random (same seeds), mIoU points, mean ± std:", "",
                  "| strategy | " + " | ".join(f"{b}" for b in budgets) + " |", "|---|" + "---:|" * len(budgets)]
        for s, entry in strategies.items():
            if s == "random":
                continue
            lines.append(f"| {s} | " + " | ".join(f"{entry['budgets'][str(b)]['vs_random']['mean']:+.2f} ± {entry['budgets'][str(b)]['vs_random']['std']:.2f}" for b in budgets) + " |")
    rb = str(summary["report_budget"])
    classes = summary["classes"]
    lines += ["", f"IoU per class at {rb} clicks per image (mean over seeds):", "",
              "| strategy | " + " | ".join(classes) + " |", "|---|" + "---:|" * len(classes)]
    for s, entry in strategies.items():
        lines.append(f"| {s} | " + " | ".join("-" if entry["budgets"][rb]["iou"][c] is None else f"{entry['budgets'][rb]['iou'][c]:.1f}" for c in classes) + " |")
    lines += ["", f"Clicks per class at {rb} clicks per image, % of the arm's clicks, against the pool's pixel shares:", "",
              "| | " + " | ".join(classes) + " | null |", "|---|" + "---:|" * (len(classes) + 1)]
    lines.append("| pool pixels | " + " | ".join(f"{summary['pool_class_pct'][c]:.1f}" for c in classes) + " | - |")
    for s, entry in strategies.items():
        pct = entry["budgets"][rb]["clicks_by_class_pct"]
        lines.append(f"| {s} | " + " | ".join(f"{pct[c]:.1f}" for c in classes) + f" | {pct['(null)']:.1f} |")
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = summary["config"]["budgets"]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for s, entry in summary["strategies"].items():
        xs = [0, *budgets]
        mean = np.array([summary["start"]["miou"], *[entry["budgets"][str(b)]["mean"] for b in budgets]])
        std = np.array([0.0, *[entry["budgets"][str(b)]["std"] for b in budgets]])
        ax.plot(xs, mean, marker="o", label=s, linestyle="--" if s == "random" else "-")
        ax.fill_between(xs, mean - std, mean + std, alpha=0.15)
    if summary["full_labels"]:
        ax.axhline(summary["full_labels"]["mean"], color="k", linewidth=0.8, label="full labels")
    if summary["gap_target"] is not None:
        ax.axhline(summary["gap_target"], color="grey", linewidth=0.8, linestyle=":", label="90% of gap")
    ax.set_xscale("symlog", linthresh=2)
    ax.set_xticks([0, *budgets])
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("clicks per pool image")
    ax.set_ylabel("mIoU on the validation set")
    ax.set_title(f"mIoU vs clicks (mean ± std over {len(summary['config']['seeds'])} seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def write_reports(out: Path, summary: dict[str, Any]) -> None:
    atomic_write_json(out / "curve.json", summary)
    atomic_write_text(out / "curve.md", markdown(summary))
    plot(summary, out / "curve.png")

