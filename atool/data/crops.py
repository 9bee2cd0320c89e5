"""Training batches from folder datasets: random crops, flips, endless iteration.

Under DDP every rank reads its own shard of one global stream: global sample
``g`` goes to rank ``g % world_size``; positions are counted in global
samples, so a run resumes exactly where it stopped (and a resume with another
batch size or world size still never repeats or skips a sample of the order).

Batches are dicts of tensors:
  image   uint8 N x 3 x h x w (normalised on the training device, not here, so
          worker processes ship a quarter of the bytes)
  label   int64 N x h x w, 255 = ignore            (when the dataset has labels)
  weight  float32 N x h x w per-pixel loss weight  (sparse target labels only)
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

import cv2

from atool.data.adapters.folder import IGNORE, FolderDataset
from atool.data.images import read_label
from atool.core.errors import BadInput
from atool.core.labels import ORIGIN_EXPANDED, ORIGIN_ORACLE, ORIGIN_PSEUDO



def resolve_sparse_labels(path: str | Path) -> tuple[Path, Path | None]:
    """An ``atool ingest`` folder (labels/ + origin/) or a plain folder of label PNGs."""
    path = Path(path)
    if not path.is_dir():
        raise BadInput(f"target labels folder {path} does not exist")
    if (path / "labels").is_dir():
        origin = path / "origin"
        return path / "labels", origin if origin.is_dir() else None
    return path, None


def _window_on_labels(
    weight: np.ndarray, crop: tuple[int, int], rng: np.random.Generator, fallback: tuple[int, int]
) -> tuple[int, int]:
    """Top-left corner of a ``crop`` (h, w) window around one random labelled pixel (``weight`` > 0)."""
    ys, xs = np.nonzero(weight > 0)
    if ys.size == 0:
        return fallback
    i = int(rng.integers(0, ys.size))
    (h, w), (ch, cw) = weight.shape, crop
    y0 = int(rng.integers(max(0, ys[i] - ch + 1), min(ys[i], h - ch) + 1))
    x0 = int(rng.integers(max(0, xs[i] - cw + 1), min(xs[i], w - cw) + 1))
    return y0, x0


def _click_share(label: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Per pixel (float32 H x W): clicks in its grown region / grown pixels in it.

    A grown region is a connected same-class set of clicked and grown pixels,
    so adjacent superpixels grown from two clicks of one class share the mass
    of two clicks. Summed over a region's grown pixels it gives its click count.
    """
    share = np.zeros(label.shape, np.float32)
    answered = (origin == ORIGIN_EXPANDED) | (origin == ORIGIN_ORACLE)
    for cls in np.unique(label[origin == ORIGIN_EXPANDED]):
        count, comp = cv2.connectedComponents((answered & (label == cls)).astype(np.uint8), connectivity=8)
        clicks = np.bincount(comp[origin == ORIGIN_ORACLE], minlength=count).astype(np.float32)
        grown = np.bincount(comp[origin == ORIGIN_EXPANDED], minlength=count).astype(np.float32)
        per_pixel = np.maximum(clicks, 1.0) / np.maximum(grown, 1.0)
        mask = (origin == ORIGIN_EXPANDED) & (label == cls)
        share[mask] = per_pixel[comp[mask]]
    return share


