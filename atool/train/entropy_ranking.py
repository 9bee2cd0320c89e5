"""IntraDA-style entropy ranking (Pan et al., "Unsupervised Intra-domain Adaptation
for Semantic Segmentation through Self-Supervision", CVPR'20, §3.2).

An adapted model (the inter-domain stage, e.g. ADVENT) scores every target
image by its mean normalised entropy ``mean_pixels(H(P) / log C)``. The
``easy_ratio`` (IntraDA's lambda, 0.67) least uncertain images form the easy
split and get pseudo labels; the rest form the hard split. The intra-domain
stage is then ADVENT from easy (treated as the labeled source) to hard: the
``intrada`` training method.

Layout written under ``out_dir``::

    easy/classes.txt, easy/images/..., easy/labels/*.png   a folder dataset:
        use it as --source (intrada), or easy/ as --target-labels of the full target set
    hard/classes.txt, hard/images/...                      a folder dataset: the next --target
    hard.txt                                               hard image ids, one per line, hardest last
    ranking.json                                           every image's score and split, the thresholds

Images are hard-linked (copied where links are impossible). Pseudo labels are
the argmax where the confidence clears a threshold, else 255. By default the
threshold is class-balanced over the whole easy split: per class, the median
confidence of the pixels predicted as that class, capped at 0.9 (the rule of
the BDL/IntraDA released code; ``class_balanced=False`` gives one global
threshold). Per-class quantiles come from 256-bin confidence histograms, so
memory does not grow with the number of pixels (``atool.ops.thresholds``).
The images go through the same normalisation and entropy as in training and
in the exported graph (``atool.ops``).

Use: ``atool train intrada --init ADVENT.pt --target CITYSCAPES --out intra.pt``
ranks into ``intra.intrada/`` (or ``--intrada-split DIR``) and trains; or call
``rank_by_entropy`` directly.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from atool.data.adapters.registry import open_dataset, split_spec
from atool.data.adapters.folder import IGNORE, read_classes, require_same_classes
from atool.data.images import BadImage, read_image, write_label
from atool.core.errors import BadInput
from atool.core.io import atomic_write_json, atomic_write_text, sha256_file
from atool.models.checkpoint import load_checkpoint, model_from_checkpoint
from atool.ops.normalize import normalization, normalize
from atool.ops.thresholds import apply_thresholds, class_thresholds_from_histogram, confidence_histogram
from atool.ops.uncertainty_torch import inv_log_classes, prob_and_entropy

log = logging.getLogger("atool.train")

RANKING = "ranking.json"


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


class _Scorer:
    """Softmax and entropy at image resolution for uint8 HxWx3 RGB images, one at a time."""

    def __init__(self, ckpt: dict[str, Any], device: torch.device, size: tuple[int, int] | None) -> None:
        self.model = model_from_checkpoint(ckpt).to(device).eval()
        self.shift, self.inv_scale = normalization(ckpt["mean"], ckpt["std"], device=device)
        self.inv_log_c = inv_log_classes(len(ckpt["classes"]))
        self.device, self.size = device, size

    @torch.inference_mode()
    def __call__(self, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(float32 C x H x W probabilities, float32 H x W entropy / log C)."""
        h, w = image.shape[:2]
        if self.size and (w, h) != tuple(self.size):
            image = cv2.resize(image, tuple(self.size), interpolation=cv2.INTER_LINEAR)
        x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1)[None]
        logits = self.model(normalize(x, self.shift, self.inv_scale))["out"].float()
        logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        prob, ent = prob_and_entropy(logits, self.inv_log_c)
        return prob[0], ent[0]


