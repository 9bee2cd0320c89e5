"""Checkpoints: one file that is enough to rebuild and resume a model.

Layout (a plain dict, so ``torch.load(weights_only=True)`` reads it):
  format, atool_version, model {name, args}, classes, mean, std, step,
  state_dict, method_state (optimisers, discriminator...), config (resolved),
  rng (torch/numpy/python/cuda states of every rank: {"per_rank": [...],
  "world_size", "torch"}), data (global samples consumed per batch stream),
  runtime (torch version, device, threads, CPU capability: what bit-exactness
  depends on, see ``atool.train.trainer.runtime_info``).
Together, rng, data, method_state and step make resume bit-exact.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

import atool
from atool.core.errors import BadInput
from atool.core.io import atomic_write

FORMAT = "atool.checkpoint/v1"
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
_REQUIRED = ("format", "model", "classes", "mean", "std", "step", "state_dict")


def save_checkpoint(
    path: str | os.PathLike,
    *,
    model: nn.Module,
    model_name: str,
    model_args: dict[str, Any],
    classes: list[str],
    step: int,
    mean: list[float] = IMAGENET_MEAN,
    std: list[float] = IMAGENET_STD,
    method_state: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    rng: dict[str, Any] | None = None,
    data: dict[str, int] | None = None,
    runtime: dict[str, Any] | None = None,
) -> Path:
    payload = {
        "format": FORMAT,
        "atool_version": atool.__version__,
        "model": {"name": model_name, "args": dict(model_args)},
        "classes": list(classes),
        "mean": list(mean),
        "std": list(std),
        "step": int(step),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "method_state": method_state or {},
        "config": config or {},
        "rng": rng or {},
        "data": dict(data or {}),
        "runtime": dict(runtime or {}),
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    return atomic_write(path, lambda p: p.write_bytes(buf.getvalue()))


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a checkpoint's layout; every failure is a one-line BadInput.

    ``atool.models.checkpoint.load_checkpoint`` also checks that the model it names is registered.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"checkpoint {path} not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, pickle with disallowed globals, truncation...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInput(f"checkpoint {path} could not be read ({first[:160]}); is it an atool checkpoint?") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise BadInput(f"{path} is not an atool checkpoint (expected format {FORMAT})")
    missing = [k for k in _REQUIRED if k not in ckpt]
    if missing:
        raise BadInput(f"checkpoint {path} lacks {', '.join(missing)}")
    return ckpt
