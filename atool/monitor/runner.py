"""``atool monitor run``: read a stream, run the model, update the detector, report and capture.

Per frame: decode -> (resize) -> model -> features -> signals -> score -> CUSUM
-> events / metrics / capture. Nothing grows with the stream: the only buffer
is the few frames kept for an alarm's onset. Real-time mode (``fps``) treats
the source as arriving at ``fps`` frames per second from the start: frames
that arrived while the model was busy are dropped (and counted), and the run
waits when it is ahead.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from atool.monitor.calibration import Calibration, resize_to
from atool.monitor.detector import Cusum
from atool.monitor.signals import frame_features, signals_from_features


def rss_bytes() -> int:
    """Current resident set size (Linux /proc), 0 where unknown."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


@dataclass
class RunStats:
    frames: int = 0
    dropped: int = 0
    corrupt: int = 0
    alarms: int = 0
    infer_s: float = 0.0
    monitor_s: float = 0.0
    rss_first: int = 0  # resident memory after the first 1000 frames (warm-up done)
    rss_last: int = 0  # sampled every 1000 frames
    rss_max: int = 0
    # (model, monitoring) seconds of the latest frames: medians resist the odd descheduled frame; bounded.
    recent: deque = field(default_factory=lambda: deque(maxlen=1000))

    def add_times(self, infer_s: float, monitor_s: float) -> None:
        self.infer_s += infer_s
        self.monitor_s += monitor_s
        self.recent.append((infer_s, monitor_s))

    def summary(self) -> dict[str, Any]:
        n = max(1, self.frames)
        med = np.median(np.asarray(self.recent), axis=0) if self.recent else (0.0, 0.0)
        return {"frames": self.frames, "dropped": self.dropped, "corrupt": self.corrupt, "alarms": self.alarms,
                "infer_ms": 1000 * self.infer_s / n, "monitor_ms": 1000 * self.monitor_s / n,
                "overhead": self.monitor_s / self.infer_s if self.infer_s else None,
                "median_frames": len(self.recent), "infer_ms_median": 1000 * float(med[0]),
                "monitor_ms_median": 1000 * float(med[1]),
                "overhead_median": float(med[1] / med[0]) if med[0] else None,
                "rss_mb_after_1000": self.rss_first / 2**20, "rss_mb_max": self.rss_max / 2**20,
                "rss_mb_last": self.rss_last / 2**20}

    def sample_rss(self) -> None:
        self.rss_last = rss_bytes()
        self.rss_max = max(self.rss_max, self.rss_last)
        if not self.rss_first and self.frames >= 1000:
            self.rss_first = self.rss_last


def _event(fh: TextIO | None, kind: str, frame: int, name: str, stat: float, score: float, signals: dict) -> None:
    if fh is None:
        return
    fh.write(json.dumps({"event": kind, "frame": frame, "name": name, "time": time.time(), "statistic": stat,
                         "score": score, "signals": signals}) + "\n")
    fh.flush()


def run_monitor(backend: Any, cal: Calibration, source: Any, events: str | os.PathLike | None = None,
                metrics: Any = None, capture: Any = None, fps: float | None = None, onset_frames: int = 2,
                max_frames: int | None = None, clock: Any = time.monotonic, sleep: Any = time.sleep) -> dict[str, Any]:
    """Monitor ``source`` to its end (or ``max_frames`` processed); returns the run's summary."""
    det = Cusum(cal.k, cal.h)
    spec, st = cal.spec, cal.standardiser
    stats = RunStats()
    fh = open(events, "a", encoding="utf-8") if events else None  # a log: one flushed line per event
    recent: deque = deque(maxlen=onset_frames)  # (frame, outputs) just before the current one
    post_left = 0
    if metrics:
        metrics.threshold.set(cal.h)
    start = clock()
    try:
        for frame in source:
            if fps:
                due = start + frame.index / fps
                now = clock()
                if now < due and not getattr(source, "live", False):
                    sleep(due - now)
                else:
                    # Frames that arrived while we were busy are gone by now.
                    behind = int((now - start) * fps) - frame.index
                    if behind > 0:
                        n = source.skip(behind)
                        stats.dropped += n
                        if metrics:
                            metrics.dropped.inc(n)
            if frame.rgb is None:
                stats.corrupt += 1
                if metrics:
                    metrics.corrupt.inc()
                continue
            t0 = time.perf_counter()
            rgb = resize_to(frame.rgb, cal.size)
            out = backend.infer(rgb[None])
            t1 = time.perf_counter()
            sig = signals_from_features(frame_features(out, spec.stride, spec.grid, rgb[None]), spec)
            score = float(st.score(sig)[0])
            started, ended = det.update(score)
            t2 = time.perf_counter()
            stats.frames += 1
            stats.add_times(t1 - t0, t2 - t1)
            if started or ended:
                named = dict(zip(spec.names, (float(v) for v in sig[0])))
                _event(fh, "alarm_start" if started else "alarm_end", frame.index, frame.name, det.s, score, named)
                stats.alarms += int(started)
            if capture is not None:
                if started:
                    for f_prev, o_prev in recent:
                        _offer(capture, f_prev, o_prev, float("inf"), tier=1)
                    post_left = onset_frames + 1
                tier = 1 if post_left > 0 else 0
                post_left = max(0, post_left - 1)
                _offer(capture, frame, out, score, tier)
                recent.append((frame, out))
            if metrics:
                metrics.frames.inc()
                metrics.alarms.inc(int(started))
                metrics.alarm.set(int(det.alarm))
                metrics.statistic.set(det.s)
                metrics.score.set(score)
                metrics.latency.observe(time.perf_counter() - t0)
                if capture is not None:
                    metrics.captured.set(len(capture.entries))
                metrics.tick()
            if stats.frames % 1000 == 0:
                stats.sample_rss()
            if max_frames and stats.frames >= max_frames:
                break
    finally:
        if fh:
            fh.close()
        source.close()
    stats.sample_rss()
    summary = stats.summary()
    summary.update({"alarm_at_end": det.alarm, "statistic": det.s, "threshold": cal.h})
    if capture is not None:
        summary["capture"] = capture.close()
    if metrics:
        metrics.close()
    return summary


def _offer(capture: Any, frame: Any, out: dict, score: float, tier: int) -> None:
    ent = out["entropy"][0]
    pred = out["prob"][0].argmax(axis=0) if capture.would_keep((tier, score)) else None
    if pred is None:
        return
    score = score if np.isfinite(score) else 1e6
    capture.offer(frame.index, frame.rgb, score, ent, tier=tier, predicted=pred)
