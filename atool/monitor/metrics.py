"""Prometheus metrics of a monitor run: an HTTP endpoint (``--metrics-port``) and/or a textfile
(``--metrics-file``, for node_exporter's textfile collector, rewritten atomically about once a second).

Metrics live in a registry of their own, so two monitors in one process (tests) do not clash.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from atool.core.errors import BadInput

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class Metrics:
    def __init__(self, port: int | None = None, textfile: str | os.PathLike | None = None, addr: str = "127.0.0.1",
                 textfile_every: float = 1.0):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.frames = Counter("atool_monitor_frames", "Frames the model ran on.", registry=r)
        self.dropped = Counter("atool_monitor_dropped_frames", "Frames dropped in real-time mode (--fps).", registry=r)
        self.corrupt = Counter("atool_monitor_corrupt_frames", "Frames that could not be decoded and were skipped.", registry=r)
        self.alarms = Counter("atool_monitor_alarms", "Alarms raised (alarm starts).", registry=r)
        self.alarm = Gauge("atool_monitor_alarm", "1 while a shift alarm is on, else 0.", registry=r)
        self.statistic = Gauge("atool_monitor_statistic", "The CUSUM statistic.", registry=r)
        self.threshold = Gauge("atool_monitor_threshold", "The CUSUM alarm threshold h.", registry=r)
        self.score = Gauge("atool_monitor_score", "The last frame's standardised shift score.", registry=r)
        self.latency = Histogram("atool_monitor_frame_latency_seconds", "Per-frame time: model plus monitoring.",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.captured = Gauge("atool_monitor_captured_frames", "Frames kept in the capture folder.", registry=r)
        self.textfile = Path(textfile) if textfile else None
        self.textfile_every = textfile_every
        self._last_write = 0.0
        self.server = None
        self.port = None
        if port is not None:
            self._serve(port, addr)

    def _serve(self, port: int, addr: str) -> None:
        from prometheus_client import start_http_server

        if not 0 <= port <= 65535:
            raise BadInput(f"--metrics-port must be 0..65535, got {port}")
        try:
            self.server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        except OSError as exc:
            raise BadInput(f"cannot serve metrics on {addr}:{port} ({exc.strerror or exc}); pick a free --metrics-port") from None
        self.port = self.server.server_port

    def tick(self, force: bool = False) -> None:
        """Rewrite the textfile if it is due (or ``force``)."""
        if self.textfile is None:
            return
        now = time.monotonic()
        if force or now - self._last_write >= self.textfile_every:
            from prometheus_client import write_to_textfile

            self.textfile.parent.mkdir(parents=True, exist_ok=True)
            write_to_textfile(str(self.textfile), self.registry)  # writes a temp file and renames it
            self._last_write = now

    def close(self) -> None:
        self.tick(force=True)
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
