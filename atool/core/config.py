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

from atool.core.errors import BadInput

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
    head_lr_mult: float = 1.0  # LR multiplier of everything outside the model's `backbone` (ADVENT/DeepLab-v2: 10 for the ASPP classifiers)
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
    # Training engine (issue 3 item 7)
    poly_iters: int = 0  # horizon of the poly schedule; 0: iters (ADVENT: 250k horizon, stopped early at 120k)
    stop_after: int = 0  # run at most this many steps in this invocation, checkpoint, exit (resume later); 0: no limit
    amp: bool = False  # mixed precision on CUDA (ignored with a log line on CPU)
    amp_dtype: str = "bf16"  # bf16 | fp16 (fp16 uses a GradScaler)
    freeze_bn: bool = False  # BatchNorm uses running statistics and does not learn (atool.models.batchnorm)
    source_size: tuple[int, int] | None = None  # resize source images to WxH before cropping (ADVENT: 1280x720)
    target_size: tuple[int, int] | None = None  # resize target images to WxH before cropping (ADVENT: 1024x512)
    target_crop: tuple[int, int] | None = None  # target random crop WxH; None: `crop`
    # Multi-level outputs (AdaptSegNet/ADVENT): weights of the auxiliary level
    lambda_adv_aux: float = 2e-4
    lambda_seg_aux: float = 0.1
    # MinEnt (ADVENT §3.1): weights of the target entropy, main and auxiliary level
    lambda_ent: float = 1e-3
    lambda_ent_aux: float = 2e-4
    # self_training: on-the-fly pseudo labels (loss weight: pseudo_weight)
    pseudo_threshold: float = 0.9  # keep pseudo labels with softmax confidence >= this
    class_balanced: bool = False  # CBST-style per-class thresholds, capped at pseudo_threshold
    class_balanced_portion: float = 0.5  # per class, the most confident portion of its predicted pixels kept
    teacher: str = "model"  # model: the model being trained, in eval mode; init: a frozen copy of --init
    # intrada: entropy ranking of the target set into easy (pseudo-labelled) and hard parts
    easy_ratio: float = 0.67  # IntraDA's lambda
    intrada_split: str | None = None  # split folder; default OUT without suffix + ".intrada"
    # selector (LabOR, atool/train/methods/selector.py)
    shared_backbone: bool = False  # heads on the frozen adapted backbone: one backbone pass at query time
    discrepancy_weight: float | None = None  # weight w of the head discrepancy; None: 1.0 (separate backbone), 0.1 (shared: no backbone step counters the heads)
    selector_warmup: int = 100  # steps of L_self only before the discrepancy steps start
    head_noise: float = 0.1  # head 2's logit convs get noise of this times their weight std (breaks the symmetry)

    def validate(self) -> None:
        if self.iters < 0:
            raise BadInput(f"iters must be >= 0, got {self.iters}")
        if self.batch_size < 1:
            raise BadInput(f"batch size must be >= 1, got {self.batch_size}")
        if self.lr <= 0:
            raise BadInput(f"lr must be > 0, got {self.lr}")
        if self.head_lr_mult <= 0:
            raise BadInput(f"head_lr_mult must be > 0, got {self.head_lr_mult}")
        if self.optimizer not in ("sgd", "adamw"):
            raise BadInput(f"optimizer must be sgd or adamw, got {self.optimizer!r}")
        w, h = self.crop
        if w < 16 or h < 16:
            raise BadInput(f"crop must be at least 16x16, got {w}x{h}")
        for key in ("source_size", "target_size", "target_crop"):
            value = getattr(self, key)
            if value is not None:
                w, h = _parse_size(value, key)
                if w < 16 or h < 16:
                    raise BadInput(f"{key} must be at least 16x16, got {w}x{h}")
                setattr(self, key, (w, h))
        if self.amp_dtype not in ("bf16", "fp16"):
            raise BadInput(f"amp_dtype must be bf16 or fp16, got {self.amp_dtype!r}")
        if self.teacher not in ("model", "init"):
            raise BadInput(f"teacher must be model or init, got {self.teacher!r}")
        for key in ("pseudo_threshold", "class_balanced_portion"):
            if not 0 < getattr(self, key) <= 1:
                raise BadInput(f"{key} must be in (0, 1], got {getattr(self, key)}")
        if not 0 < self.easy_ratio < 1:
            raise BadInput(f"easy_ratio must be in (0, 1), got {self.easy_ratio}")
        if self.poly_iters < 0 or self.stop_after < 0:
            raise BadInput(f"poly_iters and stop_after must be >= 0, got {self.poly_iters} and {self.stop_after}")


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


def _parse_size(value: Any, key: str = "crop") -> tuple[int, int]:
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return value
    if isinstance(value, str):
        parts = value.lower().split("x")
        if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
            return int(parts[0]), int(parts[1])
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return value[0], value[1]
    raise BadInput(f"{key} must be WxH or [W, H], got {value!r}")


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
    from atool.core.io import atomic_write_text

    return atomic_write_text(path, yaml.safe_dump(config_dict(cfg), sort_keys=False))


__all__ = ["TrainConfig", "build_config", "load_yaml", "config_dict", "write_config", "field"]
