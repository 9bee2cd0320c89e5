"""Cross-backend parity: run two backends on the same images and compare.

An exported model is only trusted after it reproduces the torch model it came
from. Inputs are deterministic random images at two sizes, one of them not a
multiple of 16 (the models' output stride is 8 and their deepest features are
at 16, so an odd size exercises the ceil/resize paths that a "nice" size hides),
with batch 2 and batch 1 so a graph that froze the batch or image size fails.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from atool.runtime.backends import Backend
from atool.core.errors import Failure

DEFAULT_TOLERANCE = 1e-3
MIN_AGREEMENT = 0.999


def sample_batches(size: tuple[int, int] = (256, 128), seed: int = 0) -> list[np.ndarray]:
    """Deterministic uint8 N x H x W x 3 test batches for ``size`` = (width, height).

    Returns a batch of 2 at ``size`` and a batch of 1 at about 3/4 of it with odd
    sides (never a multiple of 16 or 8).
    """
    width, height = int(size[0]), int(size[1])
    rng = np.random.default_rng(seed)
    odd_w = max(33, width * 3 // 4) | 1
    odd_h = max(33, height * 3 // 4) | 1
    return [
        rng.integers(0, 256, size=(2, height, width, 3), dtype=np.uint8),
        rng.integers(0, 256, size=(1, odd_h, odd_w, 3), dtype=np.uint8),
    ]


def _max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    # NaN compares false against any tolerance; count it as an infinite error instead.
    if not np.all(np.isfinite(diff)):
        return math.inf
    return float(diff.max()) if diff.size else 0.0


def compare_backends(reference: Backend, candidate: Backend, batches: Sequence[np.ndarray]) -> dict[str, Any]:
    """Run both backends on every batch (uint8 N x H x W x 3) and compare the outputs.

    Returns ``{"reference", "candidate" (backend names), "batches" ([N, H, W] each),
    "pixels", "max_abs_prob_diff", "max_abs_entropy_diff", "max_abs_head_diff"
    (None without heads; of ``heads_discrepancy``, or of ``head1``/``head2`` in
    older exports), "heads_disagree_agreement" (fraction of pixels whose
    ``heads_disagree`` agrees; None without it), "max_abs_gap_diff" (None without a ``gap`` output;
    over the pixels whose argmax class agrees, since the gap is read at the
    predicted class and a near-tie flipped by rounding picks another prototype),
    "argmax_agreement" (fraction of pixels whose argmax class agrees),
    "argmax_disagreements"}``. Outputs that cannot be compared at all
    (different classes, output names or shapes) raise Failure.
    """
    if list(reference.classes) != list(candidate.classes):
        raise Failure(
            f"{candidate.name} model has classes {candidate.classes}, {reference.name} model has {reference.classes}"
        )
    prob_diff = entropy_diff = 0.0
    head_diff: float | None = None
    head_agree = (0, 0)  # pixels where heads_disagree matches, pixels compared
    gap_diff: float | None = None
    pixels = agree = 0
    shapes = []
    for batch in batches:
        ref = reference.infer(batch)
        cand = candidate.infer(batch)
        if sorted(ref) != sorted(cand):
            raise Failure(f"{candidate.name} outputs {sorted(cand)}, {reference.name} outputs {sorted(ref)}")
        for name in ref:
            if ref[name].shape != cand[name].shape:
                raise Failure(
                    f"output {name!r} for input {batch.shape}: {candidate.name} gives shape "
                    f"{cand[name].shape}, {reference.name} gives {ref[name].shape}"
                )
        prob_diff = max(prob_diff, _max_abs_diff(ref["prob"], cand["prob"]))
        entropy_diff = max(entropy_diff, _max_abs_diff(ref["entropy"], cand["entropy"]))
        for name in ("heads_discrepancy", "head1", "head2"):
            if name in ref:
                head_diff = max(head_diff or 0.0, _max_abs_diff(ref[name], cand[name]))
        if "heads_disagree" in ref:
            # A 0/1 map: near-ties between the heads may flip with rounding, so it is
            # compared as an agreement rate, like the argmax class.
            head_same = (ref["heads_disagree"] > 0.5) == (cand["heads_disagree"] > 0.5)
            head_agree = (head_agree[0] + int(head_same.sum()), head_agree[1] + int(head_same.size))
        same = ref["prob"].argmax(axis=1) == cand["prob"].argmax(axis=1)
        if "gap" in ref:
            gap_diff = max(gap_diff or 0.0, _max_abs_diff(ref["gap"][same], cand["gap"][same]))
        agree += int(same.sum())
        pixels += int(same.size)
        shapes.append([int(s) for s in batch.shape[:3]])
    return {
        "reference": reference.name,
        "candidate": candidate.name,
        "batches": shapes,
        "pixels": pixels,
        "max_abs_prob_diff": prob_diff,
        "max_abs_entropy_diff": entropy_diff,
        "max_abs_head_diff": head_diff,
        "heads_disagree_agreement": head_agree[0] / head_agree[1] if head_agree[1] else None,
        "max_abs_gap_diff": gap_diff,
        "argmax_agreement": agree / pixels if pixels else 1.0,
        "argmax_disagreements": pixels - agree,
    }


def check_parity(report: dict[str, Any], tolerance: float = DEFAULT_TOLERANCE, min_agreement: float = MIN_AGREEMENT) -> None:
    """Raise Failure (exit 1) when a ``compare_backends`` report is outside the limits.

    Probabilities (and the heads' discrepancy, and the domain gap where the
    argmax agrees) must agree within ``tolerance``; the argmax class and the
    heads' disagreement map on at least ``min_agreement`` of the pixels. Entropy is
    reported but not gated: it is a smooth function of the probabilities.
    """
    problems = []
    if not report["max_abs_prob_diff"] <= tolerance:
        problems.append(f"max |dprob| = {report['max_abs_prob_diff']:.3g} > tolerance {tolerance:g}")
    head = report.get("max_abs_head_diff")
    if head is not None and not head <= tolerance:
        problems.append(f"max |dhead| = {head:.3g} > tolerance {tolerance:g}")
    head_agree = report.get("heads_disagree_agreement")
    if head_agree is not None and head_agree < min_agreement:
        problems.append(f"heads-disagreement agreement {100 * head_agree:.3f}% < {100 * min_agreement:.1f}%")
    gap = report.get("max_abs_gap_diff")
    if gap is not None and not gap <= tolerance:
        problems.append(f"max |dgap| = {gap:.3g} > tolerance {tolerance:g}")
    if report["argmax_agreement"] < min_agreement:
        problems.append(f"argmax agreement {100 * report['argmax_agreement']:.3f}% < {100 * min_agreement:.1f}%")
    if problems:
        raise Failure(
            f"parity check failed, {report['candidate']} vs {report['reference']}: {'; '.join(problems)} "
            f"over {report['pixels']} pixels; the exported model does not reproduce the checkpoint"
        )


def format_report(report: dict[str, Any]) -> str:
    """One line for the terminal, e.g. ``parity onnxruntime vs torch: max |dprob| = 3.1e-07, ...``."""
    # Floor, so that one wrong pixel in a million never prints as 100.000%.
    pct = math.floor(report["argmax_agreement"] * 100_000) / 1000
    line = (
        f"parity {report['candidate']} vs {report['reference']}: max |dprob| = {report['max_abs_prob_diff']:.2g}, "
        f"max |dentropy| = {report['max_abs_entropy_diff']:.2g}, "
    )
    if report.get("max_abs_head_diff") is not None:
        line += f"max |dhead| = {report['max_abs_head_diff']:.2g}, "
    if report.get("heads_disagree_agreement") is not None:
        line += f"heads-disagreement agreement = {math.floor(report['heads_disagree_agreement'] * 100_000) / 1000:.3f}%, "
    if report.get("max_abs_gap_diff") is not None:
        line += f"max |dgap| = {report['max_abs_gap_diff']:.2g}, "
    return line + f"argmax agreement = {pct:.3f}% over {report['pixels']} pixels"


def top_points(entropy: np.ndarray, k: int) -> list[set[int]]:
    """Per image, the flat indices of the ``k`` highest-entropy pixels: float N x H x W -> N sets.

    A backend-level stand-in for "the points a query would choose" (the
    strategies live above ``runtime``): uncertainty selection ranks pixels by
    these maps, so two backends agreeing here choose the same points.
    """
    flat = entropy.reshape(entropy.shape[0], -1)
    k = min(k, flat.shape[1])
    # Stable sort on -entropy: ties resolved by position, as the query does.
    return [set(np.argsort(-row, kind="stable")[:k].tolist()) for row in flat]


def compare_engine(reference: Backend, candidate: Backend, batches: Sequence[np.ndarray], points: int = 50) -> dict[str, Any]:
    """``compare_backends`` plus ``points_agreement``: the mean share of the ``points`` top-entropy pixels per image both pick."""
    report = compare_backends(reference, candidate, batches)
    shares = []
    for batch in batches:
        a, b = top_points(reference.infer(batch)["entropy"], points), top_points(candidate.infer(batch)["entropy"], points)
        shares += [len(x & y) / max(1, len(x)) for x, y in zip(a, b)]
    report["points"] = points
    report["points_agreement"] = float(np.mean(shares)) if shares else 1.0
    return report


def verify_engine(
    onnx_path: str | os.PathLike,
    engine_path: str | os.PathLike,
    *,
    sample_size: tuple[int, int] = (256, 128),
    min_agreement: float = 0.99,
) -> dict[str, Any]:
    """Compare a TensorRT engine against onnxruntime on its ONNX model (the engine's source).

    Reduced precision moves probabilities by ~1e-3 (fp16) to ~1e-2 (int8), so
    max |dprob| is reported, not gated; the export fails (Failure) only when
    the argmax class agrees on fewer than ``min_agreement`` of the pixels.
    onnxruntime runs on CUDA when its CUDA provider is there, else the CPU.
    """
    from atool.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from atool.runtime.backends.tensorrt_backend import TensorRTBackend

    import onnxruntime

    device = "cuda" if "CUDAExecutionProvider" in onnxruntime.get_available_providers() else "cpu"
    candidate = TensorRTBackend(Path(engine_path))
    reference = OnnxRuntimeBackend(Path(onnx_path), device=device)
    lo, hi = candidate._limits
    width = min(max(int(sample_size[0]), lo[2]), hi[2])
    height = min(max(int(sample_size[1]), lo[1]), hi[1])
    batches = [b for b in sample_batches((width, height)) if all(a <= s <= z for a, s, z in zip(lo, b.shape, hi))]
    if not batches:
        raise Failure(f"no parity sample fits the engine's profile {lo} .. {hi}")
    report = compare_engine(reference, candidate, batches)
    if report["argmax_agreement"] < min_agreement:
        raise Failure(
            f"parity check failed, tensorrt vs onnxruntime: argmax agreement {100 * report['argmax_agreement']:.3f}% "
            f"< {100 * min_agreement:.1f}% (max |dprob| = {report['max_abs_prob_diff']:.3g}); the engine does not reproduce the model"
        )
    return report


def format_engine_report(report: dict[str, Any]) -> str:
    """``format_report`` plus the chosen-points agreement."""
    return format_report(report) + f", top-{report['points']} entropy points agreement = {100 * report['points_agreement']:.1f}%"


def verify_export(
    checkpoint: str | os.PathLike,
    onnx_path: str | os.PathLike,
    *,
    sample_size: tuple[int, int] = (256, 128),
    tolerance: float = DEFAULT_TOLERANCE,
) -> dict[str, Any]:
    """Compare onnxruntime on ``onnx_path`` against torch on ``checkpoint``; Failure outside the limits."""
    from atool.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from atool.runtime.backends.torch_backend import TorchBackend

    reference = TorchBackend(Path(checkpoint))
    candidate = OnnxRuntimeBackend(Path(onnx_path))
    report = compare_backends(reference, candidate, sample_batches(sample_size))
    check_parity(report, tolerance=tolerance)
    return report
