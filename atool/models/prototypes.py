"""Source prototypes: what each class looked like, in feature space, on the source domain.

Under domain shift the costliest errors are confident (dark sky called
"building" at 0.91), so no uncertainty signal ever queries them. Their
features, though, resemble no source "building". ``compute_prototypes`` runs
a checkpoint over labeled source images and keeps, per class, the mean of the
L2-normalised classifier-input features over the source pixels of that class
(ground truth, downsampled to the feature grid), renormalised to unit length.
The inference graph then outputs ``gap`` = 1 - cosine(pixel feature,
prototype of its predicted class) (``atool.models.features.gap_map``).

Prototypes belong to the weights they were computed with: they are stored in
the checkpoint under ``prototypes`` (plain tensors and strings, so
``torch.load(weights_only=True)`` reads them) by ``atool prototypes``, and
``save_checkpoint`` never carries them over to a retrained model.

Checkpoint entry ``prototypes``:
  vectors  float32 C x D, unit rows; a zero row marks a class absent from the source
  pixels   int64 C, feature cells per class that went into each mean
  images   int, source images used
  classes  list of the C class names (must equal the checkpoint's)
  source   str, the source dataset as given; ``source_name``: its kind and folder name
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from atool.core.checkpoint import read_checkpoint
from atool.core.errors import BadInput
from atool.core.io import atomic_write
from atool.models.checkpoint import load_checkpoint, model_from_checkpoint
from atool.models.features import capture_features
from atool.models.inference_graph import DeployModel

log = logging.getLogger(__name__)

KEY = "prototypes"
_HINT = "recompute them with `atool prototypes --checkpoint CKPT --source SOURCE --out OUT.pt`"


@dataclass(frozen=True)
class SourcePrototypes:
    """Per-class source prototypes; see the module docstring for the fields."""

    vectors: torch.Tensor  # float32 C x D
    pixels: torch.Tensor  # int64 C
    images: int
    classes: list[str]
    source: str
    source_name: str

    @property
    def absent(self) -> list[str]:
        """Classes with no source pixel (zero prototype rows)."""
        return [c for c, n in zip(self.classes, self.pixels.tolist()) if n == 0]

    def as_entry(self) -> dict[str, Any]:
        return {
            "vectors": self.vectors.to(torch.float32).contiguous(),
            "pixels": self.pixels.to(torch.int64).contiguous(),
            "images": int(self.images),
            "classes": list(self.classes),
            "source": str(self.source),
            "source_name": str(self.source_name),
        }

    def describe(self) -> dict[str, Any]:
        """What the export records as ``atool.prototype_source`` (no local paths)."""
        return {"dataset": self.source_name, "images": int(self.images), "dim": int(self.vectors.shape[1]), "absent": self.absent}


def prototypes_of(ckpt: dict[str, Any], where: str = "checkpoint") -> SourcePrototypes | None:
    """The validated prototypes of a loaded checkpoint, or None when it has none; malformed -> BadInput."""
    entry = ckpt.get(KEY)
    if entry is None:
        return None
    classes = list(ckpt["classes"])

    def bad(what: str) -> BadInput:
        return BadInput(f"{where}: its source prototypes {what}; {_HINT}")

    if not isinstance(entry, dict):
        raise bad(f"are a {type(entry).__name__}, not a dict")
    vectors, pixels = entry.get("vectors"), entry.get("pixels")
    if not isinstance(vectors, torch.Tensor) or vectors.dim() != 2 or not vectors.is_floating_point():
        raise bad("lack a float C x D `vectors` tensor")
    if vectors.shape[0] != len(classes) or entry.get("classes") != classes:
        raise bad(f"were computed for {entry.get('classes')!r}, not the checkpoint's {len(classes)} classes")
    if not isinstance(pixels, torch.Tensor) or pixels.shape != (len(classes),):
        raise bad("lack a `pixels` count per class")
    if not torch.isfinite(vectors).all():
        raise bad("hold NaN or infinite values")
    return SourcePrototypes(
        vectors=vectors.to(torch.float32),
        pixels=pixels.to(torch.int64),
        images=int(entry.get("images", 0)),
        classes=classes,
        source=str(entry.get("source", "")),
        source_name=str(entry.get("source_name", "")),
    )


def _source_name(spec: str) -> str:
    from atool.data.adapters.registry import split_spec

    kind, root = split_spec(spec)
    name = Path(root).resolve().name or str(root)
    return f"{kind}:{name}" if kind else name


def cell_labels(label: np.ndarray, grid: tuple[int, int], num_classes: int, min_purity: float) -> np.ndarray:
    """Ground truth on the feature grid: int64 h x w, -1 where no class dominates.

    ``label`` uint8 H x W (255 ignore). Pixel (y, x) falls in cell
    (floor(y h / H), floor(x w / W)); a cell takes its majority class when that
    class covers at least ``min_purity`` of the cell's pixels (ignored pixels
    count against it), so boundary cells, whose features mix classes, stay out.
    """
    hh, ww = label.shape
    h, w = grid
    rows = (np.arange(hh) * h) // hh
    cols = (np.arange(ww) * w) // ww
    cell = (rows[:, None] * w + cols[None, :]).reshape(-1)
    lab = label.reshape(-1).astype(np.int64)
    lab = np.where(lab < num_classes, lab, num_classes)  # 255 (ignore) -> its own bin
    hist = np.bincount(cell * (num_classes + 1) + lab, minlength=h * w * (num_classes + 1)).reshape(h * w, num_classes + 1)
    total = hist.sum(axis=1)
    major = hist[:, :num_classes].argmax(axis=1)
    share = hist[np.arange(h * w), major] / np.maximum(total, 1)
    out = np.where((share >= min_purity) & (hist[np.arange(h * w), major] > 0), major, -1)
    return out.reshape(h, w)


def compute_prototypes(
    checkpoint: str | os.PathLike,
    source_dataset: str | os.PathLike,
    *,
    max_images: int | None = None,
    batch_size: int = 4,
    min_purity: float = 0.5,
    device: str = "cpu",
) -> SourcePrototypes:
    """Per-class source prototypes of ``checkpoint`` on the labeled ``source_dataset`` ([KIND:]PATH).

    ``max_images``: use at most this many images, evenly spaced over the sorted
    list (None: all). ``vectors`` is float32 C x D with unit rows, zero for
    classes that no source cell shows (see ``cell_labels``). Missing labels, a
    class list that differs from the checkpoint's, or no usable labeled pixel
    are BadInput.
    """
    from atool.data.adapters.cityscapes_classes import class_set_of
    from atool.data.adapters.folder import require_same_classes
    from atool.data.adapters.registry import open_dataset

    if max_images is not None and (isinstance(max_images, bool) or int(max_images) < 1):
        raise BadInput(f"max_images must be at least 1, got {max_images}")
    if batch_size < 1:
        raise BadInput(f"batch size must be at least 1, got {batch_size}")
    if not 0.0 < min_purity <= 1.0:
        raise BadInput(f"min_purity must lie in (0, 1], got {min_purity}")
    ckpt = load_checkpoint(checkpoint)
    classes = list(ckpt["classes"])
    if not classes:
        raise BadInput(f"checkpoint {checkpoint} lists no classes; prototypes need the class list the model was trained on")
    dataset = open_dataset(source_dataset, require_labels=True, class_set=class_set_of(classes), split="train")
    require_same_classes(classes, dataset.classes, f"checkpoint {checkpoint} vs source {source_dataset}")
    model = model_from_checkpoint(ckpt).to(device)
    net = DeployModel(model, ckpt["mean"], ckpt["std"], len(classes)).to(device).eval()

    n = len(dataset)
    chosen = range(n) if max_images is None or max_images >= n else np.unique(np.linspace(0, n - 1, int(max_images)).round().astype(int))
    c = len(classes)
    sums: torch.Tensor | None = None
    pixels = np.zeros(c, np.int64)
    used, skipped = 0, []

    def run(images: list[np.ndarray], labels: list[np.ndarray]) -> None:
        nonlocal sums
        with torch.inference_mode(), capture_features(model) as feats:
            net(torch.from_numpy(np.stack(images)).to(device))
        f = F.normalize(feats[0].float(), dim=1, eps=1e-12)  # N x D x h x w
        grid = (int(f.shape[2]), int(f.shape[3]))
        lab = torch.from_numpy(np.stack([cell_labels(x, grid, c, min_purity) for x in labels]).reshape(-1)).to(f.device)
        flat = f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]).double()
        keep = lab >= 0
        if sums is None:
            sums = torch.zeros(c, f.shape[1], dtype=torch.float64, device=f.device)
        sums.index_add_(0, lab[keep], flat[keep])
        pixels[:] += np.bincount(lab[keep].cpu().numpy(), minlength=c)

    pending: dict[tuple[int, ...], tuple[list, list]] = {}
    for i in chosen:
        try:
            sample = dataset.load(int(i))
        except BadInput as exc:
            skipped.append(str(exc))
            continue
        imgs, labs = pending.setdefault(sample.image.shape, ([], []))
        imgs.append(sample.image)
        labs.append(sample.label)
        used += 1
        if len(imgs) == batch_size:
            run(*pending.pop(sample.image.shape))
    for imgs, labs in pending.values():
        run(imgs, labs)
    if skipped:
        log.warning("prototypes: skipped %d unreadable source images (first: %s)", len(skipped), skipped[0])
    if sums is None or pixels.sum() == 0:
        first = f"; first skipped: {skipped[0]}" if skipped else ""
        raise BadInput(f"{source_dataset}: no labeled source pixel to build prototypes from ({used} images read{first})")
    mean = sums / torch.from_numpy(np.maximum(pixels, 1)).to(sums)[:, None]
    vectors = F.normalize(mean, dim=1, eps=1e-12).to(torch.float32).cpu()
    vectors[torch.from_numpy(pixels == 0)] = 0.0
    return SourcePrototypes(
        vectors=vectors,
        pixels=torch.from_numpy(pixels),
        images=used,
        classes=classes,
        source=str(source_dataset),
        source_name=_source_name(str(source_dataset)),
    )


def save_with_prototypes(checkpoint: str | os.PathLike, out: str | os.PathLike, prototypes: SourcePrototypes) -> Path:
    """Write ``checkpoint`` to ``out`` (atomically; may be the same file) with ``prototypes`` added."""
    ckpt = read_checkpoint(checkpoint)
    if list(ckpt["classes"]) != list(prototypes.classes):
        raise BadInput(f"checkpoint {checkpoint} has classes {ckpt['classes']}, the prototypes {prototypes.classes}")
    ckpt[KEY] = prototypes.as_entry()
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    return atomic_write(out, lambda p: p.write_bytes(buf.getvalue()))


__all__ = ["KEY", "SourcePrototypes", "prototypes_of", "compute_prototypes", "cell_labels", "save_with_prototypes"]
