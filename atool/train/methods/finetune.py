"""LabOR's retraining step (Shin et al., eq. 6): source CE + CE on the labeled target pixels.

No discriminator: once annotators have labeled the pixels the selector found,
LabOR retrains on them directly. The target labels come from ``--target-labels``
(an ``atool ingest`` folder, or the labels accumulated over ``atool loop``
stages); 255 pixels carry no loss.
"""

from __future__ import annotations

from atool.train.losses import seg_ce
from atool.train.methods import METHODS, Method


@METHODS.register("finetune")
class TargetFinetune(Method):
    uses_source = True
    uses_target = True
    needs_target_labels = True

    def step(self, source, target):
        opt = self.optimizers["model"]
        opt.zero_grad(set_to_none=True)
        loss_src = seg_ce(self.model(source["image"])["out"], source["label"])
        loss_tgt = seg_ce(self.model(target["image"])["out"], target["label"], target.get("weight"))
        (loss_src + loss_tgt).backward()
        opt.step()
        return {"seg": loss_src.item(), "target_ce": loss_tgt.item()}
