"""LabOR's selector training (Shin et al., eqs. 4-5; DESIGN.md §4).

``atool train selector --target DIR --init ADAPTED.pt --out SEL.pt`` copies the
adapted model into a ``SelectorModel`` (atool/models/selector.py) and trains
its two heads on unlabeled target batches. One step:

  (a) L_self (eq. 4): cross-entropy of both heads against the frozen adapted
      model's pseudo labels argmax P (full resolution, every pixel).
  From step ``selector_warmup`` on, the discrepancy steps (eq. 5, MCD):
  (b) the heads maximise the discrepancy d = mean over pixels of
      sum_c |softmax(h1) - softmax(h2)| (in [0, 2], at logit resolution) while
      keeping L_self: loss L_self - w * d, backbone frozen;
  (c) separate backbone only: the trunk minimises w * d, heads frozen.

With ``shared_backbone`` the backbone is frozen throughout, so only (a)/(b)
run, as one update of the heads: L_self alone during warm-up, then
L_self - w * d. Keeping L_self in the maximisation is what stops the heads
from simply diverging into nonsense: they disagree only where the adapted
features leave the class ambiguous, which is the inconsistency mask
``argmax h1 != argmax h2`` the query strategies read.

Config: ``shared_backbone``, ``discrepancy_weight`` (w; default 1.0 with a
separate backbone, 0.1 with a shared one), ``selector_warmup``, ``head_noise``
(symmetry breaking, see atool/models/selector.py). Without noise the heads
never separate: measured, the mask stays exactly empty.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from atool.core.errors import BadInput, Failure
from atool.models.selector import SelectorModel
from atool.train.distributed import average_gradients, unwrap
from atool.train.losses import seg_ce, upsample
from atool.train.methods import METHODS, Method, make_optimizer


def head_discrepancy(h1: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
    """Mean over pixels of the L1 distance between the heads' softmaxes (N x C x h x w logits) -> scalar in [0, 2]."""
    return (F.softmax(h1, dim=1) - F.softmax(h2, dim=1)).abs().sum(dim=1).mean()


def inconsistency_fraction(model: SelectorModel, images: torch.Tensor) -> float:
    """Fraction of pixels where argmax head1 != argmax head2 (normalised N x 3 x H x W input, full resolution)."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            h1, h2 = model.head_logits(model.features(images))
            size = tuple(images.shape[-2:])
            mask = upsample(h1, size).argmax(1) != upsample(h2, size).argmax(1)
    finally:
        model.train(was)
    return float(mask.float().mean())


# Default discrepancy weights. With a separate backbone the trunk's minimisation step
# counters the heads (MCD). With a shared, frozen backbone nothing does, and on the
# built-in pair w = 1 drove the heads apart over half the image within 40 steps,
# while 0.1 settled at a mask of a few percent.
SEPARATE_WEIGHT = 1.0
SHARED_WEIGHT = 0.1


@METHODS.register("selector")
class LaborSelector(Method):
    uses_source = False
    uses_target = True

    def __init__(self, cfg, num_classes, device) -> None:
        super().__init__(cfg, num_classes, device)
        w = cfg.discrepancy_weight
        if w is None:
            w = SHARED_WEIGHT if cfg.shared_backbone else SEPARATE_WEIGHT
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0:
            raise BadInput(f"discrepancy_weight must be a number >= 0, got {w!r}")
        if cfg.head_noise < 0:
            raise BadInput(f"head_noise must be 0 or more, got {cfg.head_noise}")
        self.weight = float(w)
        if cfg.selector_warmup < 0:
            raise BadInput(f"selector_warmup must be 0 or more steps, got {cfg.selector_warmup}")
        self.steps = 0

    def wrap_model(self, model: nn.Module, name: str, args: dict[str, Any]) -> tuple[nn.Module, str, dict[str, Any]]:
        if not self.cfg.init:
            raise BadInput("method selector needs --init ADAPTED.pt: the adapted model whose heads the selector copies")
        if isinstance(model, SelectorModel) or name == "selector":
            raise BadInput(f"--init {self.cfg.init} is already a selector; give the adapted model it should copy")
        sel = SelectorModel(model, shared_backbone=self.cfg.shared_backbone, head_noise=self.cfg.head_noise, seed=self.cfg.seed)
        return sel, "selector", {"base": name, "base_args": dict(args), "shared_backbone": bool(self.cfg.shared_backbone)}

    def setup(self, model: nn.Module) -> dict[str, torch.optim.Optimizer]:
        net = unwrap(model)
        if not isinstance(net, SelectorModel):
            raise Failure(
                "method selector got a plain model: the training loop must pass the model through Method.wrap_model before setup"
            )
        # The steps call the selector's parts directly (features, heads), not the DDP forward, so under
        # torchrun the gradients are averaged by hand (average_gradients) before every update.
        self.model = net
        # The heads are the selector's classifiers: they get the classifier LR multiplier (ADVENT's 10x).
        self.optimizers = {"heads": make_optimizer(self.cfg, net.head_parameters(), self.cfg.lr * self.cfg.head_lr_mult)}
        backbone = [p for p in net.trainable_backbone() if p.requires_grad]
        if backbone:
            self.optimizers["backbone"] = make_optimizer(self.cfg, backbone, self.cfg.lr)
        return self.optimizers

    def _zero(self) -> None:
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)

    @staticmethod
    def _update(opt: torch.optim.Optimizer | None, module: nn.Module) -> None:
        if opt is not None:
            average_gradients(module)
            opt.step()

    def step(self, source, target):
        m: SelectorModel = self.model
        x = target["image"]
        size = tuple(x.shape[-2:])
        w = self.weight
        discrepancy_phase = self.steps >= self.cfg.selector_warmup and w > 0
        opt_h, opt_b = self.optimizers["heads"], self.optimizers.get("backbone")
        with torch.no_grad():
            feats = m.features(x) if m.shared_backbone else None
            pseudo = upsample(m.main_logits(x, feats), size).argmax(1)

        self._zero()
        f = feats if m.shared_backbone else m.features(x)
        h1, h2 = m.head_logits(f)
        l_self = seg_ce(h1, pseudo) + seg_ce(h2, pseudo)
        disc = head_discrepancy(h1, h2)
        losses = {"self": l_self.item(), "disc": disc.item()}
        if m.shared_backbone:
            (l_self - w * disc if discrepancy_phase else l_self).backward()
            self._update(opt_h, m.heads)
        else:
            l_self.backward()
            self._update(opt_h, m.heads)
            self._update(opt_b, m.trunk)
            if discrepancy_phase:
                # (b) heads maximise the discrepancy (keeping L_self), backbone frozen
                self._zero()
                with torch.no_grad():
                    f = m.features(x)
                h1, h2 = m.head_logits(f)
                d_max = head_discrepancy(h1, h2)
                (seg_ce(h1, pseudo) + seg_ce(h2, pseudo) - w * d_max).backward()
                self._update(opt_h, m.heads)
                # (c) backbone minimises it, heads frozen
                self._zero()
                heads = m.head_parameters()
                for p in heads:
                    p.requires_grad_(False)
                try:
                    h1, h2 = m.head_logits(m.features(x))
                    d_min = head_discrepancy(h1, h2)
                    (w * d_min).backward()
                finally:
                    for p in heads:
                        p.requires_grad_(True)
                self._update(opt_b, m.trunk)
                losses.update(disc_max=d_max.item(), disc_min=d_min.item())
        self.steps += 1
        return losses

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["selector_steps"] = self.steps
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.steps = int(state.get("selector_steps", 0))
