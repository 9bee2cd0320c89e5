"""The one training loop. Methods plug their step in (atool/train/methods).

The loop owns data, iteration, the poly LR schedule, logging, checkpoints,
resume and evaluation; a method owns only its losses and optimiser updates.
"""

from __future__ import annotations

import logging
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import atool
from atool.config import TrainConfig, config_dict, write_config
from atool.data.folder import FolderDataset, read_classes, require_same_classes
from atool.errors import BadInput, Mismatch
from atool.io_utils import atomic_write_json
from atool.models import build_model
from atool.train.checkpoint import IMAGENET_MEAN, IMAGENET_STD, load_checkpoint, model_from_checkpoint, save_checkpoint
from atool.train.data import CropDataset, endless_batches, resolve_sparse_labels
from atool.train.evaluate import evaluate, torch_predictor
from atool.train.methods import METHODS, Method

log = logging.getLogger("atool.train")


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _drop_bad_samples(folder: FolderDataset, what: str) -> list[tuple[str, str]]:
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
    path = Path(target) / "classes.txt"
    if path.is_file():
        require_same_classes(classes, read_classes(path), f"target {target}")
    return classes


class Trainer:
    def __init__(self, cfg: TrainConfig) -> None:
        cfg.validate()
        self.cfg = cfg
        self.method_cls = METHODS.get(cfg.method)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.skipped: dict[str, list] = {}
        self._init_ckpt = load_checkpoint(cfg.init) if cfg.init else None
        self.classes = self._resolve_classes()
        self.source, self.target = self._datasets()

    def _resolve_classes(self) -> list[str]:
        cfg = self.cfg
        for what, path in (("source", cfg.source), ("target", cfg.target)):
            if path and not Path(path).is_dir():
                raise BadInput(f"{what} folder {path} does not exist")
        if cfg.source:
            classes = read_classes(Path(cfg.source) / "classes.txt")
        elif cfg.target and (Path(cfg.target) / "classes.txt").is_file():
            classes = read_classes(Path(cfg.target) / "classes.txt")
        elif self._init_ckpt:
            classes = list(self._init_ckpt["classes"])
        else:
            raise BadInput("no class list: give --source (with classes.txt) or --init")
        if self._init_ckpt:
            require_same_classes(self._init_ckpt["classes"], classes, f"--init {cfg.init}")
        return classes

    def _datasets(self) -> tuple[CropDataset | None, CropDataset | None]:
        cfg, m = self.cfg, self.method_cls
        source = target = None
        if m.uses_source:
            if not cfg.source:
                raise BadInput(f"method {cfg.method} needs --source (a labeled dataset folder)")
            folder = FolderDataset(cfg.source, labels=cfg.source_labels, require_labels=True, classes=self.classes)
            self.skipped["source"] = _drop_bad_samples(folder, f"source {cfg.source}")
            source = CropDataset(folder, cfg.crop, flip=cfg.flip, cache=cfg.cache)
        if m.uses_target:
            if not cfg.target:
                raise BadInput(f"method {cfg.method} needs --target (a folder with images/)")
            classes = _target_classes(cfg.target, self.classes)
            labels, origin = None, None
            if m.needs_target_labels:
                if not cfg.target_labels:
                    raise BadInput(f"method {cfg.method} needs --target-labels (an `atool ingest` output folder)")
                labels, origin = resolve_sparse_labels(cfg.target_labels)
            folder = FolderDataset(cfg.target, labels=labels, classes=classes)
            if m.needs_target_labels and folder.labeled_count() == 0:
                raise BadInput(f"no target image has a label in {labels}; do the file names match {cfg.target}/images?")
            self.skipped["target"] = _drop_bad_samples(folder, f"target {cfg.target}")
            target = CropDataset(
                folder, cfg.crop, flip=cfg.flip, with_labels=m.needs_target_labels, origin_dir=origin,
                weights=(cfg.oracle_weight, cfg.pseudo_weight), cache=cfg.cache,
            )
        return source, target

    def _model(self) -> tuple[torch.nn.Module, str, dict[str, Any]]:
        cfg = self.cfg
        if self._init_ckpt:
            ck = self._init_ckpt
            if ck["model"]["name"] != cfg.model:
                log.info("--init: using the checkpoint's model %s", ck["model"]["name"])
            return model_from_checkpoint(ck).train(), ck["model"]["name"], dict(ck["model"]["args"])
        args = {"backbone_weights": cfg.weights} if cfg.weights else {}
        model = build_model(cfg.model, len(self.classes), **args)
        args.pop("backbone_weights", None)
        return model, cfg.model, args

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        _seed_all(cfg.seed)
        model, model_name, model_args = self._model()
        model.to(self.device).train()
        method: Method = self.method_cls(cfg, len(self.classes), self.device)
        optimizers = method.setup(model)
        base_lrs = {k: [g["lr"] for g in o.param_groups] for k, o in optimizers.items()}
        step = 0
        out = Path(cfg.out)
        if cfg.resume and out.is_file():
            step = self._resume(out, model, model_name, model_args, method)

        src_iter = endless_batches(self.source, cfg.batch_size, cfg.seed, step, cfg.workers) if self.source else None
        tgt_iter = endless_batches(self.target, cfg.batch_size, cfg.seed + 1, step, cfg.workers) if self.target else None
        write_config(cfg, out.with_suffix(".yaml"))

        def save(at: int) -> None:
            save_checkpoint(
                out, model=model, model_name=model_name, model_args=model_args, classes=self.classes, step=at,
                method_state=method.state_dict(), config=config_dict(cfg),
                rng={"torch": torch.get_rng_state()},
            )

        show_bar = cfg.progress if cfg.progress is not None else sys.stderr.isatty()
        bar = None
        if show_bar:
            from tqdm import tqdm

            bar = tqdm(total=cfg.iters, initial=step, desc=f"train {cfg.method}", unit="it", dynamic_ncols=True)
        running: dict[str, float] = {}
        t0 = time.perf_counter()
        start_step = step
        while step < cfg.iters:
            self._set_lr(optimizers, base_lrs, step)
            src = _to(next(src_iter), self.device) if src_iter else None
            tgt = _to(next(tgt_iter), self.device) if tgt_iter else None
            losses = method.step(src, tgt)
            bad = [k for k, v in losses.items() if not math.isfinite(v)]
            if bad:
                raise atool.errors.Failure(f"loss {bad[0]} became {losses[bad[0]]} at step {step}; lower --lr")
            step += 1
            for k, v in losses.items():
                running[k] = running.get(k, 0.0) + v
            if bar is not None:
                bar.update(1)
            if cfg.log_every and step % cfg.log_every == 0:
                n = cfg.log_every
                msg = " ".join(f"{k}={v / n:.4f}" for k, v in running.items())
                (bar.write if bar else log.info)(f"step {step}/{cfg.iters} {msg}")
                running.clear()
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.iters:
                save(step)
            if cfg.eval_every and cfg.val and step % cfg.eval_every == 0 and step < cfg.iters:
                log.info("step %d val mIoU %.2f", step, self.evaluate(model) * 100)
        if bar is not None:
            bar.close()
        elapsed = time.perf_counter() - t0
        save(step)
        summary: dict[str, Any] = {
            "out": str(out),
            "method": cfg.method,
            "model": model_name,
            "steps": step,
            "steps_run": step - start_step,
            "seconds": round(elapsed, 2),
            "skipped": {k: [{"id": i, "reason": r} for i, r in v] for k, v in self.skipped.items() if v},
        }
        if cfg.val:
            summary["val_miou"] = round(self.evaluate(model) * 100, 2)
            log.info("val mIoU %.2f", summary["val_miou"])
        atomic_write_json(out.with_suffix(".json"), summary)
        return summary

    def evaluate(self, model: torch.nn.Module) -> float:
        folder = FolderDataset(self.cfg.val, require_labels=True)
        require_same_classes(self.classes, folder.classes, f"--val {self.cfg.val}")
        return evaluate(torch_predictor(model, *_norm(), len(self.classes), self.device), folder).miou

    def _set_lr(self, optimizers, base_lrs, step: int) -> None:
        cfg = self.cfg
        if cfg.warmup_iters and step < cfg.warmup_iters:
            factor = (step + 1) / cfg.warmup_iters
        else:
            factor = (1 - step / max(cfg.iters, 1)) ** cfg.poly_power
        for k, opt in optimizers.items():
            for g, base in zip(opt.param_groups, base_lrs[k]):
                g["lr"] = base * factor

    def _resume(self, out: Path, model, model_name, model_args, method: Method) -> int:
        ck = load_checkpoint(out)
        if ck["model"]["name"] != model_name or dict(ck["model"]["args"]) != dict(model_args):
            raise Mismatch(f"cannot resume {out}: it holds model {ck['model']['name']} {ck['model']['args']}, this run builds {model_name} {model_args}")
        if ck.get("config", {}).get("method") not in (None, self.cfg.method):
            raise Mismatch(f"cannot resume {out}: it was trained with method {ck['config']['method']}, not {self.cfg.method}")
        require_same_classes(ck["classes"], self.classes, f"resume {out}")
        model.load_state_dict(ck["state_dict"])
        method.load_state_dict(ck.get("method_state", {}))
        if "torch" in ck.get("rng", {}):
            torch.set_rng_state(ck["rng"]["torch"])
        log.info("resumed %s at step %d", out, ck["step"])
        return int(ck["step"])


def _norm() -> tuple[list[float], list[float]]:
    return IMAGENET_MEAN, IMAGENET_STD


# Checkpoints record these as their input normalisation (DeployModel applies the same).
_MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255
_INV_STD = 1.0 / (torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255)


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    out = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    out["image"] = (out["image"].float() - _MEAN.to(device)) * _INV_STD.to(device)
    return out


def train(cfg: TrainConfig) -> dict[str, Any]:
    return Trainer(cfg).run()
