"""One training stage of a workflow (``atool demo``, ``atool loop``, ``atool curve``).

``train_stage`` is ``atool train`` as a function: the stage's config sections
are laid over each other, the stage's paths over them, and the result goes
through the same ``build_config`` as the command line. The equivalent
``atool train ...`` command is logged, so any stage can be rerun alone.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Mapping
from typing import Any

from atool.core.config import build_config, option_args
from atool.core.train_config import TrainConfig

log = logging.getLogger("atool.workflows")


def train_stage(label: str, *sections: Mapping[str, Any], **paths: Any) -> dict[str, Any]:
    """Train one stage; returns ``atool.train.trainer.train``'s summary.

    ``sections``: partial TrainConfig mappings, later ones winning (e.g. the
    shared ``train:`` section, then ``{"seed": s}``, then the stage's own).
    ``paths``: the keys only this stage knows (``method``, ``source``,
    ``init``, ``out``, ...); None means 'not given', paths may be ``Path``.
    Unknown keys and bad values are BadInput before anything trains.
    """
    merged: dict[str, Any] = {}
    for section in sections:
        merged.update(section)
    given = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in paths.items()}
    cfg = build_config(TrainConfig, merged, given)
    shown = {k: getattr(cfg, k) for k in [*merged, *given] if k != "method"}
    words = ["atool", "train", cfg.method, *option_args(TrainConfig, shown)]
    log.info("[%s] %s", label, " ".join(shlex.quote(w) for w in words))
    from atool.train.trainer import train

    return train(cfg)


__all__ = ["train_stage"]
