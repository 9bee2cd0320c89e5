"""``atool monitor``: field domain-shift monitoring (calibrate, run, eval).

Heavy imports (torch, onnxruntime, the backends) happen inside the commands.
"""

from __future__ import annotations

import json

import click

from atool.commands._oneline import OneLineCommand
from atool.commands._options import SIZE


@click.group("monitor")
def command() -> None:
    """Watch a deployed model's input stream for domain shift (calibrated alarms, frame capture, metrics)."""


def _ert(value: float) -> float:
    from atool.core.errors import BadInput

    if not value > 1:
        raise BadInput(f"--ert must be > 1 frame (the expected number of in-domain frames between false alarms), got {value}")
    return value


@command.command("calibrate", cls=OneLineCommand)
@click.option("--model", required=True, type=click.Path(dir_okay=False), help="Model file (.pt, .onnx, .engine).")
@click.option("--images", required=True, type=click.Path(), help="In-domain reference frames; one subfolder per ordered sequence.")
@click.option("--ert", default=10000.0, show_default=True, type=float, help="Target expected run time between false alarms, in frames.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Calibration file to write (monitor.json).")
@click.option("--size", default=None, type=SIZE, help="Resize frames to WxH before the model (run uses the same).")
@click.option("--k", "k", default=0.5, show_default=True, type=float, help="CUSUM reference value (half the shift to detect, in score sd).")
@click.option("--block", default=None, type=int, help="Bootstrap block length in frames [default: from the score's autocorrelation].")
@click.option("--held-out", default=0.25, show_default=True, type=float, help="Share of each sequence held out to report the empirical run length.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--seed", default=0, show_default=True, type=int)
def calibrate(model: str, images: str, ert: float, out: str, size, k: float, block: int | None, held_out: float,
              device: str, seed: int) -> None:
    """Fit the per-frame signals and the detector threshold on in-domain frames."""
    from pathlib import Path

    from atool.core.errors import BadInput
    from atool.data.images import BadImage, read_image
    from atool.monitor.calibration import features_of, fit_monitor, reference_sequences, write_calibration
    from atool.runtime.backends import load_backend

    _ert(ert)
    if block is not None and block < 1:
        raise BadInput(f"--block must be >= 1 frame, got {block}")
    if not 0 <= held_out < 0.9:
        raise BadInput(f"--held-out must be in [0, 0.9), got {held_out}")
    seqs = reference_sequences(images)
    backend = load_backend(model, device=device)
    lengths: list[int] = []

    def frames():
        for seq in seqs:
            n = 0
            for p in seq:
                try:
                    rgb = read_image(p)
                except BadImage:
                    continue
                n += 1
                yield rgb
            lengths.append(n)

    feats = features_of(backend.infer, frames(), 4, (2, 4), size)
    lengths = [n for n in lengths if n]
    if not feats:
        raise BadInput(f"no readable images in reference folder {images}")
    fitted = fit_monitor(feats, lengths, len(backend.classes), ert, k, block, held_out, stride=4, seed=seed)
    write_calibration(out, Path(model), backend.name, backend.classes, size, fitted, images)
    det, held = fitted["detector"], fitted["held_out"]
    click.echo(f"wrote {out}: {sum(lengths)} reference frames in {len(lengths)} sequence(s), h={det['h']:.3f} for ERT "
               f"{ert:g} (block {det['block']}); held out: {held.get('frames', 0)} frames, {held.get('alarms', 0)} alarms"
               + (f", bootstrap ERT {held['bootstrap_ert']:.0f}" if held.get("bootstrap_ert") else ""))


