"""Prometheus over HTTP during a run, and real-time drops, with a stub backend (no model needed)."""

from __future__ import annotations

import time
import urllib.request

import numpy as np

from atool.monitor.calibration import Calibration
from atool.monitor.detector import Cusum, alarms_with_restart, calibrate_threshold
from atool.monitor.metrics import Metrics
from atool.monitor.runner import run_monitor
from atool.monitor.signals import SignalSpec, Standardiser
from atool.monitor.source import Frame


class StubBackend:
    def __init__(self, delay: float = 0.0):
        self.delay = delay

    def infer(self, batch):
        time.sleep(self.delay)
        n, h, w, _ = batch.shape
        prob = np.full((n, 2, h, w), 0.5, np.float32)
        prob[:, 0] += batch[..., 0].astype(np.float32)[:, None].squeeze(1) / 1000
        return {"prob": prob, "entropy": np.full((n, h, w), batch.mean() / 255, np.float32)}


class ListSource:
    live = False

    def __init__(self, n, hook=None):
        self.n, self.pos, self.hook = n, 0, hook

    def __iter__(self):
        while self.pos < self.n:
            i = self.pos
            self.pos += 1
            if self.hook:
                self.hook(i)
            yield Frame(i, f"f{i}", np.full((8, 8, 3), 100 if i < self.n // 2 else 250, np.uint8))

    def skip(self, k):
        k = max(0, min(k, self.n - self.pos))
        self.pos += k
        return k

    def close(self):
        pass


def _cal() -> Calibration:
    spec = SignalSpec(2, ["entropy", "high_entropy", "class_hist"], 0.5, [0.5, 0.5], 1, (1, 1))
    st = Standardiser([0.39, 0.5, 0.1], [0.01, 0.3, 0.1], [])
    doc = {"signals": spec.to_json(), "standardiser": st.to_json(), "detector": {"k": 0.5, "h": 3.0, "ert": 100},
           "size": None, "model": {"sha256": "0" * 64}, "classes": ["a", "b"]}
    return Calibration(doc, None)


def test_prometheus_endpoint_is_scraped_over_http():
    metrics = Metrics(port=0)
    scraped = {}

    def hook(i):
        if i == 30:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics.port}/metrics", timeout=5) as resp:
                scraped["text"] = resp.read().decode()

    res = run_monitor(StubBackend(), _cal(), ListSource(40, hook), metrics=metrics)
    text = scraped["text"]
    for name in ("atool_monitor_frames_total 30.0", "atool_monitor_dropped_frames_total", "atool_monitor_alarm ",
                 "atool_monitor_statistic", "atool_monitor_frame_latency_seconds_bucket"):
        assert name in text, name
    assert "atool_monitor_alarm 1.0" in text  # the stream turned bright at frame 20
    assert res["alarms"] == 1 and res["frames"] == 40


def test_fps_mode_drops_and_counts():
    res = run_monitor(StubBackend(delay=0.01), _cal(), ListSource(60), fps=400)
    assert res["dropped"] > 10 and res["frames"] + res["dropped"] == 60
    full = run_monitor(StubBackend(), _cal(), ListSource(60))
    assert full["dropped"] == 0 and full["frames"] == 60
    # Per-frame medians of model and monitoring time, over a bounded window of recent frames.
    assert full["median_frames"] == 60 and full["infer_ms_median"] > 0 and full["monitor_ms_median"] > 0
    assert full["overhead_median"] == full["monitor_ms_median"] / full["infer_ms_median"]


def test_cusum_threshold_meets_the_target_ert():
    rng = np.random.default_rng(0)
    # AR(1) reference scores: correlated like video.
    x = np.zeros(6000)
    for t in range(1, len(x)):
        x[t] = 0.8 * x[t - 1] + rng.normal() * 0.6
    x = (x - x.mean()) / x.std()
    h, info = calibrate_threshold([x[:4000]], 500, 0.5, block=20, chains=200)
    fresh = np.zeros(60000)
    for t in range(1, len(fresh)):
        fresh[t] = 0.8 * fresh[t - 1] + rng.normal() * 0.6
    fresh /= fresh.std()
    alarms = len(alarms_with_restart(fresh, 0.5, np.array([h]))[0])
    assert 60000 / 500 / 2.5 < alarms < 60000 / 500 * 2.5
    # The i.i.d. threshold would be far too low on correlated data.
    h_iid, _ = calibrate_threshold([x[:4000]], 500, 0.5, block=1, chains=200)
    assert h_iid < 0.7 * h
    det = Cusum(0.5, h)
    assert not any(det.update(0.0)[0] for _ in range(100))
