"""``atool export``: checkpoint -> self-describing ONNX model, verified against torch."""

from __future__ import annotations

import json

import click

from atool.commands._oneline import OneLineCommand
from atool.commands._options import SIZE


@click.command("export", cls=OneLineCommand)
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False), help="Training checkpoint (.pt) to export.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Model file to write (.onnx).")
@click.option("--trt", is_flag=True, help="Also build a TensorRT engine next to it (needs atool[gpu] and an NVIDIA GPU).")
@click.option("--fp16", is_flag=True, help="--trt: FP16 engine (TensorRT 10: builder flag; 11: ModelOpt AutoCast).")
@click.option("--int8", is_flag=True, help="--trt: INT8 engine calibrated on --calib-images (TensorRT 10: calibrator; 11: ModelOpt PTQ).")
@click.option("--calib-images", type=click.Path(file_okay=False), default=None, help="--int8: folder of calibration images (target domain).")
@click.option("--trt-batch", default="1:4:8", show_default=True, help="--trt: optimisation profile batch MIN:OPT:MAX.")
@click.option("--trt-size", default="256x128:1024x512:2048x1024", show_default=True, help="--trt: profile image sizes MIN:OPT:MAX (WxH).")
@click.option("--verify/--no-verify", default=True, show_default=True, help="Check onnxruntime against torch on sample images.")
@click.option("--opset", default=18, show_default=True, type=int, help="ONNX opset (18 is the exporter's native one).")
@click.option("--tolerance", default=1e-3, show_default=True, type=float, help="Largest allowed |prob difference| in the parity check.")
@click.option("--sample-size", default="256x128", show_default=True, type=SIZE, help="WxH of the tracing and verification images.")
def command(checkpoint: str, out: str, trt: bool, verify: bool, opset: int, tolerance: float, sample_size: tuple[int, int],
            fp16: bool = False, int8: bool = False, calib_images: str | None = None, trt_batch: str = "1:4:8",
            trt_size: str = "256x128:1024x512:2048x1024") -> None:
    """Export a checkpoint to ONNX with atool metadata inside (classes, normalisation, outputs).

    The model takes uint8 N x H x W x 3 RGB of any size and batch and returns the
    softmax and normalised entropy at input resolution. Unless --no-verify, the
    written file is run with onnxruntime and compared with torch; a mismatch
    exits 1 and leaves --out as it was.

    With --trt, a TensorRT engine (same stem, .engine; atool metadata in its
    header) is built from the ONNX model, compared with onnxruntime (max |dprob|,
    argmax and top-entropy point agreement) and only then put in place.
    """
    # Heavy imports (torch, onnx) here, so `atool --help` stays fast.
    from atool.commands._trt import build_checked_engine, check_trt_options
    from atool.runtime.parity import format_report
    from atool.workflows.export import export_checked

    # Fail before the export's tens of seconds, not after.
    engine_options = check_trt_options(trt, fp16, int8, calib_images, trt_batch, trt_size)
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
        click.echo(build_checked_engine(out, engine_options, verify=verify, sample_size=sample_size))
