"""LabOR's strategies on the selector heads' inconsistency mask (DESIGN.md §4).

Both read the selector heads (a model trained with ``atool train selector``)
and the main prediction ``prob``. The inconsistency mask is
``M = argmax head1 != argmax head2`` and the discrepancy ``sum_c |head1 - head2|``;
the exported graph hands both over as ``heads_disagree``/``heads_discrepancy``
(H x W), and models exported before give the heads' softmaxes ``head1``/``head2``
(C x H x W), from which they are derived here.

``inconsistency_ppl`` (prototypical pixel labeling): the pixels of M are
grouped by the main model's predicted class k (D_k). The class prototype is
``mu_k = mean of P over D_k`` and the candidate is the pixel of D_k whose P is
nearest to ``mu_k`` in cosine distance (ties: the lowest row-major index), so
an image offers at most one point per predicted class. Score (``score``):
  * ``area`` (default): |D_k| / (H x W), the share of the image where the
    heads disagree about pixels predicted k; a big disagreement region
    earns its point first, which spreads clicks over images and classes;
  * ``discrepancy``: the mean over D_k of sum_c |head1 - head2|.
``min_pixels`` drops classes whose D_k is smaller.

``inconsistency_spl`` (segment-based pixel labeling): the pixels of M become
region queries. ``split`` chooses the regions: ``components`` (default) the
8-connected components of M; ``class_components`` the components of M within
each predicted class (regions that the model thinks hold one class);
``none`` all of M as one region per image. Each region gets a score
(``score``: ``sum`` of the discrepancy over its pixels (default), its
``mean``, or its ``area`` share of the image) and a point inside it, the
pixel of highest discrepancy. Regions are chosen in score order while they
fit the ``--budget`` (region count) and ``pixel_ratio`` (share of the pixels
of the processed images: per image with ``--per-image``, of all images
otherwise). LabOR labels about 1 % of the pixels per stage, 2.2 % after 3.
Regions smaller than ``min_area`` pixels are dropped.
"""

from __future__ import annotations

import cv2
import numpy as np

from atool.ops import rle
from atool.active.candidates import Candidates, Regions
from atool.active.strategies import STRATEGIES, Maps, Strategy
from atool.ops.uncertainty import argmax, at_points
from atool.core.errors import BadInput
from atool.core.metadata import has_head_outputs


def require_heads(maps: Maps, strategy: str) -> None:
    if not has_head_outputs(maps):
        raise BadInput(heads_message(strategy))


def heads_message(strategy: str) -> str:
    return (
        f"strategy {strategy!r} needs a model with selector heads; train one with `atool train selector "
        "--init ADAPTED.pt` and query with that checkpoint (or its ONNX export)"
    )


def inconsistency_mask(maps: Maps) -> np.ndarray:
    """bool H x W: argmax head1 != argmax head2."""
    if "heads_disagree" in maps:
        return maps["heads_disagree"] > 0.5
    return argmax(maps["head1"]) != argmax(maps["head2"])


def discrepancy_map(maps: Maps) -> np.ndarray:
    """float32 H x W: sum_c |head1 - head2|, in [0, 2]."""
    if "heads_discrepancy" in maps:
        return np.asarray(maps["heads_discrepancy"], dtype=np.float32)
    return np.abs(maps["head1"] - maps["head2"]).sum(axis=0, dtype=np.float32)


def heads_agree_at(maps: Maps, where: np.ndarray) -> Maps:
    """``maps`` with the heads made to agree at the pixels of ``where`` (bool H x W): labeled
    pixels raise no inconsistency, so they leave the selector's mask."""
    if "heads_disagree" in maps:
        return dict(maps, heads_disagree=np.where(where, 0.0, maps["heads_disagree"]).astype(np.float32),
                    heads_discrepancy=np.where(where, 0.0, maps["heads_discrepancy"]).astype(np.float32))
    if "head1" in maps:
        return dict(maps, head2=np.where(where[None], maps["head1"], maps["head2"]))
    return maps


class _HeadsStrategy(Strategy):
    needs_heads = True


@STRATEGIES.register("inconsistency_ppl")
class InconsistencyPPL(_HeadsStrategy):
    defaults = {"score": "area", "min_pixels": 1}
    choices = {"score": ("area", "discrepancy")}

    def check(self) -> None:
        self._require(self.params["min_pixels"] >= 1, f"min_pixels must be at least 1, got {self.params['min_pixels']}")

    def candidates(self, maps: Maps, rng: np.random.Generator, want: int) -> Candidates:
        require_heads(maps, self.name)
        prob = maps["prob"]
        c, h, w = prob.shape
        idx = np.flatnonzero(inconsistency_mask(maps))
        if idx.size == 0 or want <= 0:
            return Candidates.empty()
        p = prob.reshape(c, -1)[:, idx].T.astype(np.float64)  # M x C
        k = p.argmax(axis=1)
        count = np.bincount(k, minlength=c)
        sums = np.stack([np.bincount(k, weights=p[:, j], minlength=c) for j in range(c)], axis=1)  # C x C
        mu = sums / np.maximum(count, 1)[:, None]
        mk = mu[k]
        cos = (p * mk).sum(axis=1) / np.maximum(np.linalg.norm(p, axis=1) * np.linalg.norm(mk, axis=1), 1e-12)
        dist = 1.0 - cos
        first = np.lexsort((idx, dist, k))  # by class, then distance, then pixel index
        classes, at = np.unique(k[first], return_index=True)
        pick = first[at]
        keep = count[classes] >= self.params["min_pixels"]
        classes, pick = classes[keep], pick[keep]
        if self.params["score"] == "area":
            score = count[classes] / float(h * w)
        else:
            d = discrepancy_map(maps).reshape(-1)[idx]
            score = np.bincount(k, weights=d, minlength=c)[classes] / count[classes]
        flat = idx[pick]
        y, x = np.divmod(flat, w)
        cls, conf = at_points(prob, x, y)
        cands = Candidates.build(x, y, score, classes, cls, conf, size=(h, w))
        if len(cands) > want:
            from atool.active.candidates import select_image

            cands = select_image(cands, want)[0]
        return cands


