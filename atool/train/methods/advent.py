"""ADVENT: adversarial alignment of target entropy maps (Vu et al., DESIGN.md §4).

One step: (1) segmenter on source CE; (2) segmenter fools D on target
self-information with weight lambda_adv, D frozen; (3) D learns source (0) vs
target (1) on detached maps. D uses Adam (lr_d, betas 0.9/0.99).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from atool.models.discriminator import EntropyDiscriminator
from atool.train.losses import seg_ce, self_information, upsample
from atool.train.methods import METHODS, Method

SOURCE_DOMAIN, TARGET_DOMAIN = 0.0, 1.0


@METHODS.register("advent")
class Advent(Method):
    uses_source = True
    uses_target = True

    def setup(self, model):
        super().setup(model)
        self.disc = EntropyDiscriminator(self.num_classes, self.cfg.disc_channels).to(self.device)
        self.optimizers["disc"] = torch.optim.Adam(self.disc.parameters(), lr=self.cfg.lr_d, betas=(0.9, 0.99))
        return self.optimizers

    def extra_modules(self):
        return {"disc": self.disc}

    def target_supervision(self, target, logits) -> dict[str, torch.Tensor]:
        """Hook for methods that also have target labels (adapt)."""
        return {}

    def _d_loss(self, maps: torch.Tensor, domain: float) -> torch.Tensor:
        out = self.disc(maps)
        return F.binary_cross_entropy_with_logits(out, torch.full_like(out, domain))

    def step(self, source, target):
        opt, opt_d = self.optimizers["model"], self.optimizers["disc"]
        opt.zero_grad(set_to_none=True)
        opt_d.zero_grad(set_to_none=True)
        for p in self.disc.parameters():
            p.requires_grad_(False)

        src_logits = upsample(self.model(source["image"])["out"], tuple(source["label"].shape[-2:]))
        loss_seg = seg_ce(src_logits, source["label"])
        loss_seg.backward()

        tgt_logits = upsample(self.model(target["image"])["out"], tuple(target["image"].shape[-2:]))
        tgt_map = self_information(tgt_logits)
        losses = {"seg": loss_seg}
        extra = self.target_supervision(target, tgt_logits)
        loss_adv = self._d_loss(tgt_map, SOURCE_DOMAIN)
        total = self.cfg.lambda_adv * loss_adv + sum(extra.values(), torch.zeros((), device=self.device))
        total.backward()
        losses.update(extra)
        losses["adv"] = loss_adv

        for p in self.disc.parameters():
            p.requires_grad_(True)
        src_map = self_information(src_logits.detach())
        loss_d = 0.5 * (self._d_loss(src_map, SOURCE_DOMAIN) + self._d_loss(tgt_map.detach(), TARGET_DOMAIN))
        loss_d.backward()
        losses["disc"] = loss_d

        opt.step()
        opt_d.step()
        return {k: v.item() for k, v in losses.items()}
