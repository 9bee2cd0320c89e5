"""Writing the synthetic pair as folder datasets plus synth.json."""

from __future__ import annotations

import json
import re
import sys
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from atool.core.errors import BadInput
from atool.core.io import atomic_write_text
from atool.data.images import write_image, write_label
from atool.data.synth.classes import SYNTH_CLASSES
from atool.data.synth.scene import render

# (folder, split index for the RNG, file prefix, label folder, style)
_SPLITS = (
    ("source", 0, "s", "labels", "source"),
    ("target_train", 1, "t", "oracle_labels", "target"),
    ("target_val", 2, "v", "labels", "target"),
)


def _check_args(n_source, n_target, n_val, size, seed) -> tuple[int, int]:
    def is_int(v) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    for name, v in (("n_source", n_source), ("n_target", n_target), ("n_val", n_val)):
        if not is_int(v) or v < 1:
            raise BadInput(f"{name} must be a whole number of images >= 1, got {v!r}")
    if not is_int(seed) or seed < 0:
        raise BadInput(f"seed must be a non-negative integer, got {seed!r}")
    try:
        width, height = size
    except (TypeError, ValueError):
        raise BadInput(f"size must be (width, height), got {size!r}") from None
    if not (is_int(width) and is_int(height)):
        raise BadInput(f"size must be two integers (width, height), got {size!r}")
    if width < 32 or height < 16 or width % 16 or height % 16:
        raise BadInput(f"size must be at least 32x16 with both sides multiples of 16 "
                       f"(models downsample by 16), got {width}x{height}")
    return int(width), int(height)


def _clear_stale(folder: Path, prefix: str, keep: int) -> None:
    # A rerun with fewer images must not leave the old tail behind as data.
    if not folder.is_dir():
        return
    pattern = re.compile(rf"{prefix}_(\d+)\.png")
    for p in folder.iterdir():
        m = pattern.fullmatch(p.name)
        if m and int(m.group(1)) >= keep:
            p.unlink()


def _write_split(pool: ThreadPoolExecutor, pending: deque, out: Path, split: tuple, n: int,
                 width: int, height: int, seed: int, progress: bool) -> dict:
    folder, split_index, prefix, label_dir, style = split
    root = out / folder
    atomic_write_text(root / "classes.txt", "\n".join(SYNTH_CLASSES) + "\n")
    pixels = np.zeros(256, np.int64)
    conditions = {"dusk": 0, "asphalt_sidewalk": 0, "lush_terrain": 0}
    for i in range(n):
        rgb, label, cond = render(np.random.default_rng([seed, split_index, i]), width, height, style)
        name = f"{prefix}_{i:05d}.png"
        pending.append(pool.submit(write_image, root / "images" / name, rgb))
        pending.append(pool.submit(write_label, root / label_dir / name, label))
        while len(pending) > 16:
            pending.popleft().result()
        pixels += np.bincount(label.ravel(), minlength=256)
        for k, v in cond.items():
            conditions[k] += int(v)
        if progress and ((i + 1) % 50 == 0 or i + 1 == n):
            print(f"synth: {folder} {i + 1}/{n}", file=sys.stderr, flush=True)
    _clear_stale(root / "images", prefix, n)
    _clear_stale(root / label_dir, prefix, n)
    total = int(pixels.sum())
    n_cls = len(SYNTH_CLASSES)
    return {
        "style": style,
        "count": n,
        "images": "images",
        "labels": label_dir,
        "class_frequency": {c: round(float(pixels[k]) / total, 6) for k, c in enumerate(SYNTH_CLASSES)},
        "ignore_frequency": round(float(pixels[n_cls:].sum()) / total, 6),
        "conditions": conditions,
    }


def write_synth_pair(out: str | Path, n_source: int = 200, n_target: int = 200, n_val: int | None = None,
                     size: tuple[int, int] = (256, 128), seed: int = 0, progress: bool = False) -> dict:
    """Write the source / target_train / target_val folders and synth.json under ``out``.

    ``size`` is (width, height). ``n_val`` defaults to max(1, n_target // 2).
    target_train keeps its ground truth in oracle_labels/ (the pool is meant
    to be unlabeled); synth.json is written last, so its presence means the
    set is complete. Returns the synth.json content.
    """
    if n_val is None:
        n_val = max(1, n_target // 2) if isinstance(n_target, (int, np.integer)) else n_target
    width, height = _check_args(n_source, n_target, n_val, size, seed)
    out = Path(out)
    counts = {"source": int(n_source), "target_train": int(n_target), "target_val": int(n_val)}

    splits: dict[str, dict] = {}
    # PNG encoding and fsync release the GIL, so a writer thread overlaps them
    # with drawing; the bounded backlog keeps memory flat for big sets.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: deque[Future] = deque()
        try:
            for split in _SPLITS:
                splits[split[0]] = _write_split(pool, pending, out, split, counts[split[0]],
                                                width, height, int(seed), progress)
            while pending:
                pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()

    meta = {
        "generator": "atool.data.synth",
        "version": 1,
        "seed": int(seed),
        "size": [width, height],
        "counts": counts,
        "classes": list(SYNTH_CLASSES),
        "splits": splits,
    }
    atomic_write_text(out / "synth.json", json.dumps(meta, indent=2) + "\n")
    return meta
