"""Mixed precision for method steps (``amp: true``; CUDA only).

The loop gives each method a ``Precision`` (``method.precision``). A method
that supports AMP (``supports_amp = True``) runs its forwards inside
``precision.autocast()``, calls ``precision.backward(loss)`` instead of
``loss.backward()`` and ``precision.step(*optimizers)`` instead of each
``opt.step()``. With bf16 that is autocast alone; with fp16 a GradScaler
scales every loss and unscales before each optimiser step (one scaler shared
by all of a method's optimisers, updated once per step). Disabled, all three
are the plain fp32 calls, so methods need no second code path.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch


class Precision:
    def __init__(self, enabled: bool = False, dtype: str = "bf16", device_type: str = "cpu") -> None:
        self.enabled = bool(enabled) and device_type == "cuda"
        self.dtype = torch.bfloat16 if dtype == "bf16" else torch.float16
        self.device_type = device_type
        self.scaler = None
        if self.enabled and self.dtype == torch.float16:
            self.scaler = torch.amp.GradScaler("cuda")

    @property
    def name(self) -> str:
        if not self.enabled:
            return "fp32"
        return "bf16" if self.dtype == torch.bfloat16 else "fp16+GradScaler"

    def autocast(self):
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Unscale an optimiser's grads in place before reading them (e.g. to average them across ranks)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, *optimizers: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            for opt in optimizers:
                opt.step()
            return
        for opt in optimizers:
            self.scaler.step(opt)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return {"scaler": self.scaler.state_dict()} if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


FP32 = Precision(False)


def precision_of(method: Any) -> Precision:
    """The precision the loop gave ``method`` (``Method.precision``; fp32 unless the trainer set AMP)."""
    return method.precision
