"""Distributed data parallel training under ``torchrun`` (DESIGN.md §2: the loop owns it).

``torchrun --nproc_per_node N -m atool.cli train ...`` starts N processes with
``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` set. ``setup`` then joins the
process group (NCCL on CUDA, gloo on CPU), each rank takes GPU ``LOCAL_RANK``,
the model is wrapped in ``DistributedDataParallel``, modules a method owns
(discriminators) have their gradients averaged by hand (``average_gradients``),
every rank reads its own shard of each batch stream, and only rank 0 writes
checkpoints, configs, summaries and logs. Without ``WORLD_SIZE > 1`` all of
this is a no-op and training runs in one process.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn

from atool.core.errors import BadInput

log = logging.getLogger("atool.train")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``; ``device`` it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialised_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise BadInput(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


def setup(prefer_cuda: bool = True) -> DistInfo:
    """Join the process group when launched by torchrun with WORLD_SIZE > 1; else single process."""
    world = _env_int("WORLD_SIZE", 1)
    cuda = prefer_cuda and torch.cuda.is_available()
    if world <= 1:
        return DistInfo(device=torch.device("cuda" if cuda else "cpu"))
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if cuda:
        if local >= torch.cuda.device_count():
            raise BadInput(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} GPU(s) visible; lower --nproc_per_node")
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    here = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
        here = True
    info = DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local, device=device, initialised_here=here)
    if info.rank != rank:
        log.warning("RANK=%d but the process group says %d", rank, info.rank)
    return info


def cleanup(info: DistInfo) -> None:
    if info.initialised_here and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def wrap_model(model: nn.Module, info: DistInfo) -> nn.Module:
    """DistributedDataParallel around ``model`` (already on ``info.device``); the model itself when not distributed."""
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [info.device.index] if info.device.type == "cuda" else None
    return DDP(model, device_ids=ids, output_device=ids[0] if ids else None)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DDP (for checkpoints, evaluation, no-grad teacher passes); ``model`` otherwise."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    return model.module if isinstance(model, DDP) else model


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def average_gradients(module: nn.Module) -> None:
    """All-reduce-average the gradients of a module that is not DDP-wrapped (e.g. a discriminator).

    A no-op outside a process group. Call between ``backward`` and ``optimizer.step``.
    """
    if not is_distributed():
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for g, synced in zip(grads, _unflatten_dense_tensors(flat, grads)):
        g.copy_(synced)


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Give every rank rank ``src``'s parameters and buffers (modules outside DDP)."""
    if not is_distributed():
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src)


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (a one-item list when not distributed)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_ranks_agree(flag: bool) -> bool:
    """True only if ``flag`` holds on every rank (so all ranks take the same branch)."""
    if not is_distributed():
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())
