"""``atool export``: checkpoint -> self-describing ONNX model, verified against torch."""

from __future__ import annotations

import json
from pathlib import Path

import click

from atool.commands._oneline import OneLineCommand
from atool.commands._options import SIZE


@click.command("export", cls=OneLineCommand)
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False), help="Training checkpoint (.pt) to export.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Model file to write (.onnx).")
@click.option("--trt", is_flag=True, help="Also build a TensorRT engine next to it (needs atool[gpu] and an NVIDIA GPU).")
@click.option("--verify/--no-verify", default=True, show_default=True, help="Check onnxruntime against torch on sample images.")
@click.option("--opset", default=18, show_default=True, type=int, help="ONNX opset (18 is the exporter's native one).")
@click.option("--tolerance", default=1e-3, show_default=True, type=float, help="Largest allowed |prob difference| in the parity check.")
@click.option("--sample-size", default="256x128", show_default=True, type=SIZE, help="WxH of the tracing and verification images.")
def command(checkpoint: str, out: str, trt: bool, verify: bool, opset: int, tolerance: float, sample_size: tuple[int, int]) -> None:
    """Export a checkpoint to ONNX with atool metadata inside (classes, normalisation, outputs).

    The model takes uint8 N x H x W x 3 RGB of any size and batch and returns the
    softmax and normalised entropy at input resolution. Unless --no-verify, the
    written file is run with onnxruntime and compared with torch; a mismatch
    exits 1 and leaves --out as it was.
    """
    # Heavy imports (torch, onnx) here, so `atool --help` stays fast.
    from atool.export.tensorrt import build_engine, check_tensorrt
    from atool.runtime.parity import format_report
    from atool.workflows.export import export_checked

    if trt:
        # Fail before the export's tens of seconds, not after.
        check_tensorrt()
    report = export_checked(checkpoint, out, opset=opset, verify=verify, sample_size=sample_size, tolerance=tolerance)
    meta = report["metadata"]
    heads = "with selector heads" if meta["atool.heads"] == "true" else "no selector heads"
    n_classes = len(json.loads(meta["atool.classes"]))
    click.echo(
        f"wrote {out} (opset {report['opset']}, {report['bytes'] / 1e6:.1f} MB, {n_classes} classes, {heads}) "
        f"in {report['export_seconds']:.1f} s"
    )
    if report["verify"] is not None:
        click.echo(format_report(report["verify"]))
    if trt:
        engine = build_engine(out, Path(out).with_suffix(".engine"))
        click.echo(f"wrote {engine}")