def _component_labels(mask: np.ndarray, pred: np.ndarray, split: str) -> tuple[np.ndarray, int]:
    """int32 H x W region ids (0 = not in M) and the number of ids including 0."""
    if split == "none":
        return mask.astype(np.int32), 2
    if split == "components":
        n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
        return labels, int(n)
    labels = np.zeros(mask.shape, np.int32)
    offset = 0
    for k in np.unique(pred[mask]).tolist():  # a loop over classes, not pixels
        n, lab = cv2.connectedComponents((mask & (pred == k)).astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
        inside = lab > 0
        labels[inside] = lab[inside] + offset
        offset += n - 1
    return labels, offset + 1


def component_rles(labels: np.ndarray, ids: np.ndarray) -> list[str]:
    """COCO compressed RLE counts of the regions ``labels == id`` for each of ``ids``.

    One pass over the image finds the column-major runs of every region; each
    region's counts are then its runs with the gaps between them.
    """
    h, w = labels.shape
    flat = labels.ravel(order="F")
    total = flat.size
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate([[0], change])
    lengths = np.diff(np.concatenate([starts, [total]]))
    values = flat[starts]
    out = []
    for rid in ids.tolist():
        sel = values == rid
        s, n = starts[sel], lengths[sel]
        ends = s + n
        gaps = s - np.concatenate([[0], ends[:-1]])
        counts = np.empty(2 * s.size + 1, dtype=np.int64)
        counts[0:-1:2] = gaps
        counts[1::2] = n
        counts[-1] = total - (ends[-1] if ends.size else 0)
        if counts.size > 1 and counts[-1] == 0:
            counts = counts[:-1]  # COCO ends on the last run, with no empty tail
        out.append(rle.counts_to_string(counts))
    return out


@STRATEGIES.register("inconsistency_spl")
class InconsistencySPL(_HeadsStrategy):
    kind = "region"
    defaults = {"pixel_ratio": 0.022, "split": "components", "score": "sum", "min_area": 1}
    choices = {"split": ("components", "class_components", "none"), "score": ("sum", "mean", "area")}

    def check(self) -> None:
        r = self.params["pixel_ratio"]
        self._require(0.0 < r <= 1.0, f"pixel_ratio must be in (0, 1], got {r}")
        self._require(self.params["min_area"] >= 1, f"min_area must be at least 1, got {self.params['min_area']}")

    def candidates(self, maps: Maps, rng: np.random.Generator, want: int) -> Candidates:
        raise BadInput(f"strategy {self.name!r} proposes regions, not points; use regions()")

    def regions(self, maps: Maps, rng: np.random.Generator, want: int) -> Regions:
        """The image's best ``want`` regions (fewer if M has fewer), see the module doc."""
        require_heads(maps, self.name)
        prob = maps["prob"]
        c, h, w = prob.shape
        mask = inconsistency_mask(maps)
        if want <= 0 or not mask.any():
            return Regions.empty()
        pred = prob.argmax(axis=0)
        labels, n = _component_labels(mask, pred, self.params["split"])
        lab = labels.reshape(-1)
        d = discrepancy_map(maps).reshape(-1)
        area = np.bincount(lab, minlength=n)
        dsum = np.bincount(lab, weights=d, minlength=n)
        ids = np.flatnonzero(area >= self.params["min_area"])
        ids = ids[ids > 0]
        if ids.size == 0:
            return Regions.empty()
        mode = self.params["score"]
        score = dsum[ids] if mode == "sum" else dsum[ids] / area[ids] if mode == "mean" else area[ids] / float(h * w)
        score = score.astype(np.float32)
        # The point inside each region: its highest-discrepancy pixel (ties: the lowest row-major index).
        inside = np.flatnonzero(lab > 0)
        first = np.lexsort((inside, -d[inside], lab[inside]))
        rid, at = np.unique(lab[inside][first], return_index=True)
        best_pixel = np.zeros(n, np.int64)
        best_pixel[rid] = inside[first[at]]
        y, x = np.divmod(best_pixel[ids], w)
        # The model's majority class per region, and its share of the region.
        votes = np.bincount(lab[inside] * c + pred.reshape(-1)[inside], minlength=n * c).reshape(n, c)[ids]
        cls = votes.argmax(axis=1)
        conf = votes.max(axis=1) / area[ids]
        # Keep the best `want` in selection order before paying for RLE strings.
        order = np.lexsort((x, y, ids, -score.astype(np.float64)))[:want]
        ids, score, x, y, cls, conf = ids[order], score[order], x[order], y[order], cls[order], conf[order]
        return Regions.build(x, y, score, ids, area[ids], cls, conf, component_rles(labels, ids), size=(h, w))