class CropDataset(Dataset):
    """Wraps a FolderDataset; each item is one random crop (and flip) of one sample."""

    def __init__(
        self,
        folder: FolderDataset,
        crop: tuple[int, int],
        *,
        flip: bool = True,
        with_labels: bool = True,
        origin_dir: Path | None = None,
        weights: tuple[float, float] = (1.0, 1.0),
        cache: bool = True,
        size: tuple[int, int] | None = None,
        grown_weight: float = 0.0,
        crop_on_labels: bool = False,
        class_balance: float = 0.0,
    ) -> None:
        """``size`` (W, H): resize every image (bilinear; labels and weights nearest) before cropping.

        ``grown_weight``: the loss mass, in clicks, of each answered point's grown
        region (``ORIGIN_EXPANDED`` pixels), shared by its pixels; 0 gives every
        grown pixel the weight of a click.
        ``crop_on_labels``: every crop holds at least one labelled pixel (one drawn
        at random, placed at a random position in the crop). With a few clicks per
        image, a plain random crop of 1/16 of the image holds none most of the time,
        and the batch's target loss rests on a handful of pixels.
        ``class_balance`` (gamma): a labelled pixel of class c also weighs
        (N / (K * n_c)) ** gamma, with n_c the labelled pixels of class c in the
        whole dataset, N their total and K the classes present, rescaled so that
        the mean over labelled pixels stays 1. A few hundred clicks hold a handful
        of pedestrians or poles; unweighted, road's hundreds drown them. 0: off,
        1: every class present carries the same total weight.
        """
        self.folder = folder
        self.size = tuple(size) if size else None
        self.crop_w, self.crop_h = crop
        self.flip = flip
        self.with_labels = with_labels
        self.origin_dir = origin_dir
        self.oracle_weight, self.pseudo_weight = weights
        self.grown_weight = grown_weight
        self.crop_on_labels = crop_on_labels
        self.cache: dict[int, tuple] | None = {} if cache else None
        self.class_factors = self._class_factors(class_balance) if class_balance > 0 and with_labels else None

    def class_counts(self) -> np.ndarray:
        """int64 (256,): labelled pixels (weight > 0, not ignored) per label value over the dataset."""
        counts = np.zeros(256, np.int64)
        for index in range(len(self)):
            _, label, weight = self._load(index)
            used = label != IGNORE if weight is None else (label != IGNORE) & (weight > 0)
            counts += np.bincount(label[used], minlength=256)
        return counts

    def _class_factors(self, gamma: float) -> np.ndarray | None:
        counts = self.class_counts().astype(np.float64)
        present = counts > 0
        if not present.any():
            return None
        factors = np.zeros(256, np.float64)
        factors[present] = (counts[present].sum() / (present.sum() * counts[present])) ** gamma
        factors *= counts.sum() / (factors * counts).sum()
        return factors.astype(np.float32)

    def __len__(self) -> int:
        return len(self.folder)

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        sample = self.folder.load(index)
        label = sample.label
        weight = None
        if self.with_labels:
            if label is None:
                label = np.full(sample.image.shape[:2], IGNORE, np.uint8)
            if self.origin_dir is not None:
                weight = self._weights(sample.id, label)
        image = sample.image
        label = label if self.with_labels else None
        if self.size is not None and (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_LINEAR)
            if label is not None:
                label = cv2.resize(label, self.size, interpolation=cv2.INTER_NEAREST)
            if weight is not None:
                weight = cv2.resize(weight, self.size, interpolation=cv2.INTER_NEAREST)
        item = (image, label, weight)
        if self.cache is not None:
            self.cache[index] = item
        return item

    def _weights(self, sid: str, label: np.ndarray) -> np.ndarray:
        path = self.origin_dir / f"{sid}.png"
        weight = np.zeros(label.shape, np.float32)
        if path.is_file():
            origin = read_label(path)
            if origin.shape != label.shape:
                raise BadInput(f"{path}: origin map size differs from its label")
            weight[origin == ORIGIN_ORACLE] = self.oracle_weight
            weight[origin == ORIGIN_PSEUDO] = self.pseudo_weight
            # A click grown to its superpixel is the annotator's answer (purity-checked at ingest).
            grown = origin == ORIGIN_EXPANDED
            if self.grown_weight > 0 and grown.any():
                weight[grown] = self.oracle_weight * self.grown_weight * _click_share(label, origin)[grown]
            else:
                weight[grown] = self.oracle_weight
        else:
            weight[label != IGNORE] = self.oracle_weight
        return weight

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        # The sampler hands (index, seed) pairs so crops are reproducible whatever the worker count.
        index, seed = index if isinstance(index, tuple) else (index, index)
        image, label, weight = self._load(index)
        rng = np.random.default_rng(seed)
        h, w = image.shape[:2]
        ch, cw = min(self.crop_h, h), min(self.crop_w, w)
        y0 = int(rng.integers(0, h - ch + 1))
        x0 = int(rng.integers(0, w - cw + 1))
        if self.crop_on_labels and weight is not None:
            y0, x0 = _window_on_labels(weight, (ch, cw), rng, (y0, x0))
        flip = self.flip and bool(rng.integers(0, 2))
        sl = (slice(y0, y0 + ch), slice(x0, x0 + cw))

        def cut(a: np.ndarray) -> np.ndarray:
            a = a[sl]
            return np.ascontiguousarray(a[:, ::-1] if flip else a)

        out = {"image": torch.from_numpy(cut(image)).permute(2, 0, 1).contiguous()}
        crop_label = cut(label) if label is not None else None
        if crop_label is not None:
            out["label"] = torch.from_numpy(crop_label).long()
        crop_weight = cut(weight) if weight is not None else None
        if self.class_factors is not None and crop_label is not None:
            base = crop_weight if crop_weight is not None else (crop_label != IGNORE).astype(np.float32)
            crop_weight = base * self.class_factors[crop_label]
        if crop_weight is not None:
            out["weight"] = torch.from_numpy(crop_weight)
        return out


