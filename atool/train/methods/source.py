"""Supervised cross-entropy on the labeled (source) set: the source-only baseline."""

from __future__ import annotations

from atool.train.losses import seg_ce
from atool.train.methods import METHODS, Method


@METHODS.register("source")
class SourceOnly(Method):
    uses_source = True

    def step(self, source, target):
        opt = self.optimizers["model"]
        opt.zero_grad(set_to_none=True)
        loss = seg_ce(self.model(source["image"])["out"], source["label"])
        loss.backward()
        opt.step()
        return {"seg": loss.item()}
