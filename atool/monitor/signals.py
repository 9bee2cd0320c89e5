"""Per-frame shift signals from a model's outputs, and their reduction to one standardised score.

Following Rabanser et al. ("Failing Loudly"), the model's own softmax is one of
the best shift signals. Per frame we keep a handful of floats:

* ``entropy``: mean normalised pixel entropy;
* ``high_entropy``: share of pixels whose entropy is above a threshold set on
  the reference (its 90th pixel percentile, so about 0.1 in domain);
* ``class_hist``: total-variation distance between the predicted class-area
  histogram and the reference's mean histogram (catches *confident* changes,
  such as a new camera's field of view, that entropy misses);
* ``layout``: Mahalanobis distance (RMS over the top principal components) of
  the pooled class layout, the mean softmax on a coarse grid: a pooled output
  embedding that sees where classes sit (horizon, road), not only how much;
* ``image``: the same distance for a few input statistics (mean colour,
  contrast, saturation, edge energy). A new camera changes colour response and
  resolution while a robust model's outputs hardly move; this catches it;
* ``gap``: mean distance to the source prototypes, when the model has them.

The maps are read on a strided grid (every ``stride``-th row and column): the
means barely move and the work per frame drops by ``stride``².
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

BASE_SIGNALS = ("entropy", "high_entropy", "class_hist", "layout", "image")
ENT_BINS = 20  # per-frame entropy histogram bins on [0, 1]


@dataclass
class SignalSpec:
    """What to compute and the reference it is compared with (stored in monitor.json)."""

    num_classes: int
    names: list[str] = field(default_factory=lambda: list(BASE_SIGNALS))
    high_threshold: float = 0.5
    ref_hist: list[float] | None = None  # C floats summing to 1
    stride: int = 4
    grid: tuple[int, int] = (2, 4)  # rows x columns of the pooled class layout
    layout_mean: list[float] | None = None  # D = C * rows * cols
    layout_basis: list[list[float]] | None = None  # m x D principal directions, scaled to unit variance
    image_mean: list[float] | None = None  # 6 input statistics
    image_basis: list[list[float]] | None = None  # 6 x 6 whitening
    _arrays: dict = field(default_factory=dict, repr=False, compare=False)

    def array(self, name: str) -> np.ndarray:
        """A reference field as a float64 array, converted once (this runs on every frame)."""
        if name not in self._arrays:
            self._arrays[name] = np.asarray(getattr(self, name), dtype=np.float64)
        return self._arrays[name]

    def to_json(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "names": self.names, "high_threshold": self.high_threshold,
                "ref_hist": self.ref_hist, "stride": self.stride, "grid": list(self.grid),
                "layout_mean": self.layout_mean, "layout_basis": self.layout_basis,
                "image_mean": self.image_mean, "image_basis": self.image_basis}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "SignalSpec":
        return cls(int(d["num_classes"]), list(d["names"]), float(d["high_threshold"]), d.get("ref_hist"),
                   int(d["stride"]), tuple(d["grid"]), d.get("layout_mean"), d.get("layout_basis"),
                   d.get("image_mean"), d.get("image_basis"))


def class_histograms(prob: np.ndarray, stride: int = 1) -> np.ndarray:
    """``prob`` float N x C x H x W -> float64 N x C predicted class-area shares (rows sum to 1)."""
    n, c = prob.shape[:2]
    flat = prob[:, :, ::stride, ::stride].reshape(n, c, -1)
    # Counting where each class equals the pixel's maximum is cheaper than argmax along the class axis, and
    # the same unless some pixel has tied (or NaN) maxima; then the counts do not add up and argmax decides.
    top = np.maximum.reduce(flat, axis=1)
    counts = (flat == top[:, None]).view(np.uint8).sum(axis=2, dtype=np.int64)  # summing bytes beats bools
    if counts.sum() == flat.shape[0] * flat.shape[2] and not np.isnan(top).any():
        return counts / max(1, flat.shape[2])
    cls = flat.argmax(axis=1)
    if n > 1:
        cls = cls + (np.arange(n) * c)[:, None]
    counts = np.bincount(cls.ravel(), minlength=n * c).reshape(n, c)
    return counts / np.maximum(1, cls.shape[1])


_POOL_CACHE: dict[tuple[int, int, int, int], np.ndarray] = {}


def _pool_matrix(h: int, w: int, gh: int, gw: int) -> np.ndarray:
    """float32 (H*W) x (gh*gw): column j averages grid cell j (rows and columns past the last whole cell are
    left out, as a crop would). Cached per shape: pooling is then one small matrix product per frame."""
    key = (h, w, gh, gw)
    if key not in _POOL_CACHE:
        ch, cw = h // gh, w // gw
        rows = np.minimum(np.arange(h) // ch, gh)  # gh marks "past the last cell"
        cols = np.minimum(np.arange(w) // cw, gw)
        cell = np.where((rows[:, None] < gh) & (cols[None, :] < gw), rows[:, None] * gw + cols[None, :], -1).ravel()
        m = np.zeros((h * w, gh * gw), dtype=np.float32)
        inside = cell >= 0
        m[np.flatnonzero(inside), cell[inside]] = 1.0 / (ch * cw)
        if len(_POOL_CACHE) >= 8:  # a run sees one frame size; calibration a few: keep the cache bounded
            _POOL_CACHE.clear()
        _POOL_CACHE[key] = m
    return _POOL_CACHE[key]


def pooled_layout(prob: np.ndarray, stride: int, grid: tuple[int, int]) -> np.ndarray:
    """``prob`` N x C x H x W -> float64 N x (C*rows*cols): the mean softmax in each grid cell.

    This is the pooled embedding of the model's output: where each class sits in
    the frame. A new camera (field of view, mount height) moves the horizon and
    the road even when every pixel is predicted confidently.
    """
    p = prob[:, :, ::stride, ::stride]
    n, c, h, w = p.shape
    gh, gw = min(grid[0], h), min(grid[1], w)
    flat = np.ascontiguousarray(p, dtype=np.float32).reshape(n * c, h * w)
    return (flat @ _pool_matrix(h, w, gh, gw)).reshape(n, -1).astype(np.float64)


def image_stats(images: np.ndarray, stride: int = 8) -> np.ndarray:
    """uint8 N x H x W x 3 RGB -> float64 N x 6: mean R, G, B, contrast, saturation, fine-edge energy.

    Read on every ``stride``-th row (and column, except for edges): this runs on every frame and must
    cost a small fraction of the model. Green stands in for luma; contrast is its standard deviation,
    saturation the mean of max - min over the channels. The edge energy (mean absolute difference of
    horizontally adjacent green pixels) reads full rows because it must see single-pixel detail, which is
    what a lower sensor resolution removes."""
    import cv2  # a few OpenCV calls per frame cost less than numpy's per-call overhead on such small arrays

    n = len(images)
    out = np.empty((n, 6))
    for i in range(n):
        rows = images[i, ::stride]
        sub = np.ascontiguousarray(rows[:, ::stride])
        mean, std = cv2.meanStdDev(sub)  # per channel; the population std, as np.std
        out[i, :3] = mean[:, 0]
        out[i, 3] = std[1, 0]
        r, g, b = sub[:, :, 0], sub[:, :, 1], sub[:, :, 2]
        out[i, 4] = cv2.mean(cv2.subtract(cv2.max(cv2.max(r, g), b), cv2.min(cv2.min(r, g), b)))[0]
        green = np.ascontiguousarray(rows[:, :, 1])
        out[i, 5] = cv2.mean(cv2.absdiff(green[:, 1:], green[:, :-1]))[0] if green.shape[1] > 1 else 0.0
    return out / 255.0


def frame_features(outputs: dict[str, np.ndarray], stride: int, grid: tuple[int, int],
                   images: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Backend outputs (``prob`` N x C x H x W, ``entropy`` N x H x W, optional ``gap``) and the input frames
    (uint8 N x H x W x 3) -> per-frame features: ``ent_mean`` N, ``ent_hist`` N x ENT_BINS (shares),
    ``hist`` N x C, ``layout`` N x D, ``image`` N x 6 (with ``images``), ``gap`` N (if present).

    Every map is read only on the fixed subsample of every ``stride``-th row and column (the input frame on
    every ``2 * stride``-th, see ``image_stats``); calibration and ``monitor run`` both call this, so they
    see the same signals."""
    ent = outputs["entropy"][:, ::stride, ::stride]
    n = len(ent)
    ent = ent.reshape(n, -1)
    bins = (ent * ENT_BINS).astype(np.intp)
    np.clip(bins, 0, ENT_BINS - 1, out=bins)
    if n > 1:
        bins += (np.arange(n) * ENT_BINS)[:, None]
    # One compact copy of the strided softmax serves both the histogram and the layout.
    prob = np.ascontiguousarray(outputs["prob"][:, :, ::stride, ::stride])
    feats = {
        "ent_mean": ent.mean(axis=1, dtype=np.float64),
        "ent_hist": np.bincount(bins.ravel(), minlength=n * ENT_BINS).reshape(n, ENT_BINS) / max(1, ent.shape[1]),
        "hist": class_histograms(prob, 1),
        "layout": pooled_layout(prob, 1, grid),
    }
    if images is not None:
        feats["image"] = image_stats(images, 2 * stride)
    if "gap" in outputs:
        feats["gap"] = outputs["gap"][:, ::stride, ::stride].reshape(n, -1).mean(axis=1, dtype=np.float64)
    return feats


