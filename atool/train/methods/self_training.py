"""Self-training on confident target pseudo labels made on the fly.

    L = CE(source) + pseudo_weight * CE(target, pseudo labels)

Each step a teacher predicts the target batch without gradients: the model
being trained, switched to eval mode for that pass (``teacher: model``), or a
frozen copy of the ``--init`` checkpoint (``teacher: init``, the usual
two-stage recipe: adapt, then self-train from the adapted model). Pixels whose
softmax confidence is below the threshold are ignored (255).

Thresholds: ``pseudo_threshold`` for every class, or with ``class_balanced``
the CBST rule (Zou et al., ECCV'18): per class, the threshold that keeps the
most confident ``class_balanced_portion`` of the pixels predicted as that
class, capped at ``pseudo_threshold`` so no class needs more confidence than
the global rule. CBST computes the per-class quantiles over the whole target
set once per round; here they come from each batch, so rare classes still get
labels without a pass over the data (the per-batch thresholds are logged as
``thr_mean``). Target labels are computed on the (augmented) crop the student
sees, so they line up pixel for pixel.
"""

from __future__ import annotations

import copy

import torch

from atool.core.errors import BadInput
from atool.train.amp import precision_of
from atool.train.distributed import unwrap
from atool.train.losses import pseudo_labels, seg_ce
from atool.train.methods import METHODS, Method
from atool.train.methods.source import source_ce


@METHODS.register("self_training")
class SelfTraining(Method):
    uses_source = True
    uses_target = True
    supports_amp = True

    def setup(self, model):
        super().setup(model)
        self.teacher = None
        if self.cfg.teacher == "init":
            if not self.cfg.init:
                raise BadInput("self_training with teacher: init needs --init (the checkpoint that makes the pseudo labels)")
            # The loop calls setup before it restores a resumed run, so this copy is the --init weights.
            self.teacher = copy.deepcopy(unwrap(model)).eval()
            for p in self.teacher.parameters():
                p.requires_grad_(False)
        return self.optimizers

    @torch.no_grad()
    def make_pseudo_labels(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(labels int64 N x H x W with 255 = unconfident, thresholds float32 C) for a normalised N x 3 x H x W batch."""
        net = self.teacher if self.teacher is not None else unwrap(self.model)
        was = net.training
        net.eval()
        try:
            with precision_of(self).autocast():
                logits = net(image)["out"]
        finally:
            net.train(was)
        cfg = self.cfg
        return pseudo_labels(logits, tuple(image.shape[-2:]), cfg.pseudo_threshold, cfg.class_balanced, cfg.class_balanced_portion)

    def step(self, source, target):
        prec = precision_of(self)
        opt = self.optimizers["model"]
        labels, thr = self.make_pseudo_labels(target["image"])
        opt.zero_grad(set_to_none=True)
        with prec.autocast():
            loss, losses = source_ce(self, source)
        prec.backward(loss)
        with prec.autocast():
            loss_t = seg_ce(self.model(target["image"])["out"], labels)
        prec.backward(self.cfg.pseudo_weight * loss_t)
        prec.step(opt)
        losses["pseudo_ce"] = loss_t.detach()
        losses["pseudo_kept"] = (labels != 255).float().mean()
        losses["thr_mean"] = thr.mean()
        return {k: float(v) for k, v in losses.items()}
