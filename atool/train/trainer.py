"""The one training loop. Methods plug their step in (atool/train/methods).

The loop owns data, iteration, the poly LR schedule, logging, checkpoints,
resume, evaluation, mixed precision and distributed training; a method owns
only its losses and optimiser updates.

* **Poly LR**: every optimiser's groups get ``lr * (1 - step / horizon) ** poly_power``
  (``horizon`` = ``poly_iters`` or ``iters``), after an optional linear warm-up.
* **DDP**: under ``torchrun --nproc_per_node N -m atool.cli train ...`` each
  rank joins the process group (gloo on CPU, NCCL on CUDA), the model is
  wrapped in DistributedDataParallel, every rank reads its own shard of each
  batch stream with its own RNG seed, and only rank 0 writes the checkpoint,
  the resolved config, the summary and the logs (``atool.train.distributed``).
  ``batch_size`` is per rank.
* **AMP**: ``amp: true`` on CUDA runs methods that support it under autocast
  (``amp_dtype`` bf16, or fp16 with a GradScaler); on CPU it is ignored with a log line.
* **Bit-exact resume**: checkpoints hold the torch (CPU and CUDA), numpy and
  Python RNG states of every rank, the optimiser and method states, the
  GradScaler and the number of samples each batch stream consumed, so N steps
  equal N/2 steps, ``--resume``, N/2 more (tested on CPU with ``torch.equal``).
  ``stop_after`` ends an invocation early (e.g. a job slot's time limit)
  without changing the LR schedule.
* **freeze_bn** freezes BatchNorm (``atool.models.batchnorm``).
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
from atool.core.config import TrainConfig, config_dict, write_config
from atool.data.adapters.folder import require_same_classes
from atool.data.adapters.registry import class_set_of, open_dataset
from atool.core.errors import Mismatch
from atool.core.io import atomic_write_json
from atool.models import build_model
from atool.train import distributed as ddp
from atool.train.amp import FP32, Precision
from atool.core.checkpoint import IMAGENET_MEAN, IMAGENET_STD, save_checkpoint
from atool.models.checkpoint import load_checkpoint, model_from_checkpoint
from atool.data.crops import CropDataset, endless_batches
from atool.eval.evaluate import evaluate, torch_predictor
from atool.ops.normalize import normalization, normalize
from atool.train.datasets import open_datasets, resolve_classes
from atool.train.methods import METHODS, Method

log = logging.getLogger("atool.train")


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def poly_lr_factor(step: int, iters: int, power: float, warmup_iters: int = 0) -> float:
    """Multiplier of the base LR at ``step`` (0-based): ``(1 - step / iters) ** power``.

    During ``warmup_iters`` it rises linearly, ``(step + 1) / warmup_iters``, instead.
    """
    if warmup_iters and step < warmup_iters:
        return (step + 1) / warmup_iters
    return max(0.0, 1 - step / max(iters, 1)) ** power


def runtime_info(device: torch.device) -> dict[str, Any]:
    """What decides the floating-point results besides the config and seed (recorded with every run).

    On CPU a run is bit-exact only against a run with the same torch version, kernel set (CPU
    capability) and intra-op thread count: reductions are split by thread, so 1 and 2 threads
    already differ in the last bits after a few steps, and training amplifies that.
    """
    info: dict[str, Any] = {
        "torch": str(torch.__version__),  # a TorchVersion, which weights_only loading refuses
        "device": device.type,
        "threads": torch.get_num_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }
    if device.type == "cpu":
        info["cpu_capability"] = str(torch.backends.cpu.get_cpu_capability())
    else:
        info["gpu"] = str(torch.cuda.get_device_name(device))
        info["cudnn_deterministic"] = bool(torch.backends.cudnn.deterministic)
    return info


def rng_state(device: torch.device) -> dict[str, Any]:
    """Every RNG a training step may draw from, in a form ``torch.load(weights_only=True)`` reads."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "numpy" in state:
        s = state["numpy"]
        np.random.set_state((s["kind"], s["keys"].numpy().astype(np.uint32), s["pos"], s["has_gauss"], s["gauss"]))
    if "python" in state:
        s = state["python"]
        random.setstate((s["version"], tuple(s["internal"]), s["gauss_next"]))
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


