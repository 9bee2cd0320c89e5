"""ADVENT: adversarial alignment of target entropy maps (Vu et al., CVPR'19; DESIGN.md §4).

One step, per output level (``out``, and each ``aux`` level when the model
has multi-level outputs, as DeepLab-v2 does):

1. segmenter on source CE (main weight 1, aux weight ``lambda_seg_aux`` = 0.1);
2. segmenter fools that level's discriminator on the target self-information
   map, D frozen, weight ``lambda_adv`` (main, 1e-3) or ``lambda_adv_aux``
   (aux, 2e-4), as in AdaptSegNet/ADVENT's multi-level training;
3. each D learns source (0) vs target (1) on detached maps.

The discriminators use Adam (``lr_d``, betas 0.9/0.99) and follow the same
poly schedule as the segmenter (ADVENT's released code does the same). Under
DDP the model's gradients are reduced by DDP and the discriminators' by
``average_gradients``. Mixed precision goes through ``method.precision``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from atool.core.errors import BadInput
from atool.models.discriminator import EntropyDiscriminator
from atool.ops.uncertainty_torch import self_information
from atool.train.amp import precision_of
from atool.train.distributed import average_gradients, broadcast_module, unwrap
from atool.train.losses import aux_logits, seg_ce, upsample
from atool.train.methods import METHODS, Method

SOURCE_DOMAIN, TARGET_DOMAIN = 0.0, 1.0
MIN_DISC_INPUT = 32


def count_aux_levels(model: nn.Module, device: torch.device) -> int:
    """How many auxiliary levels ``model`` outputs, by one tiny no-grad forward in eval mode.

    Eval mode leaves BatchNorm statistics and the RNG untouched.
    """
    net = unwrap(model)
    was = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros(1, 3, 64, 64, device=device))
    finally:
        net.train(was)
    return len(aux_logits(out))


@METHODS.register("advent")
class Advent(Method):
    uses_source = True
    uses_target = True
    supports_amp = True

    def setup(self, model):
        super().setup(model)
        self.n_aux = count_aux_levels(model, self.device)
        names = ["disc"] + [f"disc_aux{i}" if i else "disc_aux" for i in range(self.n_aux)]
        self.discs = nn.ModuleDict({n: EntropyDiscriminator(self.num_classes, self.cfg.disc_channels).to(self.device) for n in names})
        for name, d in self.discs.items():
            broadcast_module(d)  # DDP ranks start from one discriminator
            self.optimizers[name] = torch.optim.Adam(d.parameters(), lr=self.cfg.lr_d, betas=(0.9, 0.99))
        return self.optimizers

    @property
    def disc(self) -> nn.Module:
        return self.discs["disc"]

    def extra_modules(self):
        return dict(self.discs.items())

    def target_supervision(self, target, logits, aux) -> dict[str, torch.Tensor]:
        """Hook for methods that also have target labels (adapt): extra target losses to add."""
        return {}

    def _d_loss(self, disc: nn.Module, maps: torch.Tensor, domain: float) -> torch.Tensor:
        h, w = maps.shape[-2:]
        if min(h, w) < MIN_DISC_INPUT:
            # Five 4x4 stride-2 convs leave nothing of a smaller map; say so instead of torch's conv error.
            raise BadInput(
                f"the entropy discriminator needs crops of at least {MIN_DISC_INPUT}x{MIN_DISC_INPUT} pixels, "
                f"got {w}x{h}; use a larger --crop (and images at least that large)"
            )
        out = disc(maps)
        return F.binary_cross_entropy_with_logits(out.float(), torch.full_like(out.float(), domain))

    def step(self, source, target):
        prec = precision_of(self)
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        discs = list(self.discs.values())
        for p in self.discs.parameters():
            p.requires_grad_(False)
        cfg = self.cfg
        lambdas_adv = [cfg.lambda_adv] + [cfg.lambda_adv_aux] * self.n_aux
        zero = torch.zeros((), device=self.device)

        # (1) source segmentation, every level
        src_size = tuple(source["label"].shape[-2:])
        with prec.autocast():
            out = self.model(source["image"])
            src_levels = [upsample(out["out"], src_size)] + [upsample(a, src_size) for a in aux_logits(out)]
            loss_seg = seg_ce(src_levels[0], source["label"])
            loss_seg_aux = sum((seg_ce(a, source["label"]) for a in src_levels[1:]), zero)
            total = loss_seg + cfg.lambda_seg_aux * loss_seg_aux
        prec.backward(total)
        losses = {"seg": loss_seg.detach()}
        if self.n_aux:
            losses["seg_aux"] = loss_seg_aux.detach()

        # (2) fool each level's discriminator on target maps
        tgt_size = tuple(target["image"].shape[-2:])
        with prec.autocast():
            out = self.model(target["image"])
            tgt_levels = [upsample(out["out"], tgt_size)] + [upsample(a, tgt_size) for a in aux_logits(out)]
            tgt_maps = [self_information(t) for t in tgt_levels]
            adv = [self._d_loss(d, m, SOURCE_DOMAIN) for d, m in zip(discs, tgt_maps)]
            extra = self.target_supervision(target, tgt_levels[0], tgt_levels[1:])
            total = sum((lam * a for lam, a in zip(lambdas_adv, adv)), zero) + sum(extra.values(), zero)
        prec.backward(total)
        losses.update({k: v.detach() for k, v in extra.items()})
        losses["adv"] = adv[0].detach()
        if self.n_aux:
            losses["adv_aux"] = sum(adv[1:], zero).detach()

        # (3) discriminators: source 0, target 1, on detached maps
        for p in self.discs.parameters():
            p.requires_grad_(True)
        with prec.autocast():
            loss_d = zero
            for d, s, t in zip(discs, src_levels, tgt_maps):
                loss_d = loss_d + 0.5 * (self._d_loss(d, self_information(s.detach()), SOURCE_DOMAIN)
                                         + self._d_loss(d, t.detach(), TARGET_DOMAIN))
        prec.backward(loss_d)
        losses["disc"] = loss_d.detach()
        for d in discs:
            average_gradients(d)

        prec.step(*self.optimizers.values())
        return {k: float(v) for k, v in losses.items()}
