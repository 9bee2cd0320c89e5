"""The report's figures, drawn with matplotlib (Agg, no display) and returned as PNG bytes.

Each function takes plain numbers (already read from the run's JSON) and
returns the PNG of one figure, so the page embeds it as a data: URI and
works offline. Class and strategy names are drawn as matplotlib text, never
interpreted (``usetex`` off, "$" escaped so mathtext does not parse them).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _text(name: Any) -> str:
    """A label matplotlib shows literally (no mathtext)."""
    return str(name).replace("$", r"\$")


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def class_shares(classes: list[str], series: dict[str, list[float]], title: str) -> bytes:
    """Grouped horizontal bars: for each class, one bar per series (percent of that series' total)."""
    plt = _plt()
    n, k = len(classes), max(1, len(series))
    fig, ax = plt.subplots(figsize=(7.5, min(8.0, 0.22 * n * k + 1.4)))
    height = 0.8 / k
    y = np.arange(n)
    for i, (name, values) in enumerate(series.items()):
        ax.barh(y + (i - (k - 1) / 2) * height, values, height=height, label=_text(name))
    ax.set_yticks(y, [_text(c) for c in classes])
    ax.invert_yaxis()
    ax.set_xlabel("% of total")
    ax.set_title(_text(title))
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def miou_curve(lines: dict[str, tuple[list[float], list[float], list[float]]], refs: dict[str, float], xlabel: str, title: str) -> bytes:
    """mIoU against clicks: ``lines`` maps a name to (x, mean, std); ``refs`` are horizontal reference lines."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for name, (xs, means, stds) in lines.items():
        xs_a, m, s = np.asarray(xs, float), np.asarray(means, float), np.asarray(stds, float)
        ax.plot(xs_a, m, marker="o", label=_text(name))
        if s.any():
            ax.fill_between(xs_a, m - s, m + s, alpha=0.2)
    for i, (name, value) in enumerate(refs.items()):
        ax.axhline(value, linestyle="--", color=f"C{len(lines) + i}", linewidth=1, label=f"{_text(name)} ({value:.1f})")
    ax.set_xlabel(_text(xlabel))
    ax.set_ylabel("mIoU (%)")
    ax.set_title(_text(title))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def iou_bars(classes: list[str], series: dict[str, list[float]], title: str) -> bytes:
    """Per-class IoU (%), one bar per series and class."""
    plt = _plt()
    n, k = len(classes), max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(7.5, 0.5 * n * k / 2 + 3), 4.2))
    width = 0.8 / k
    x = np.arange(n)
    for i, (name, values) in enumerate(series.items()):
        ax.bar(x + (i - (k - 1) / 2) * width, values, width=width, label=_text(name))
    ax.set_xticks(x, [_text(c) for c in classes], rotation=35, ha="right")
    ax.set_ylabel("IoU (%)")
    ax.set_ylim(0, 100)
    ax.set_title(_text(title))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


__all__ = ["class_shares", "miou_curve", "iou_bars"]
