"""PyTorch backend: runs a checkpoint directly (no export needed)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from atool.runtime.backends import BACKENDS, Backend
from atool.models.batchnorm_folding import fold_batchnorm
from atool.models.inference_graph import DeployModel
from atool.models.checkpoint import load_checkpoint, model_from_checkpoint
from atool.models.prototypes import prototypes_of

log = logging.getLogger(__name__)


@BACKENDS.register("torch")
class TorchBackend(Backend):
    suffixes = (".pt", ".pth", ".ckpt")

    def __init__(self, path: Path, device: str = "cpu", threads: int | None = None):
        ckpt = load_checkpoint(path)
        self.path = Path(path)
        self.classes = list(ckpt["classes"])
        model = model_from_checkpoint(ckpt)
        self.heads = bool(getattr(model, "has_heads", False))
        self.device = torch.device(device)
        protos = prototypes_of(ckpt, f"checkpoint {self.path}")
        self.prototypes = protos is not None
        self.net = DeployModel(
            model, ckpt["mean"], ckpt["std"], len(self.classes), heads=self.heads, prototypes=protos.vectors if protos else None
        ).to(self.device).eval()
        # onnxruntime folds these when it loads a graph; eager torch would run each BatchNorm as its own pass.
        self.folded_batchnorms = fold_batchnorm(self.net)
        log.debug("torch backend: %d BatchNorm layers folded into their convolutions", self.folded_batchnorms)
        self.output_names = self.net.output_names()
        self.metadata = {"model": ckpt["model"], "step": ckpt["step"], "prototypes": self.prototypes,
                         "prototype_source": protos.describe() if protos else None}
        if threads:
            torch.set_num_threads(threads)

    @torch.inference_mode()
    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.check_batch(batch)
        outs = self.net(torch.from_numpy(batch).to(self.device))
        return {name: t.float().cpu().numpy() for name, t in zip(self.output_names, outs)}
