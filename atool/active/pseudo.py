"""Pseudo labels from the candidates a query run did not select.

As in the active-points paper, the points drawn in patches that were not sent
to the annotators receive the model's own label ``argmax P``. Each processed
image gets ``OUT/<relative path with .png>``: uint8, the class at those points,
255 everywhere else. ``min_confidence`` keeps only points whose predicted
class has at least that probability (0 keeps all: the paper's protocol; the
measured pitfalls argue for a threshold with a weak model).

For the other strategies the pseudo points are likewise their unselected
candidates. The pixel strategies propose at most the budget per image, so
under a per-image budget they leave none; under a total budget the points
that lost to other images' points become pseudo labels.

Under a per-image budget an image's selection is known at once and its label
is written immediately. Under a total budget it is known only at the end, so
the surviving candidates (a few bytes each) are spilled to a temporary file
and written in a second pass: memory stays flat over any number of images.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from atool.data.adapters.folder import IGNORE
from atool.data.images import write_label
from atool.active.candidates import Candidates

_RECORD = np.dtype([("x", "<u4"), ("y", "<u4"), ("c", "u1")])


def label_path(out_dir: Path, rel: str) -> Path:
    """Where the label of image ``rel`` (relative path, '/' separators) goes."""
    return out_dir / Path(rel).with_suffix(".png")


def paint(size: tuple[int, int], x: np.ndarray, y: np.ndarray, cls: np.ndarray) -> np.ndarray:
    """uint8 H x W label: ``cls`` at (y, x), 255 elsewhere."""
    label = np.full(size, IGNORE, dtype=np.uint8)
    label[y.astype(np.intp), x.astype(np.intp)] = cls.astype(np.uint8)
    return label


@dataclass
class PseudoWriter:
    out_dir: Path
    min_confidence: float = 0.0
    deferred: bool = False
    images: int = 0
    points: int = 0
    spill_path: Path | None = None  # a resumable run spills here (next to its checkpoint), not to a temporary file
    _spill: object = None
    _index: list[tuple[int, str, tuple[int, int], int, int]] = field(default_factory=list)

    def _keep(self, cands: Candidates, chosen: np.ndarray | None) -> Candidates:
        keep = cands.conf.astype(np.float32) >= np.float32(self.min_confidence)
        if chosen is not None:
            keep &= ~chosen
        return cands.take(np.flatnonzero(keep))

    def add(self, image: int, rel: str, size: tuple[int, int], cands: Candidates, chosen: np.ndarray | None = None) -> None:
        """Record one image's candidates; ``chosen`` (bool (M,)) is required unless deferred.

        ``size`` is (height, width) of the image.
        """
        if not self.deferred:
            self._write(rel, size, self._keep(cands, chosen))
            return
        kept = self._keep(cands, None)
        if self._spill is None:
            self._spill = open(self.spill_path, "w+b") if self.spill_path is not None else tempfile.TemporaryFile(prefix="atool-pseudo-")
        rec = np.empty(len(kept), dtype=_RECORD)
        rec["x"], rec["y"], rec["c"] = kept.x, kept.y, kept.cls
        offset = self._spill.tell()
        self._spill.write(rec.tobytes())
        self._index.append((image, rel, size, offset, len(kept)))

    def finish(self, chosen_image: np.ndarray, chosen: Candidates) -> None:
        """Second pass of a deferred run: write every image minus its chosen points.

        ``chosen_image`` int (K,) image index of each chosen candidate in ``chosen``.
        """
        if not self.deferred:
            return
        taken: dict[int, np.ndarray] = {}
        if len(chosen):
            order = np.argsort(chosen_image, kind="stable")
            images, starts = np.unique(chosen_image[order], return_index=True)
            for img, part in zip(images.tolist(), np.split(order, starts[1:])):
                taken[img] = chosen.y[part].astype(np.int64) * 0x100000000 + chosen.x[part].astype(np.int64)
        try:
            for image, rel, size, offset, count in self._index:
                self._spill.seek(offset)
                rec = np.frombuffer(self._spill.read(count * _RECORD.itemsize), dtype=_RECORD)
                if image in taken:
                    key = rec["y"].astype(np.int64) * 0x100000000 + rec["x"].astype(np.int64)
                    rec = rec[~np.isin(key, taken[image])]
                self._write_raw(rel, size, rec["x"], rec["y"], rec["c"])
        finally:
            self.close()

    def state(self) -> dict:
        """Counts and the spill's index; the spill file is flushed, so a checkpoint may point into it."""
        if self._spill is not None:
            self._spill.flush()
        return {"images": self.images, "points": self.points, "spilled": self._spill.tell() if self._spill is not None else 0,
                "index": [[i, r, list(sz), o, c] for i, r, sz, o, c in self._index]}

    def restore(self, state: dict) -> None:
        """Continue from ``state``: the spill file is cut back to what the checkpoint had seen."""
        self.images, self.points = int(state["images"]), int(state["points"])
        self._index = [(int(i), str(r), (int(sz[0]), int(sz[1])), int(o), int(c)) for i, r, sz, o, c in state["index"]]
        if self.deferred and self.spill_path is not None and int(state["spilled"]):
            self._spill = open(self.spill_path, "r+b")
            self._spill.truncate(int(state["spilled"]))
            self._spill.seek(0, 2)

    def close(self) -> None:
        if self._spill is not None:
            self._spill.close()
            self._spill = None

    def _write(self, rel: str, size: tuple[int, int], kept: Candidates) -> None:
        self._write_raw(rel, size, kept.x, kept.y, kept.cls)

    def _write_raw(self, rel: str, size: tuple[int, int], x: np.ndarray, y: np.ndarray, cls: np.ndarray) -> None:
        write_label(label_path(self.out_dir, rel), paint(size, x, y, cls))
        self.images += 1
        self.points += int(x.shape[0])
