"""The active-points paper's G2 (Pan et al., eqs. 7-9):

    L = CE(source) + CE(target labeled pixels) + lambda_adv * L_adv(target entropy)

The target labels are sparse: oracle clicks plus pseudo-labelled points, read
from ``--target-labels`` (an ``atool ingest`` folder). Clicks and pseudo labels
can be weighted apart (``oracle_weight``, ``pseudo_weight``) because pseudo
labels from a weak model teach its mistakes (DESIGN.md, measured pitfalls).
"""

from __future__ import annotations

from atool.train.losses import seg_ce
from atool.train.methods import METHODS
from atool.train.methods.advent import Advent


@METHODS.register("adapt")
class ActiveAdapt(Advent):
    needs_target_labels = True

    def target_supervision(self, target, logits, aux):
        losses = {"target_ce": seg_ce(logits, target["label"], target.get("weight"))}
        if aux:
            # Multi-level: the auxiliary classifier learns the clicks too, at its source-CE weight.
            aux_ce = sum(seg_ce(a, target["label"], target.get("weight")) for a in aux)
            losses["target_ce_aux"] = self.cfg.lambda_seg_aux * aux_ce
        return losses
