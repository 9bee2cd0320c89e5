"""Training methods plug into the one loop (atool/train/loop.py).

A method gets the model in ``setup`` and returns its optimisers (the loop
applies the LR schedule to all of them); ``step`` takes one source and one
target batch (either may be None if the method does not use it) and returns
a dict of float losses. Discriminators and multi-step updates live inside.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn as nn

from atool.core.config import TrainConfig
from atool.core.errors import BadInput
from atool.core.registry import Registry
from atool.train.amp import FP32, Precision


class Method:
    """Base class of training methods; every hook the trainer calls is declared here."""

    uses_source = True
    uses_target = False
    needs_target_labels = False
    # True when ``step`` runs its forwards under ``self.precision.autocast()`` (see atool.train.amp)
    supports_amp = False

    def __init__(self, cfg: TrainConfig, num_classes: int, device: torch.device) -> None:
        self.cfg = cfg
        self.num_classes = num_classes
        self.device = device
        self.model: nn.Module | None = None
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.precision: Precision = FP32  # the trainer sets the run's precision before ``setup``

    @classmethod
    def prepare(cls, cfg: TrainConfig, *, is_main: bool, barrier: Callable[[], None], device: torch.device) -> None:
        """Hook before datasets are opened (e.g. IntraDA writes its easy/hard split); may fill ``cfg``."""

    def wrap_model(self, model: nn.Module, name: str, args: dict[str, Any]) -> tuple[nn.Module, str, dict[str, Any]]:
        """Hook before ``setup``: a method that trains a different model (the selector wraps the
        adapted model) returns it here, with the registry name and args its checkpoint records."""
        return model, name, args

    def setup(self, model: nn.Module) -> dict[str, torch.optim.Optimizer]:
        self.model = model
        self.optimizers = {"model": make_optimizer(self.cfg, model_param_groups(model, self.cfg.lr, self.cfg.head_lr_mult), self.cfg.lr)}
        return self.optimizers

    def step(self, source: dict[str, torch.Tensor] | None, target: dict[str, torch.Tensor] | None) -> dict[str, float]:
        raise NotImplementedError

    def extra_modules(self) -> dict[str, nn.Module]:
        """Modules besides the model whose weights go into the checkpoint (e.g. a discriminator)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {f"opt.{k}": o.state_dict() for k, o in self.optimizers.items()}
        state.update({f"module.{k}": m.state_dict() for k, m in self.extra_modules().items()})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, o in self.optimizers.items():
            if f"opt.{k}" in state:
                o.load_state_dict(state[f"opt.{k}"])
        for k, m in self.extra_modules().items():
            if f"module.{k}" in state:
                m.load_state_dict(state[f"module.{k}"])


def model_param_groups(model: nn.Module, lr: float, head_lr_mult: float = 1.0) -> list[dict[str, Any]]:
    """Optimiser parameter groups: the ``backbone`` at ``lr``, everything else at ``lr * head_lr_mult``.

    DeepLab-v2 as trained by AdaptSegNet and ADVENT gives its freshly initialised
    ASPP classifiers ten times the backbone's LR. With a multiplier of 1 there is
    one group, so optimiser states saved before this option existed still load.
    The loop's LR schedule scales every group from its own base LR.
    """
    from atool.train.distributed import unwrap

    if head_lr_mult == 1.0:
        return [{"params": list(model.parameters()), "lr": lr}]
    net = unwrap(model)
    backbone = getattr(net, "backbone", None)
    if not isinstance(backbone, nn.Module):
        raise BadInput(f"head_lr_mult {head_lr_mult} needs a model with a `backbone` module; {type(net).__name__} has none. Use head_lr_mult 1")
    in_backbone = {id(p) for p in backbone.parameters()}
    head = [p for p in net.parameters() if id(p) not in in_backbone]
    return [{"params": list(backbone.parameters()), "lr": lr}, {"params": head, "lr": lr * head_lr_mult}]


def make_optimizer(cfg: TrainConfig, params, lr: float) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


METHODS: Registry[type[Method]] = Registry("training method")

METHODS.load_plugins(__name__, __path__)
