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

    def target_supervision(self, target, logits):
        return {"target_ce": seg_ce(logits, target["label"], target.get("weight"))}
