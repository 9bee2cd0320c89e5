"""Sharded query under ``torchrun``: each rank scores a share of the images, rank 0 chooses.

``torchrun --nproc_per_node N [--nnodes M --rdzv-endpoint HOST:PORT] -m atool.cli query ...``
sets ``WORLD_SIZE``/``RANK`` in every process; ``join`` then joins the
process group (gloo: what travels is a few arrays of candidates, so the CPU
transport is enough on GPU machines too). Rank r takes the images at listing
positions r, r + N, r + 2N, ...; every rank sends its ``Scan.state`` (its
own best ``budget`` points under a total budget, which must contain its
share of the global best; its chosen points per image) to rank 0, which
merges them and chooses with the exact global budget. The selection order
(score, image path, position) is total, so the list does not depend on
which rank scored which image: it equals the single-process run's.
Without ``WORLD_SIZE > 1`` everything here is a no-op.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from atool.core.errors import BadInput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world: int = 1
    joined_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def positions(self, n: int) -> list[int]:
        """Listing positions of the images this rank scores, of ``n``."""
        return list(range(self.rank, n, self.world))


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "")
    if value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise BadInput(f"environment variable {name}={value!r} is not an integer (torchrun sets it)") from None


def join() -> Shard:
    """This process's shard: from torchrun's environment when ``WORLD_SIZE > 1``, else the whole run."""
    world = _env_int("WORLD_SIZE") or 1
    if world <= 1:
        return Shard()
    import torch.distributed as dist

    here = False
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
        here = True
    shard = Shard(rank=dist.get_rank(), world=dist.get_world_size(), joined_here=here)
    log.info("query: distributed run (torchrun): rank %d of %d, local rank %s, %s backend; rank 0 selects and writes",
             shard.rank, shard.world, os.environ.get("LOCAL_RANK", "?"), dist.get_backend())
    return shard


def gather(shard: Shard, obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` on rank 0 (in rank order), None on the others."""
    if not shard.enabled:
        return [obj]
    import torch.distributed as dist

    out: list[Any] | None = [None] * shard.world if shard.rank == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


def broadcast(shard: Shard, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not shard.enabled:
        return obj
    import torch.distributed as dist

    box = [obj if shard.rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def leave(shard: Shard) -> None:
    """Leave the process group if ``join`` made it (a caller's group is left to the caller)."""
    if shard.joined_here:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