def concat_features(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}


def fit_spec(feats: dict[str, np.ndarray], num_classes: int, stride: int = 4, grid: tuple[int, int] = (2, 4),
             components: int = 8) -> SignalSpec:
    """Reference statistics from in-domain features: the high-entropy threshold (the pooled 90th pixel
    percentile, to a bin edge), the mean class histogram and the layout's principal directions."""
    pooled = feats["ent_hist"].mean(axis=0)
    high = float(min(ENT_BINS - 1, int(np.searchsorted(np.cumsum(pooled), 0.9)) + 1) / ENT_BINS)
    mean, basis = _whitening(feats["layout"], components)
    names = [n for n in BASE_SIGNALS if n != "image" or "image" in feats] + (["gap"] if "gap" in feats else [])
    spec = SignalSpec(num_classes, names, high, feats["hist"].mean(axis=0).tolist(), stride, tuple(grid),
                      mean.tolist(), basis.tolist())
    if "image" in feats:
        im_mean, im_basis = _whitening(feats["image"], 6)
        spec.image_mean, spec.image_basis = im_mean.tolist(), im_basis.tolist()
    return spec


def _whitening(x: np.ndarray, components: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and m x D rows that map centred ``x`` (N x D) to unit-variance principal components."""
    mean = x.mean(axis=0)
    _, sv, vt = np.linalg.svd(x - mean, full_matrices=False)
    m = max(1, min(components, int((sv > 1e-8).sum())))
    scale = sv[:m] / np.sqrt(max(1, len(x) - 1))
    return mean, vt[:m] / np.maximum(scale, 1e-9)[:, None]


def signals_from_features(feats: dict[str, np.ndarray], spec: SignalSpec) -> np.ndarray:
    """Per-frame features -> float64 N x len(spec.names) signals."""
    ref = spec.array("ref_hist") if spec.ref_hist is not None else np.full(spec.num_classes, 1.0 / spec.num_classes)
    first_high = int(round(spec.high_threshold * ENT_BINS))
    cols = {
        "entropy": feats["ent_mean"],
        "high_entropy": feats["ent_hist"][:, first_high:].sum(axis=1),
        "class_hist": 0.5 * np.abs(feats["hist"] - ref).sum(axis=1),
    }
    if spec.layout_basis is not None:
        # RMS Mahalanobis distance in the top components
        cols["layout"] = _rms((feats["layout"] - spec.array("layout_mean")) @ spec.array("layout_basis").T)
    else:
        cols["layout"] = np.zeros(len(feats["ent_mean"]))
    if "image" in spec.names:
        cols["image"] = _rms((feats["image"] - spec.array("image_mean")) @ spec.array("image_basis").T)
    if "gap" in spec.names:
        cols["gap"] = feats["gap"]
    out = np.empty((len(feats["ent_mean"]), len(spec.names)))
    for j, name in enumerate(spec.names):
        out[:, j] = cols[name]
    return out


def _rms(x: np.ndarray) -> np.ndarray:
    """float N x M -> float64 N: root mean square of each row (einsum: this runs per frame, np.mean is slow)."""
    return np.sqrt(np.einsum("ij,ij->i", x, x) / max(1, x.shape[1]))


def compute_signals(outputs: dict[str, np.ndarray], spec: SignalSpec, images: np.ndarray | None = None) -> np.ndarray:
    """Backend outputs (and the model's input frames, uint8 N x H x W x 3) -> float64 N x len(spec.names) signals."""
    return signals_from_features(frame_features(outputs, spec.stride, spec.grid, images), spec)


@dataclass
class Standardiser:
    """Signals -> one score. Each signal is z-scored on the reference; their root mean square (two-sided per
    signal: a shift may push entropy down as well as up, and any one signal can raise it) is then mapped
    through the reference's own distribution to a normal score, ``Phi^-1(F_ref(raw))``. That makes the
    score N(0, 1) in domain whatever the tails, so a rare odd scene adds at most a few units per frame to
    the CUSUM, while a real shift, far past every reference frame, adds the most a frame can."""

    mean: list[float]
    std: list[float]
    knots: list[float] = field(default_factory=list)  # raw-score quantiles of the reference, ascending
    _table: Any = field(default=None, repr=False, compare=False)
    _mean_std: Any = field(default=None, repr=False, compare=False)

    def z(self, signals: np.ndarray) -> np.ndarray:
        """float N x K -> float64 N x K z-scores."""
        if self._mean_std is None:
            self._mean_std = (np.asarray(self.mean), np.asarray(self.std))
        return (signals - self._mean_std[0]) / self._mean_std[1]

    def raw(self, signals: np.ndarray) -> np.ndarray:
        return _rms(self.z(signals))

    def score(self, signals: np.ndarray) -> np.ndarray:
        """float N x K -> float64 N standardised scores (about N(0, 1) in domain; beyond the reference: up to
        the normal quantile of 1 - 1/(2n), and growing slowly past the largest reference value)."""
        raw = self.raw(signals)
        if len(self.knots) < 2:
            return raw
        if self._table is None:
            # The normal quantiles of the knots, once: per frame the map is then one interpolation.
            n = len(self.knots)
            knots = np.asarray(self.knots)
            spread = max(knots[-1] - knots[int(0.9 * (n - 1))], 1e-9)
            self._table = (knots, _norm_ppf((np.arange(n) + 0.5) / n), spread)
        knots, zs, spread = self._table
        z = np.interp(raw, knots, zs)
        # Past the reference's extremes keep growing, in units of the top knots' spread, so a massive
        # shift still scores above a mild one.
        past = raw > knots[-1]
        if past.any():
            z[past] += (raw[past] - knots[-1]) / spread
        return z

    @classmethod
    def fit(cls, signals: np.ndarray, n_knots: int = 256) -> "Standardiser":
        std = signals.std(axis=0)
        # A constant signal (e.g. one class everywhere) would divide by zero; give it a floor.
        std = np.maximum(std, 1e-6 + 1e-3 * np.abs(signals.mean(axis=0)))
        st = cls(signals.mean(axis=0).tolist(), std.tolist())
        raw = st.raw(signals)
        st.knots = np.quantile(raw, (np.arange(n_knots) + 0.5) / n_knots).tolist()
        return st

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "knots": self.knots}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Standardiser":
        return cls(list(d["mean"]), list(d["std"]), list(d.get("knots", [])))


def _norm_ppf(q: np.ndarray) -> np.ndarray:
    """Inverse standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9)."""
    a = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02, 1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)
    b = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01, -1.328068155288572e01)
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00, -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00)
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
    q = np.clip(np.asarray(q, dtype=np.float64), 1e-12, 1 - 1e-12)
    out = np.empty_like(q)
    lo, hi = q < 0.02425, q > 1 - 0.02425
    mid = ~(lo | hi)
    r = q[mid] - 0.5
    t = r * r
    out[mid] = (((((a[0] * t + a[1]) * t + a[2]) * t + a[3]) * t + a[4]) * t + a[5]) * r / \
        (((((b[0] * t + b[1]) * t + b[2]) * t + b[3]) * t + b[4]) * t + 1)
    for mask, sign in ((lo, 1.0), (hi, -1.0)):
        qq = q[mask] if sign > 0 else 1 - q[mask]
        u = np.sqrt(-2 * np.log(qq))
        out[mask] = sign * (((((c[0] * u + c[1]) * u + c[2]) * u + c[3]) * u + c[4]) * u + c[5]) / \
            ((((d[0] * u + d[1]) * u + d[2]) * u + d[3]) * u + 1)
    return out