class _SeededSampler(torch.utils.data.Sampler):
    """Endless shuffled (index, crop_seed) pairs of one rank's shard, resumable at any sample count.

    The global stream is a fresh permutation per epoch (seeded by ``seed`` and
    the epoch); global sample ``g`` has crop seed ``seed * 1_000_003 + g`` and
    belongs to rank ``g % world_size``. ``start`` is the number of global
    samples already consumed (by all ranks).
    """

    def __init__(self, n: int, seed: int, start: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.seed, self.start = n, seed, start
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return 2**62  # endless; DataLoader only needs a number

    def __iter__(self):
        g = self.start + self.rank
        epoch_cached, order = -1, None
        while True:
            epoch, pos = divmod(g, self.n)
            if epoch != epoch_cached:
                order = np.random.default_rng([self.seed, epoch]).permutation(self.n)
                epoch_cached = epoch
            yield int(order[pos]), int(self.seed * 1_000_003 + g)
            g += self.world_size


def endless_batches(
    dataset: CropDataset,
    batch_size: int,
    seed: int,
    start_samples: int,
    workers: int,
    *,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[dict]:
    """Batches of ``batch_size`` per rank, forever.

    ``start_samples`` is the number of global samples a resumed run already
    consumed (steps x batch size x world size). The loader draws its worker
    seeds from its own generator, never from the global torch RNG, so creating
    it leaves the training RNG untouched (needed for bit-exact resume).
    """
    sampler = _SeededSampler(len(dataset), seed, start_samples, rank, world_size)
    generator = torch.Generator()
    generator.manual_seed(seed * 1_000_003 + start_samples + rank)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=_collate,
        persistent_workers=workers > 0,
        generator=generator,
    )
    return iter(loader)


def _collate(items: list[dict]) -> dict[str, torch.Tensor]:
    keys = items[0].keys()
    sizes = {tuple(it["image"].shape[1:]) for it in items}
    if len(sizes) > 1:
        # Images smaller than the crop in different ways: pad to the largest.
        h = max(s[0] for s in sizes)
        w = max(s[1] for s in sizes)
        items = [_pad(it, h, w) for it in items]
    return {k: torch.stack([it[k] for it in items]) for k in keys}


def _pad(item: dict, h: int, w: int) -> dict:
    out = {}
    for k, t in item.items():
        ph, pw = h - t.shape[-2], w - t.shape[-1]
        fill = IGNORE if k == "label" else 0
        out[k] = torch.nn.functional.pad(t, (0, pw, 0, ph), value=fill)
    return out
