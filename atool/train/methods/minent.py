"""MinEnt: direct target entropy minimisation (Vu et al., ADVENT, CVPR'19 §3.1).

    L = CE(source) + lambda_ent * mean_pixels(H(P_t) / log C)  [+ the aux level]

No discriminator. ``lambda_ent`` = 1e-3 on the main level and
``lambda_ent_aux`` = 2e-4 on the auxiliary level when the model has one
(ADVENT's released MinEnt settings); source CE on the aux level is weighted
``lambda_seg_aux``.
"""

from __future__ import annotations


from atool.ops.uncertainty_torch import mean_entropy
from atool.train.amp import precision_of
from atool.train.losses import aux_logits, upsample
from atool.train.methods import METHODS, Method
from atool.train.methods.source import source_ce


@METHODS.register("minent")
class MinEnt(Method):
    uses_source = True
    uses_target = True
    supports_amp = True

    def step(self, source, target):
        prec = precision_of(self)
        opt = self.optimizers["model"]
        opt.zero_grad(set_to_none=True)
        with prec.autocast():
            loss, losses = source_ce(self, source)
        prec.backward(loss)
        size = tuple(target["image"].shape[-2:])
        with prec.autocast():
            out = self.model(target["image"])
            ent = mean_entropy(upsample(out["out"], size))
            total = self.cfg.lambda_ent * ent
            aux = aux_logits(out)
            if aux:
                ent_aux = sum(mean_entropy(upsample(a, size)) for a in aux)
                total = total + self.cfg.lambda_ent_aux * ent_aux
                losses["ent_aux"] = ent_aux.detach()
        prec.backward(total)
        losses["ent"] = ent.detach()
        prec.step(opt)
        return {k: float(v) for k, v in losses.items()}
