"""IntraDA's intra-domain stage: ADVENT from the easy target split to the hard one.

The easy split (pseudo-labelled by the inter-domain model) plays the labeled
source, the hard split the unlabeled target (Pan et al., CVPR'20). Two ways in:

* ``atool train intrada --init ADVENT.pt --target CITYSCAPES --out intra.pt``:
  with no ``--source`` the loop first ranks the target by entropy with the
  ``--init`` model (``atool.train.entropy_ranking.rank_by_entropy``, ``--easy-ratio``,
  default 0.67) into ``--intrada-split`` (default ``intra.intrada/``), then
  trains from ``SPLIT/easy`` to ``SPLIT/hard``. A finished ranking of the same
  target by the same checkpoint is reused (so ``--resume`` does not redo it).
* ``--source SPLIT/easy --target SPLIT/hard``: a split made earlier.

Training starts from the ``--init`` weights (IntraDA's release restarts from
ImageNet weights; pass ``--init`` of such a checkpoint's twin if you want that).
"""

from __future__ import annotations

from pathlib import Path

from atool.core.config import TrainConfig
from atool.core.errors import BadInput
from atool.train.methods import METHODS
from atool.train.methods.advent import Advent


@METHODS.register("intrada")
class IntraDA(Advent):
    @classmethod
    def prepare(cls, cfg: TrainConfig, *, is_main: bool, barrier, device) -> None:
        """Fill ``cfg.source``/``cfg.target`` from an entropy ranking when no ``--source`` is given."""
        if cfg.source:
            return
        if not cfg.init or not cfg.target:
            raise BadInput("intrada needs --init (the inter-domain model) and --target (the full target set), "
                           "or --source SPLIT/easy --target SPLIT/hard from an earlier ranking")
        from atool.train.entropy_ranking import existing_ranking, rank_by_entropy

        split = Path(cfg.intrada_split) if cfg.intrada_split else Path(cfg.out).with_suffix("").with_name(Path(cfg.out).stem + ".intrada")
        if is_main and not existing_ranking(split, cfg.init, cfg.target, cfg.easy_ratio):
            rank_by_entropy(cfg.init, cfg.target, split, cfg.easy_ratio, threshold=cfg.pseudo_threshold,
                            portion=cfg.class_balanced_portion, size=cfg.target_size, device=device)
        barrier()
        cfg.intrada_split = str(split)
        cfg.source, cfg.target = str(split / "easy"), str(split / "hard")