class Trainer:
    def __init__(self, cfg: TrainConfig, dist: ddp.DistInfo | None = None) -> None:
        cfg.validate()
        self.cfg = cfg
        self.method_cls = METHODS.get(cfg.method)
        self.dist = dist if dist is not None else ddp.setup()
        self.device = self.dist.device
        if not self.dist.is_main:
            logging.getLogger("atool").setLevel(logging.WARNING)  # rank 0 logs for everyone
        self.skipped: dict[str, list] = {}
        self._init_ckpt = load_checkpoint(cfg.init) if cfg.init else None
        self.method_cls.prepare(cfg, is_main=self.dist.is_main, barrier=lambda: ddp.barrier(self.dist), device=self.device)
        self.classes = resolve_classes(cfg, self._init_ckpt)
        self.source, self.target = open_datasets(cfg, self.method_cls, self.classes, self.skipped)

    def _model(self) -> tuple[torch.nn.Module, str, dict[str, Any]]:
        cfg = self.cfg
        if self._init_ckpt:
            ck = self._init_ckpt
            if ck["model"]["name"] != cfg.model:
                log.info("--init: using the checkpoint's model %s", ck["model"]["name"])
            if cfg.weights:
                log.warning("--backbone-weights %s ignored: the weights come from --init %s", cfg.weights, cfg.init)
            model, name, args = model_from_checkpoint(ck).train(), ck["model"]["name"], dict(ck["model"]["args"])
        else:
            args = {"backbone_weights": cfg.weights} if cfg.weights else {}
            model = build_model(cfg.model, len(self.classes), **args)
            args.pop("backbone_weights", None)
            name = cfg.model
        if cfg.freeze_bn:
            from atool.models.batchnorm import freeze_batchnorm

            log.info("froze %d BatchNorm layer(s)", freeze_batchnorm(model))
        return model, name, args

    def _precision(self, method: Method) -> Precision:
        cfg = self.cfg
        if not cfg.amp:
            return FP32
        if self.device.type != "cuda":
            log.info("amp: ignored on %s (mixed precision needs CUDA); training in fp32", self.device.type)
            return FP32
        if not method.supports_amp:
            log.info("amp: method %s does not support it; training in fp32", cfg.method)
            return FP32
        dtype = cfg.amp_dtype
        if dtype == "bf16" and not torch.cuda.is_bf16_supported():
            log.info("amp: this GPU has no bf16; using fp16 with a GradScaler")
            dtype = "fp16"
        prec = Precision(True, dtype, "cuda")
        log.info("amp: %s", prec.name)
        return prec

    def run(self) -> dict[str, Any]:
        if self.device.type != "cpu":
            return self._run()
        # On CPU every op atool uses has a deterministic kernel: the flag costs nothing and makes a
        # future op without one say so (a warning) instead of silently breaking bit-exact resume.
        before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            return self._run()
        finally:
            torch.use_deterministic_algorithms(before[0], warn_only=before[1])

    def _run(self) -> dict[str, Any]:
        cfg, dist = self.cfg, self.dist
        _seed_all(cfg.seed)  # same on every rank: identical model and discriminator initialisation
        net, model_name, model_args = self._model()
        method: Method = self.method_cls(cfg, len(self.classes), self.device)
        # A method may train a model built around the given one (the LabOR selector); it is what gets saved.
        net, model_name, model_args = method.wrap_model(net, model_name, model_args)
        net.to(self.device).train()  # frozen BatchNorm stays in eval mode (its pre-hook)
        model = ddp.wrap_model(net, dist)
        method.precision = self._precision(method)
        optimizers = method.setup(model)
        base_lrs = {k: [g["lr"] for g in o.param_groups] for k, o in optimizers.items()}
        if dist.enabled:
            _seed_all(cfg.seed + 1_000_003 * dist.rank)  # each rank draws its own randomness from here on
            log.info("DDP: %d ranks (%s), batch %d per rank", dist.world_size, "nccl" if self.device.type == "cuda" else "gloo", cfg.batch_size)
        step = 0
        per_step = cfg.batch_size * dist.world_size
        consumed = {"source": 0, "target": 0}
        out = Path(cfg.out)
        if cfg.resume and out.is_file():
            step, consumed = self._resume(out, net, model_name, model_args, method)
        elif cfg.resume:
            log.info("--resume: %s does not exist yet; starting at step 0", out)

        def stream(ds: CropDataset | None, what: str, seed: int):
            if ds is None:
                return None
            return endless_batches(ds, cfg.batch_size, seed, consumed[what], cfg.workers, rank=dist.rank, world_size=dist.world_size)

        src_iter = stream(self.source, "source", cfg.seed)
        tgt_iter = stream(self.target, "target", cfg.seed + 1)
        config_written = False

        def save(at: int) -> None:
            nonlocal config_written
            states = ddp.gather_objects(rng_state(self.device))  # a collective: every rank takes part
            if not dist.is_main:
                return
            method_state = method.state_dict()
            if method.precision.enabled:
                method_state["precision"] = method.precision.state_dict()
            save_checkpoint(
                out, model=net, model_name=model_name, model_args=model_args, classes=self.classes, step=at,
                method_state=method_state, config=config_dict(cfg),
                rng={"per_rank": states, "world_size": dist.world_size, "torch": states[0]["torch"]},
                data={k: int(v) for k, v in consumed.items()}, runtime=runtime_info(self.device),
            )
            if not config_written:
                # After the checkpoint, never before: a run that dies (kill, full disk) before
                # its first checkpoint leaves OUT and its .yaml describing the same earlier run.
                write_config(cfg, out.with_suffix(".yaml"))
                config_written = True

        stop = cfg.iters if not cfg.stop_after else min(cfg.iters, step + cfg.stop_after)
        show_bar = dist.is_main and (cfg.progress if cfg.progress is not None else sys.stderr.isatty())
        bar = None
        if show_bar:
            from tqdm import tqdm

            bar = tqdm(total=cfg.iters, initial=step, desc=f"train {cfg.method}", unit="it", dynamic_ncols=True)
        running: dict[str, float] = {}
        t0 = time.perf_counter()
        start_step = step
        while step < stop:
            self._set_lr(optimizers, base_lrs, step)
            src = _to(next(src_iter), self.device) if src_iter else None
            tgt = _to(next(tgt_iter), self.device) if tgt_iter else None
            losses = method.step(src, tgt)
            bad = [k for k, v in losses.items() if not math.isfinite(v)]
            if bad:
                raise atool.core.errors.Failure(f"loss {bad[0]} became {losses[bad[0]]} at step {step}; lower --lr")
            step += 1
            consumed["source"] += per_step if src_iter else 0
            consumed["target"] += per_step if tgt_iter else 0
            for k, v in losses.items():
                running[k] = running.get(k, 0.0) + v
            if bar is not None:
                bar.update(1)
            if cfg.log_every and step % cfg.log_every == 0:
                n = cfg.log_every
                msg = " ".join(f"{k}={v / n:.4f}" for k, v in running.items())
                if dist.is_main:
                    (bar.write if bar else log.info)(f"step {step}/{cfg.iters} {msg}")
                running.clear()
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < stop:
                save(step)
            if cfg.eval_every and cfg.val and step % cfg.eval_every == 0 and step < stop:
                if dist.is_main:
                    log.info("step %d val mIoU %.2f", step, self.evaluate(net) * 100)
                ddp.barrier(dist)
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
            "world_size": dist.world_size,
            "rank": dist.rank,
            "precision": method.precision.name,
            "runtime": runtime_info(self.device),
            "skipped": {k: [{"id": i, "reason": r} for i, r in v] for k, v in self.skipped.items() if v},
        }
        if step < cfg.iters:
            summary["stopped_at"] = step
            log.info("stopped at step %d of %d (stop_after); continue with --resume", step, cfg.iters)
        if cfg.val and dist.is_main:
            summary["val_miou"] = round(self.evaluate(net) * 100, 2)
            log.info("val mIoU %.2f", summary["val_miou"])
        if dist.is_main:
            atomic_write_json(out.with_suffix(".json"), summary)
        ddp.barrier(dist)
        return summary

    def evaluate(self, model: torch.nn.Module) -> float:
        folder = open_dataset(self.cfg.val, require_labels=True, class_set=class_set_of(self.classes))
        require_same_classes(self.classes, folder.classes, f"--val {self.cfg.val}")
        return evaluate(torch_predictor(model, *_norm(), len(self.classes), self.device), folder).miou

    def _set_lr(self, optimizers, base_lrs, step: int) -> None:
        cfg = self.cfg
        factor = poly_lr_factor(step, cfg.poly_iters or cfg.iters, cfg.poly_power, cfg.warmup_iters)
        for k, opt in optimizers.items():
            for g, base in zip(opt.param_groups, base_lrs[k]):
                g["lr"] = base * factor

    def _resume(self, out: Path, net, model_name, model_args, method: Method) -> tuple[int, dict[str, int]]:
        ck = load_checkpoint(out)
        if ck["model"]["name"] != model_name or dict(ck["model"]["args"]) != dict(model_args):
            raise Mismatch(f"cannot resume {out}: it holds model {ck['model']['name']} {ck['model']['args']}, this run builds {model_name} {model_args}; "
                           "give the same --model, or another --out")
        if ck.get("config", {}).get("method") not in (None, self.cfg.method):
            raise Mismatch(f"cannot resume {out}: it was trained with method {ck['config']['method']}, not {self.cfg.method}")
        require_same_classes(ck["classes"], self.classes, f"resume {out}")
        try:
            net.load_state_dict(ck["state_dict"])
        except RuntimeError as exc:
            raise Mismatch(f"cannot resume {out}: its weights do not fit model {model_name} ({str(exc).splitlines()[0][:160]})") from None
        try:
            method.load_state_dict(ck.get("method_state", {}))
        except (RuntimeError, ValueError, KeyError) as exc:
            raise Mismatch(f"cannot resume {out}: its {self.cfg.method} state does not fit this run ({str(exc).splitlines()[0][:160]})") from None
        method.precision.load_state_dict(ck.get("method_state", {}).get("precision", {}))
        rng = ck.get("rng", {})
        states = rng.get("per_rank")
        if states and len(states) == self.dist.world_size:
            set_rng_state(states[self.dist.rank], self.device)
        elif states:
            log.warning("resume: %s was written by %d rank(s), this run has %d; RNG streams restart (not bit-exact)",
                        out, len(states), self.dist.world_size)
        elif "torch" in rng:
            torch.set_rng_state(rng["torch"])
        step = int(ck["step"])
        per_step = self.cfg.batch_size * self.dist.world_size
        data = ck.get("data") or {}
        consumed = {k: int(data.get(k, step * per_step)) for k in ("source", "target")}
        log.info("resumed %s at step %d", out, step)
        return step, consumed


def _norm() -> tuple[list[float], list[float]]:
    return IMAGENET_MEAN, IMAGENET_STD


# Checkpoints record these as their input normalisation (DeployModel applies the same).
_SHIFT, _INV_SCALE = normalization(IMAGENET_MEAN, IMAGENET_STD)


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    out = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    out["image"] = normalize(out["image"], _SHIFT.to(device), _INV_SCALE.to(device))
    return out


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run one training job (one process, or one rank of a torchrun job); returns its summary."""
    dist = ddp.setup()
    try:
        return Trainer(cfg, dist).run()
    finally:
        ddp.cleanup(dist)
