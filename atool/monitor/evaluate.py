"""``atool monitor eval``: detection delay and false alarms on synthetic shift streams.

Scores are computed once per frame; every detector setting is then simulated
on the stored score sequences, so the delay-vs-false-alarm curve costs no
extra model runs. In-domain frames come from freshly rendered target scenes
(held out: calibration never saw them), shift streams are ``in:L0,<shift>:L1``
drives with the change at frame L0. river's ADWIN and Page-Hinkley, run on the
same score, are the baselines.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from atool.core.errors import MissingDependency
from atool.monitor.calibration import Calibration, features_of
from atool.monitor.detector import alarms_with_restart
from atool.monitor.signals import signals_from_features

PRE, POST = 150, 150  # frames before and after the change in each shift stream
CUSUM_SCALES = (0.5, 0.7, 0.85, 1.0, 1.25, 1.5, 2.0)
PH_THRESHOLDS = (5.0, 10.0, 20.0, 50.0, 100.0)
ADWIN_DELTAS = (0.2, 0.02, 0.002, 2e-4, 2e-6)


def _river() -> Any:
    try:
        from river import drift
    except ImportError:
        raise MissingDependency("river is not installed; pip install 'atool[monitor]' for the ADWIN/Page-Hinkley baselines") from None
    return drift


def stream_scores(backend: Any, cal: Calibration, segments: str, seed: int, size: tuple[int, int]) -> np.ndarray:
    """Standardised scores (float64 N) of a rendered stream."""
    from atool.data.synth.stream import parse_segments, rendered_bases, stream_frames

    frames = (f for _, f, _ in stream_frames(rendered_bases(seed, size), parse_segments(segments), seed))
    feats = features_of(backend.infer, frames, cal.spec.stride, cal.spec.grid, cal.size)
    return cal.standardiser.score(signals_from_features(feats, cal.spec))


def _river_alarms(make: Callable[[], Any], z: np.ndarray) -> np.ndarray:
    det, hits = make(), []
    for t, v in enumerate(z.tolist()):
        det.update(v)
        if det.drift_detected:
            hits.append(t)
    return np.asarray(hits, np.int64)


def _delays(alarm_lists: list[np.ndarray], change: int, post: int) -> np.ndarray:
    """Frames from the change to the first alarm at or after it (``post`` + 1 when missed)."""
    out = []
    for a in alarm_lists:
        after = a[a >= change]
        out.append(int(after[0] - change) if len(after) and after[0] < change + post else post + 1)
    return np.asarray(out)


def _summarise(fa_alarms: int, in_frames: int, delays: dict[str, np.ndarray], post: int) -> dict[str, Any]:
    res: dict[str, Any] = {"false_alarms_per_10k": 1e4 * fa_alarms / in_frames, "false_alarms": int(fa_alarms)}
    for shift, d in delays.items():
        res[shift] = {"median_delay": float(np.median(d)), "p90_delay": float(np.percentile(d, 90)),
                      "missed": int((d > post).sum()), "streams": int(len(d))}
    return res


def evaluate(backend: Any, cal: Calibration, shifts: list[str], streams: int, in_frames: int, seed: int = 100,
             plot: str | None = None, size: tuple[int, int] | None = None) -> dict[str, Any]:
    from atool.data.synth.shifts import check_shift

    for s in shifts:
        check_shift(s)
    drift = _river()
    size = tuple(cal.size) if cal.size else (size or (256, 128))
    in_z = stream_scores(backend, cal, f"in:{in_frames}", seed, size)
    shift_z = {s: [stream_scores(backend, cal, f"in:{PRE},{s}:{POST}", seed + 1000 * (j + 1) + i, size) for i in range(streams)]
               for j, s in enumerate(shifts)}

    methods: dict[str, list[tuple[str, Callable[[np.ndarray], np.ndarray]]]] = {
        "cusum": [(f"h x {c:g}", lambda z, c=c: alarms_with_restart(z, cal.k, np.array([cal.h * c]))[0]) for c in CUSUM_SCALES],
        "page_hinkley": [(f"threshold {t:g}", lambda z, t=t: _river_alarms(lambda: drift.PageHinkley(threshold=t), z))
                         for t in PH_THRESHOLDS],
        "adwin": [(f"delta {d:g}", lambda z, d=d: _river_alarms(lambda: drift.ADWIN(delta=d), z)) for d in ADWIN_DELTAS],
    }
    defaults = {"cusum": "h x 1", "page_hinkley": "threshold 50", "adwin": "delta 0.002"}
    results: dict[str, Any] = {"in_domain_frames": in_frames, "streams_per_shift": streams, "pre": PRE, "post": POST,
                               "target_ert": cal.ert, "target_false_alarms_per_10k": 1e4 / cal.ert,
                               "size": list(size), "methods": {}}
    for method, settings in methods.items():
        rows = []
        for label, alarms in settings:
            delays = {s: _delays([alarms(z) for z in zs], PRE, POST) for s, zs in shift_z.items()}
            row = _summarise(len(alarms(in_z)), in_frames, delays, POST)
            row["setting"] = label
            rows.append(row)
        results["methods"][method] = {"default": defaults[method], "curve": rows}
    if plot:
        plot_curve(results, shifts, plot)
    return results


def plot_curve(results: dict[str, Any], shifts: list[str], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from atool.core.io import atomic_write

    fig, axes = plt.subplots(1, len(shifts), figsize=(3.2 * len(shifts), 3.2), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, shift in zip(axes, shifts):
        for method, style in (("cusum", "o-"), ("page_hinkley", "s--"), ("adwin", "^:")):
            rows = results["methods"][method]["curve"]
            xs = [max(r["false_alarms_per_10k"], 0.05) for r in rows]
            ax.plot(xs, [r[shift]["median_delay"] for r in rows], style, label=method.replace("_", "-"))
        ax.axvline(results["target_false_alarms_per_10k"], color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_title(shift)
        ax.set_xlabel("false alarms / 10k in-domain frames")
    axes[0].set_ylabel("median detection delay (frames)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=110))
    plt.close(fig)


def format_table(res: dict[str, Any]) -> str:
    shifts = [k for k in res["methods"]["cusum"]["curve"][0] if isinstance(res["methods"]["cusum"]["curve"][0][k], dict)]
    lines = [f"target {res['target_false_alarms_per_10k']:.2f} false alarms / 10k frames (ERT {res['target_ert']:g}); "
             f"{res['in_domain_frames']} in-domain frames, {res['streams_per_shift']} streams per shift",
             f"{'method':<28}{'FA/10k':>8}" + "".join(f"{s + ' med/p90':>18}" for s in shifts)]
    for method, block in res["methods"].items():
        for row in block["curve"]:
            if row["setting"] != block["default"]:
                continue
            cells = "".join(f"{row[s]['median_delay']:>11.0f}/{row[s]['p90_delay']:<6.0f}" for s in shifts)
            lines.append(f"{method + ' (' + row['setting'] + ')':<28}{row['false_alarms_per_10k']:>8.2f}{cells}")
    return "\n".join(lines)