@command.command("run", cls=OneLineCommand)
@click.option("--model", required=True, type=click.Path(dir_okay=False))
@click.option("--calibration", required=True, type=click.Path(dir_okay=False), help="monitor.json from atool monitor calibrate.")
@click.option("--source", required=True, help="A folder of frames, a video file, or a camera index.")
@click.option("--events", default=None, type=click.Path(dir_okay=False), help="Append alarm_start/alarm_end events as JSON Lines.")
@click.option("--metrics-port", default=None, type=int, help="Serve Prometheus metrics on this port (0: any free port).")
@click.option("--metrics-file", default=None, type=click.Path(dir_okay=False), help="Write Prometheus metrics to this textfile.")
@click.option("--fps", default=None, type=float, help="Real-time mode: frames arrive at this rate; late frames are dropped and counted.")
@click.option("--capture", default=None, type=click.Path(file_okay=False), help="Keep the frames most worth labeling here.")
@click.option("--capture-quota", default="2GB", show_default=True, help="Byte quota of the capture folder (e.g. 2GB, 500MB).")
@click.option("--capture-max", default=1000, show_default=True, type=int, help="Most frames kept.")
@click.option("--capture-points", default=5, show_default=True, type=int, help="Query points per kept frame.")
@click.option("--summary", default=None, type=click.Path(dir_okay=False), help="Write the run summary JSON here.")
@click.option("--device", default="cpu", show_default=True)
def run(model: str, calibration: str, source: str, events, metrics_port, metrics_file, fps, capture, capture_quota: str,
        capture_max: int, capture_points: int, summary, device: str) -> None:
    """Monitor a stream: alarms with a calibrated false-alarm rate, metrics, frame capture."""
    from atool.core.errors import BadInput
    from atool.core.io import atomic_write_json
    from atool.monitor.calibration import load_calibration
    from atool.monitor.runner import run_monitor
    from atool.monitor.source import open_source
    from atool.runtime.backends import load_backend

    if fps is not None and not fps > 0:
        raise BadInput(f"--fps must be > 0, got {fps}")
    cal = load_calibration(calibration, model)
    cap = None
    if capture:
        from atool.monitor.capture import FrameCapture, parse_quota

        quota = parse_quota(capture_quota)
        if quota < 4096:
            raise BadInput(f"--capture-quota {capture_quota} is too small for one frame plus the query list; raise it")
        cap_model = {"path": model, "sha256": cal.sha256, "backend": cal.doc["model"].get("backend", "?")}
        cap = FrameCapture(capture, quota, capture_max, cap_model, cal.classes, capture_points)
    src = open_source(source)
    backend = load_backend(model, device=device)
    metrics = None
    if metrics_port is not None or metrics_file:
        from atool.monitor.metrics import Metrics

        metrics = Metrics(metrics_port, metrics_file)
    result = run_monitor(backend, cal, src, events=events, metrics=metrics, capture=cap, fps=fps)
    if summary:
        atomic_write_json(summary, result)
    click.echo(f"monitored {result['frames']} frames: {result['alarms']} alarm(s), {result['dropped']} dropped, "
               f"{result['corrupt']} corrupt; model {result['infer_ms']:.2f} ms/frame, monitor {result['monitor_ms']:.3f} ms/frame"
               + (f", kept {result['capture']['kept']} frames" if cap else ""))


@command.command("eval", cls=OneLineCommand)
@click.option("--model", required=True, type=click.Path(dir_okay=False))
@click.option("--calibration", required=True, type=click.Path(dir_okay=False))
@click.option("--shifts", default="night,fog,rain,camera", show_default=True)
@click.option("--streams", default=20, show_default=True, type=int, help="Shift streams per shift.")
@click.option("--in-frames", default=20000, show_default=True, type=int, help="Held-out in-domain frames for the false-alarm rate.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Results JSON.")
@click.option("--plot", default=None, type=click.Path(dir_okay=False), help="Delay-vs-false-alarm curve (PNG).")
@click.option("--size", default=None, type=SIZE, help="Rendered frame size WxH [default: the calibration's size, else 256x128].")
@click.option("--seed", default=100, show_default=True, type=int)
def eval_(model: str, calibration: str, shifts: str, streams: int, in_frames: int, out: str, plot, size, seed: int) -> None:
    """Detection delay and false alarms on synthetic shift streams, against river's ADWIN and Page-Hinkley."""
    from atool.core.io import atomic_write_json
    from atool.monitor.calibration import load_calibration
    from atool.monitor.evaluate import evaluate, format_table
    from atool.runtime.backends import load_backend

    cal = load_calibration(calibration, model)
    backend = load_backend(model)
    from atool.core.errors import BadInput

    if streams < 1 or in_frames < 1:
        raise BadInput(f"--streams and --in-frames must be >= 1, got {streams} and {in_frames}")
    res = evaluate(backend, cal, [s.strip() for s in shifts.split(",") if s.strip()], streams, in_frames, seed, plot, size)
    atomic_write_json(out, res)
    click.echo(format_table(res))

