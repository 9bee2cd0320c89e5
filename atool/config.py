"""Run configurations: dataclasses filled from a YAML preset, then CLI overrides.

Unknown keys are errors (a typo in a preset must not silently fall back to a
default). Every run writes its resolved config next to its outputs.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from atool.errors import BadInput

C = TypeVar("C")


@dataclass
class TrainConfig:
    """Everything one ``atool train`` run needs. Paths are strings so the config serialises as YAML."""

    method: str = "source"
    out: str = "model.pt"
    source: str | None = None
    source_labels: str | None = None  # default: SOURCE/labels
    target: str | None = None
    target_labels: str | None = None  # sparse labels (an `atool ingest` folder or a folder of label PNGs)
    val: str | None = None  # labeled dataset evaluated at each checkpoint
    init: str | None = None  # start from this checkpoint's weights (fresh optimiser, step 0)
    resume: bool = False  # continue OUT if it exists: weights, optimisers and step
    model: str = "lraspp_mobilenet_v3_small"
    weights: str | None = None  # torchvision-format backbone state dict (ImageNet)
    iters: int = 2000
    batch_size: int = 8
    crop: tuple[int, int] = (256, 128)  # width, height of random crops
    flip: bool = True
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 2.5e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    warmup_iters: int = 0
    # ADVENT (DESIGN.md §4)
    lambda_adv: float = 1e-3
    lr_d: float = 1e-4
    disc_channels: int = 64
    # adapt (active-points G2): weights of the target sparse labels
    oracle_weight: float = 1.0
    pseudo_weight: float = 1.0
    seed: int = 0
    workers: int = 0  # data-loader processes; 0 decodes in the training process
    cache: bool = True  # keep decoded images in memory (small datasets)
    log_every: int = 50
    checkpoint_every: int = 0  # 0: only at the end
    eval_every: int = 0  # 0: only at the end, when `val` is set
    progress: bool | None = None  # None: a bar only when stderr is a terminal

    def validate(self) -> None:
        if self.iters < 0:
            raise BadInput(f"iters must be >= 0, got {self.iters}")
        if self.batch_size < 1:
            raise BadInput(f"batch size must be >= 1, got {self.batch_size}")
        if self.lr <= 0:
            raise BadInput(f"lr must be > 0, got {self.lr}")
        if self.optimizer not in ("sgd", "adamw"):
            raise BadInput(f"optimizer must be sgd or adamw, got {self.optimizer!r}")
        w, h = self.crop
        if w < 16 or h < 16:
            raise BadInput(f"crop must be at least 16x16, got {w}x{h}")


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"config {path} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise BadInput(f"config {path} is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadInput(f"config {path} must be a mapping of keys to values")
    return data


def build_config(cls: type[C], preset: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None) -> C:
    """Preset values, then overrides (None means 'not given'). Unknown keys are BadInput."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for source, what in ((preset or {}, "config"), ({k: v for k, v in (overrides or {}).items() if v is not None}, "option")):
        unknown = sorted(set(source) - set(names))
        if unknown:
            raise BadInput(f"unknown {what} key(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
        values.update(source)
    if "crop" in values and isinstance(values["crop"], (list, str)):
        values["crop"] = _parse_size(values["crop"])
    cfg = cls(**values)
    _check_types(cfg)
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


def _parse_size(value: Any) -> tuple[int, int]:
    if isinstance(value, str):
        parts = value.lower().split("x")
        if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
            return int(parts[0]), int(parts[1])
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return value[0], value[1]
    raise BadInput(f"crop must be WxH or [W, H], got {value!r}")


def _check_types(cfg: Any) -> None:
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        default = f.default if f.default is not dataclasses.MISSING else None
        if value is None or default is None:
            continue
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, type(default))
        if not ok:
            raise BadInput(f"config key {f.name} must be {type(default).__name__}, got {value!r}")
        if isinstance(default, float):
            setattr(cfg, f.name, float(value))


def config_dict(cfg: Any) -> dict[str, Any]:
    data = dataclasses.asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


def write_config(cfg: Any, path: str | os.PathLike) -> Path:
    from atool.io_utils import atomic_write_text

    return atomic_write_text(path, yaml.safe_dump(config_dict(cfg), sort_keys=False))


__all__ = ["TrainConfig", "build_config", "load_yaml", "config_dict", "write_config", "field"]