def rank_by_entropy(
    checkpoint: str | os.PathLike,
    target_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    easy_ratio: float = 0.67,
    *,
    threshold: float = 0.9,
    class_balanced: bool = True,
    portion: float = 0.5,
    size: tuple[int, int] | None = None,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Split ``target_dir`` (any dataset spec, e.g. ``cityscapes:/data/cs``; labels are not read) into easy/hard.

    ``size`` (W, H) resizes images for inference (predictions are upsampled
    back to each image's size). Returns the ranking summary also written to
    ``out_dir/ranking.json``.
    """
    if not 0 < easy_ratio < 1:
        raise BadInput(f"easy_ratio must be in (0, 1), got {easy_ratio}")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (out / RANKING).is_file():
        raise BadInput(f"{out} exists and is not an atool entropy ranking; give an empty or new folder")
    ckpt = load_checkpoint(checkpoint)
    classes = list(ckpt["classes"])
    target = target_dir
    root = split_spec(target)[1]
    if (root / "classes.txt").is_file():
        require_same_classes(classes, read_classes(root / "classes.txt"), f"target {target}")
    folder = open_dataset(target, classes=classes)  # any layout; its labels, if any, are never read here
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    score = _Scorer(ckpt, device, size)

    scores: dict[str, float] = {}
    hists: dict[str, np.ndarray] = {}
    skipped: list[dict[str, str]] = []
    paths = {it[0]: Path(it[1]) for it in folder.items}
    for i, sid in enumerate(paths):
        try:
            image = read_image(paths[sid])
        except BadImage as exc:
            skipped.append({"id": sid, "reason": str(exc)})
            continue
        prob, ent = score(image)
        scores[sid] = float(ent.mean())
        hists[sid] = confidence_histogram(*prob.max(0), len(classes))
    if len(scores) < 2:
        raise BadInput(f"{target}: need at least 2 readable images to split into easy and hard, got {len(scores)}")

    order = sorted(scores, key=lambda s: (scores[s], s))
    n_easy = min(max(int(round(easy_ratio * len(order))), 1), len(order) - 1)
    easy, hard = order[:n_easy], order[n_easy:]
    if class_balanced:
        thr = class_thresholds_from_histogram(sum(hists[s] for s in easy), portion, threshold)
    else:
        thr = np.full(len(classes), threshold, np.float64)
    thr_t = torch.tensor(thr, dtype=torch.float32, device=device)

    for sub in ("easy", "hard"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)  # ours: out holds a ranking.json
    kept = 0.0
    for sid in easy:
        prob, _ = score(read_image(paths[sid]))
        label = apply_thresholds(*prob.max(0), thr_t)
        kept += float((label != IGNORE).float().mean())
        write_label(out / "easy" / "labels" / f"{sid}.png", label.to(torch.uint8).cpu().numpy())
        _link(paths[sid], out / "easy" / "images" / f"{sid}{paths[sid].suffix}")
    for sid in hard:
        _link(paths[sid], out / "hard" / "images" / f"{sid}{paths[sid].suffix}")
    for sub in ("easy", "hard"):
        atomic_write_text(out / sub / "classes.txt", "\n".join(classes) + "\n")
    atomic_write_text(out / "hard.txt", "\n".join(hard) + "\n")
    summary = {
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": sha256_file(checkpoint),
        "target": os.fspath(target),
        "easy_ratio": easy_ratio,
        "thresholds": {c: round(float(t), 4) for c, t in zip(classes, thr)},
        "class_balanced": class_balanced,
        "easy": len(easy),
        "hard": len(hard),
        "easy_pseudo_label_fraction": round(kept / len(easy), 4),
        "images": [{"id": s, "score": round(scores[s], 6), "split": "easy" if i < n_easy else "hard"} for i, s in enumerate(order)],
        "skipped": skipped,
    }
    atomic_write_json(out / RANKING, summary)
    log.info("entropy ranking: %d easy (pseudo labels on %.0f%% of pixels), %d hard -> %s",
             len(easy), 100 * summary["easy_pseudo_label_fraction"], len(hard), out)
    return summary


def existing_ranking(out_dir: str | os.PathLike, checkpoint: str | os.PathLike, target: str | os.PathLike, easy_ratio: float) -> bool:
    """True when ``out_dir`` holds a complete ranking of ``target`` by ``checkpoint`` at ``easy_ratio``."""
    path = Path(out_dir) / RANKING
    if not path.is_file():
        return False
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        info.get("target") == os.fspath(target)
        and info.get("easy_ratio") == easy_ratio
        and info.get("checkpoint_sha256") == sha256_file(checkpoint)
        and (Path(out_dir) / "easy" / "labels").is_dir()
        and (Path(out_dir) / "hard" / "images").is_dir()
    )
