"""Checkpoints of a query run, so that ``--resume`` redoes no finished image.

Every ``every`` images the run's state (``Scan.state``: the chosen points so
far, sizes, skips and counts, never maps; plus the pseudo-label writer's
index) is written atomically to one ``.npz`` file next to the output
(``<out>.partial-state``). It records the run's identity: the model's
SHA-256, the image list (relative path, size and modification time of each
file), the choices that shape the list (strategy, parameters, budget, seed,
pseudo labels, exclusions) and the shard (rank of world size). A resume whose
identity differs is refused with one line naming what changed; without
``--resume`` an old state is ignored and overwritten. The state is removed
once the list is written.

Images are finished in listing order, so the state is "the first ``done``
images of this shard" and a resumed run continues at image ``done``: same
candidates, same choice, same bytes apart from ``created``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from atool.core.errors import BadInput
from atool.core.io import atomic_write_bytes

log = logging.getLogger(__name__)

STATE_FORMAT = "atool.query-state/v1"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def run_identity(model_sha256: str, rels: list[str], paths: list[Path], config: dict[str, Any], rank: int, world: int) -> dict[str, str]:
    """What a state must match to be resumed: {part: digest or text}."""
    lines = []
    for rel, path in zip(rels, paths):
        try:
            st = path.stat()
            lines.append(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}")
        except OSError:
            lines.append(f"{rel}\t-")
    return {
        "model": model_sha256,
        "images": _digest("\n".join(lines)),
        "config": _digest(json.dumps(config, sort_keys=True, default=str)),
        "shard": f"{rank}/{world}",
    }


def state_path(out: str | os.PathLike, rank: int = 0, world: int = 1) -> Path:
    """``<out>.partial-state`` (one per rank under torchrun: ``<out>.partial-state.<rank>of<world>``)."""
    base = f"{os.fspath(out)}.partial-state"
    return Path(base if world <= 1 else f"{base}.{rank}of{world}")


class Checkpoint:
    """The state file of one run (or one rank) at ``path``, written every ``every`` images."""

    def __init__(self, path: Path, identity: dict[str, str], every: int) -> None:
        self.path, self.identity, self.every = Path(path), identity, max(int(every), 0)

    @property
    def spill_path(self) -> Path:
        """Where deferred pseudo labels spill, so that they survive a crash with the state."""
        return self.path.with_name(self.path.name + ".pseudo")

    def load(self) -> tuple[int, dict[str, Any], dict[str, Any] | None] | None:
        """(images done, ``Scan.state``, pseudo-writer state or None), or None when there is no state."""
        if not self.path.is_file():
            log.info("query: no saved state at %s; starting from the first image", self.path)
            return None
        try:
            with np.load(self.path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            meta = json.loads(bytes(arrays.pop("meta")).decode("utf-8"))
        except (OSError, ValueError, KeyError) as exc:
            raise BadInput(f"--resume: {self.path} is not a readable query state ({exc}); run again without --resume to start over") from None
        if meta.get("format") != STATE_FORMAT:
            raise BadInput(f"--resume: {self.path} is not an {STATE_FORMAT} state; run again without --resume to start over")
        saved = meta.get("identity", {})
        changed = [k for k in self.identity if saved.get(k) != self.identity[k]]
        if changed:
            raise BadInput(f"--resume: {self.path} was written by a query with a different {', '.join(changed)}; "
                           "give the same model, images and options, or run again without --resume to start over")
        state = dict(meta["scan"])
        state["image"], state["sizes"] = arrays.pop("image"), arrays.pop("sizes")
        state["chosen"] = {k[len("chosen."):]: v for k, v in arrays.items() if k.startswith("chosen.")}
        log.info("query: resuming from %s: %d images already done", self.path, meta["done"])
        return int(meta["done"]), state, meta.get("pseudo")

    def save(self, done: int, scan_state: dict[str, Any], pseudo_state: dict[str, Any] | None) -> None:
        """Atomically replace the state with the one after ``done`` images."""
        scan = {k: v for k, v in scan_state.items() if k not in ("image", "sizes", "chosen")}
        meta = {"format": STATE_FORMAT, "identity": self.identity, "done": int(done), "scan": scan, "pseudo": pseudo_state}
        arrays = {"image": scan_state["image"], "sizes": scan_state["sizes"]}
        for name, arr in scan_state["chosen"].items():
            # RLE strings (object arrays) are stored as fixed-width text, so loading needs no pickle.
            arrays[f"chosen.{name}"] = np.asarray(arr.tolist(), dtype=str) if arr.dtype == object else arr
        buf = io.BytesIO()
        np.savez(buf, meta=np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8), **arrays)
        atomic_write_bytes(self.path, buf.getvalue())

    def remove(self) -> None:
        for path in (self.path, self.spill_path):
            path.unlink(missing_ok=True)
