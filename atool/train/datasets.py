"""Opening a training job's class list and its source / target crop datasets (for ``atool.train.trainer``)."""

from __future__ import annotations

import logging
from typing import Any

from atool.core.train_config import TrainConfig
from atool.core.errors import BadInput
from atool.data.adapters.folder import FolderDataset, read_classes, require_same_classes
from atool.data.adapters.registry import open_dataset, split_spec
from atool.data.crops import CropDataset, resolve_sparse_labels
from atool.train.methods import Method

log = logging.getLogger("atool.train")


def drop_bad_samples(folder: FolderDataset, what: str) -> list[tuple[str, str]]:
    """Decode every sample once; unreadable or inconsistent ones are dropped and reported."""
    bad = folder.check_all()
    if bad:
        ids = {sid for sid, _ in bad}
        folder.items = [it for it in folder.items if it[0] not in ids]
        log.warning("%s: skipped %d unusable sample(s); first: %s", what, len(bad), bad[0][1])
        if not folder.items:
            raise BadInput(f"{what}: no usable samples left ({bad[0][1]})")
    return bad


def _target_classes(target: str, classes: list[str]) -> list[str]:
    path = split_spec(target)[1] / "classes.txt"
    if path.is_file():
        require_same_classes(classes, read_classes(path), f"target {target}")
    return classes


def resolve_classes(cfg: TrainConfig, init_ckpt: dict[str, Any] | None) -> list[str]:
    """The job's class names: the source's, else the target's, else ``--init``'s (which must agree with them)."""
    for what, path in (("source", cfg.source), ("target", cfg.target)):
        if path and not split_spec(path)[1].is_dir():
            raise BadInput(f"{what} folder {path} does not exist")
    if cfg.source:
        root = split_spec(cfg.source)[1]
        if (root / "classes.txt").is_file():
            classes = read_classes(root / "classes.txt")
        else:  # an adapter layout (gta5, synthia, cityscapes): its class set, matched to --init's if given
            hint = list(init_ckpt["classes"]) if init_ckpt else None
            classes = list(open_dataset(cfg.source, labels=cfg.source_labels, require_labels=True, classes=hint).classes)
    elif cfg.target and (split_spec(cfg.target)[1] / "classes.txt").is_file():
        classes = read_classes(split_spec(cfg.target)[1] / "classes.txt")
    elif init_ckpt:
        classes = list(init_ckpt["classes"])
    else:
        raise BadInput("no class list: give --source (with classes.txt) or --init")
    if init_ckpt:
        require_same_classes(init_ckpt["classes"], classes, f"--init {cfg.init}")
    return classes


def open_datasets(
    cfg: TrainConfig, m: type[Method], classes: list[str], skipped: dict[str, list],
) -> tuple[CropDataset | None, CropDataset | None]:
    """(source, target) crop datasets for method ``m`` (None where it uses none); dropped samples go to ``skipped``."""
    source = target = None
    if m.uses_source:
        if not cfg.source:
            raise BadInput(f"method {cfg.method} needs --source (a labeled dataset folder)")
        folder = open_dataset(cfg.source, labels=cfg.source_labels, require_labels=True, classes=classes)
        skipped["source"] = drop_bad_samples(folder, f"source {cfg.source}")
        source = CropDataset(folder, cfg.crop, flip=cfg.flip, cache=cfg.cache, size=cfg.source_size)
    if m.uses_target:
        if not cfg.target:
            raise BadInput(f"method {cfg.method} needs --target (a folder with images/)")
        target_classes = _target_classes(cfg.target, classes)
        labels, origin = None, None
        if m.needs_target_labels:
            if not cfg.target_labels:
                raise BadInput(f"method {cfg.method} needs --target-labels (an `atool ingest` output folder)")
            labels, origin = resolve_sparse_labels(cfg.target_labels)
        folder = open_dataset(cfg.target, labels=labels, classes=target_classes)
        if m.needs_target_labels and folder.labeled_count() == 0:
            raise BadInput(f"no target image has a label in {labels}; do the file names match {cfg.target}/images?")
        skipped["target"] = drop_bad_samples(folder, f"target {cfg.target}")
        target = CropDataset(
            folder, cfg.target_crop or cfg.crop, flip=cfg.flip, with_labels=m.needs_target_labels, origin_dir=origin,
            weights=(cfg.oracle_weight, cfg.pseudo_weight), grown_weight=cfg.grown_weight,
            crop_on_labels=cfg.crop_on_labels, cache=cfg.cache, size=cfg.target_size,
            class_balance=cfg.click_balance if m.needs_target_labels else 0.0,
        )
        if target.class_factors is not None:
            f = target.class_factors
            shown = ", ".join(f"{name} {f[c]:.2f}" for c, name in enumerate(classes) if f[c] > 0)
            absent = ", ".join(name for c, name in enumerate(classes) if f[c] == 0) or "none"
            log.info("click_balance %g: target label weight per class: %s; no labels: %s", cfg.click_balance, shown, absent)
    return source, target
