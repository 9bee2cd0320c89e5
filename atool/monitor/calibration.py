"""``monitor.json``: everything ``atool monitor run`` needs to score frames as calibration did.

Calibration reads in-domain reference frames in order (each subfolder of the
reference folder is one sequence; a flat folder is one), computes per-frame
features once, holds out the last quarter of every sequence, fits the signal
reference and the standardiser on the rest, and sets the CUSUM threshold for
the target ERT by block-bootstrap simulation. The held-out frames then give the
run length the user can expect on frames calibration never saw.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

import atool
from atool.core.errors import BadInput, Mismatch
from atool.core.io import atomic_write_json, read_json, sha256_file
from atool.monitor.detector import alarms_with_restart, auto_block, calibrate_threshold, simulated_ert
from atool.monitor.signals import SignalSpec, Standardiser, concat_features, fit_spec, frame_features, signals_from_features

MONITOR_FORMAT = "atool.monitor/v1"


def resize_to(rgb: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    import cv2

    if size is None or (rgb.shape[1], rgb.shape[0]) == tuple(size):
        return rgb
    return cv2.resize(rgb, tuple(size), interpolation=cv2.INTER_AREA)


def features_of(infer: Callable[[np.ndarray], dict], frames: Iterable[np.ndarray], stride: int, grid: tuple[int, int],
                size: tuple[int, int] | None, batch: int = 16) -> dict[str, np.ndarray]:
    """Per-frame features (see ``signals.frame_features``) of RGB frames, batched by equal size."""
    parts, pending = [], []

    def flush() -> None:
        if pending:
            batch = np.stack(pending)
            parts.append(frame_features(infer(batch), stride, grid, batch))
            pending.clear()

    for rgb in frames:
        rgb = resize_to(rgb, size)
        if pending and pending[0].shape != rgb.shape:
            flush()
        pending.append(rgb)
        if len(pending) == batch:
            flush()
    flush()
    return concat_features(parts)


def reference_sequences(root: str | os.PathLike) -> list[list[Path]]:
    """Image paths of the reference folder grouped into sequences: one per folder that holds images."""
    from atool.data.images import list_images

    paths = list_images(root)
    if not paths:
        raise BadInput(f"reference folder {root} holds no images; give in-domain frames (png, jpg, ...), "
                       "one subfolder per recorded sequence")
    groups: dict[Path, list[Path]] = {}
    for p in paths:
        groups.setdefault(p.parent, []).append(p)
    return [groups[k] for k in sorted(groups)]


def split_held_out(lengths: list[int], held_out: float) -> list[tuple[int, int, int]]:
    """(start, split, end) offsets into the concatenated frames: the last ``held_out`` share of each sequence."""
    out, pos = [], 0
    for n in lengths:
        cut = n - int(round(n * held_out)) if n >= 8 else n
        out.append((pos, pos + cut, pos + n))
        pos += n
    return out


def fit_monitor(feats: dict[str, np.ndarray], lengths: list[int], num_classes: int, ert: float, k: float = 0.5,
                block: int | None = None, held_out: float = 0.25, stride: int = 4, grid: tuple[int, int] = (2, 4),
                chains: int = 400, seed: int = 0) -> dict[str, Any]:
    """The calibration block of monitor.json from reference features (``lengths``: frames per sequence, in order)."""
    if not ert > 1:
        raise BadInput(f"--ert must be > 1 frame (it is the expected number of frames between false alarms), got {ert}")
    spans = split_held_out(lengths, held_out)
    fit_idx = np.concatenate([np.arange(a, b) for a, b, _ in spans])
    hold_idx = np.concatenate([np.arange(b, e) for _, b, e in spans])
    if len(fit_idx) < 20:
        raise BadInput(f"calibration needs at least 20 reference frames after holding out {held_out:.0%}, got {len(fit_idx)}")
    spec, st = _fit_scorer(feats, fit_idx, num_classes, stride, grid)
    score = st.score(signals_from_features(feats, spec))
    # Cross-fitting: the threshold is simulated on out-of-fold scores (each half of every sequence scored
    # by a scorer fitted on the other halves). In-sample scores look more in-domain than new frames do,
    # and a threshold set on them alarms too often on the road.
    oof = np.empty(len(score))
    halves = [(np.arange(a, (a + b) // 2), np.arange((a + b) // 2, b)) for a, b, _ in spans if b - a >= 4]
    if len(halves) and all(len(x) and len(y) for x, y in halves):
        for fold in (0, 1):
            train = np.concatenate([h[1 - fold] for h in halves])
            test = np.concatenate([h[fold] for h in halves])
            f_spec, f_st = _fit_scorer(feats, train, num_classes, stride, grid)
            oof[test] = f_st.score(signals_from_features({k: v[test] for k, v in feats.items()}, f_spec))
        fit_seqs = [oof[h] for pair in halves for h in pair]
    else:
        fit_seqs = [score[a:b] for a, b, _ in spans if b > a]
    hold_seqs = [score[b:e] for _, b, e in spans if e > b]
    block = block or auto_block(fit_seqs)
    h, sim = calibrate_threshold(fit_seqs, ert, k, block, chains, seed)
    held: dict[str, Any] = {"frames": int(len(hold_idx))}
    if len(hold_idx):
        # Restart the detector at every sequence start: sequences are separate recordings.
        alarms = sum(len(alarms_with_restart(s, k, np.array([h]))[0]) for s in hold_seqs)
        held.update({"alarms": alarms, "empirical_ert": (len(hold_idx) / alarms) if alarms else None,
                     "score_mean": float(score[hold_idx].mean()), "score_std": float(score[hold_idx].std())})
        if all(len(s) >= block for s in hold_seqs):
            held["bootstrap_ert"] = simulated_ert(hold_seqs, h, k, block, chains=200, horizon=int(min(3 * ert, 100_000)))
    return {"signals": spec.to_json(), "standardiser": st.to_json(),
            "detector": {"kind": "cusum", "k": k, "h": h, "ert": ert, "block": block, "simulation": sim},
            "reference": {"frames": int(sum(lengths)), "sequences": len(lengths), "fit_frames": int(len(fit_idx))},
            "held_out": held}


def _fit_scorer(feats: dict[str, np.ndarray], idx: np.ndarray, num_classes: int, stride: int,
                grid: tuple[int, int]) -> tuple[SignalSpec, Standardiser]:
    part = {key: v[idx] for key, v in feats.items()}
    spec = fit_spec(part, num_classes, stride, grid)
    return spec, Standardiser.fit(signals_from_features(part, spec))


def write_calibration(out: str | os.PathLike, model_path: Path, backend: str, classes: list[str],
                      size: tuple[int, int] | None, fitted: dict[str, Any], reference: str) -> dict[str, Any]:
    doc = {"format": MONITOR_FORMAT, "atool_version": atool.__version__,
           "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "model": {"path": str(model_path), "sha256": sha256_file(model_path), "backend": backend},
           "classes": classes, "size": list(size) if size else None, **fitted}
    doc["reference"] = {**doc["reference"], "path": str(reference)}
    atomic_write_json(out, doc)
    return doc


class Calibration:
    """A loaded monitor.json: the signal spec, the standardiser and the detector settings."""

    def __init__(self, doc: dict[str, Any], path: Path):
        self.doc, self.path = doc, path
        try:
            self.spec = SignalSpec.from_json(doc["signals"])
            self.standardiser = Standardiser.from_json(doc["standardiser"])
            det = doc["detector"]
            self.k, self.h, self.ert = float(det["k"]), float(det["h"]), float(det["ert"])
            self.size = tuple(doc["size"]) if doc.get("size") else None
            self.sha256 = str(doc["model"]["sha256"])
            self.classes = list(doc["classes"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BadInput(f"calibration {path} is incomplete or malformed ({exc!r}); rerun atool monitor calibrate") from None


def load_calibration(path: str | os.PathLike, model_path: str | os.PathLike | None = None) -> Calibration:
    """Read monitor.json; with ``model_path``, refuse it unless the model file has the recorded sha256."""
    path = Path(path)
    doc = read_json(path, "calibration file")
    if not isinstance(doc, dict) or doc.get("format") != MONITOR_FORMAT:
        raise BadInput(f"{path} is not an {MONITOR_FORMAT} calibration file; make one with atool monitor calibrate")
    cal = Calibration(doc, path)
    if model_path is not None:
        digest = sha256_file(model_path)
        if digest != cal.sha256:
            raise Mismatch(f"calibration {path} was made for another model (sha256 {cal.sha256[:12]}..., "
                           f"model {model_path} has {digest[:12]}...); calibrate this model with atool monitor calibrate")
    return cal
