"""Supervised cross-entropy on the labeled (source) set: the source-only baseline.

With multi-level outputs the auxiliary level gets CE too, weighted
``lambda_seg_aux`` (0.1, as in AdaptSegNet/ADVENT), so it is trained before an
adversarial stage starts from this model.
"""

from __future__ import annotations

import torch

from atool.train.amp import precision_of
from atool.train.losses import aux_logits, seg_ce
from atool.train.methods import METHODS, Method


def source_ce(method: Method, source: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Source CE over every output level: (weighted total, {"seg": main, "seg_aux": aux sum}), inside autocast."""
    out = method.model(source["image"])
    loss = seg_ce(out["out"], source["label"])
    parts = {"seg": loss.detach()}
    aux = aux_logits(out)
    if aux:
        loss_aux = sum(seg_ce(a, source["label"]) for a in aux)
        parts["seg_aux"] = loss_aux.detach()
        loss = loss + method.cfg.lambda_seg_aux * loss_aux
    return loss, parts


@METHODS.register("source")
class SourceOnly(Method):
    uses_source = True
    supports_amp = True

    def step(self, source, target):
        prec = precision_of(self)
        opt = self.optimizers["model"]
        opt.zero_grad(set_to_none=True)
        with prec.autocast():
            loss, parts = source_ce(self, source)
        prec.backward(loss)
        prec.step(opt)
        return {k: float(v) for k, v in parts.items()}
