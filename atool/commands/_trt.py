"""``atool export --trt``: option checks before the ONNX export, then build, parity and publish the engine."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from atool.core.errors import BadInput


def check_trt_options(trt: bool, fp16: bool, int8: bool, calib_images: str | None, batch: str, size: str) -> dict[str, Any] | None:
    """The engine build options, checked (TensorRT present and able to build the precision); None without --trt."""
    if not trt:
        if fp16 or int8 or calib_images:
            raise BadInput("--fp16, --int8 and --calib-images set the TensorRT engine's precision: add --trt")
        return None
    if fp16 and int8:
        raise BadInput("give one of --fp16 and --int8")
    from atool.export.tensorrt import EngineProfile, check_tensorrt, parse_batch, parse_sizes

    precision = "int8" if int8 else "fp16" if fp16 else "fp32"
    size_min, size_opt, size_max = parse_sizes(size)
    profile = EngineProfile(parse_batch(batch), size_min, size_opt, size_max)
    profile.validate()
    check_tensorrt(precision, calib_images)
    return {"precision": precision, "calib_images": calib_images, "profile": profile}


def build_checked_engine(onnx_path: str | os.PathLike, options: dict[str, Any], *, verify: bool, sample_size: tuple[int, int]) -> str:
    """Build ``<onnx stem>.engine`` beside the model; unless ``verify`` is False, compare it with onnxruntime first.

    The engine is built under a temporary name and renamed only after the
    parity check passes, so a failed check leaves the previous engine. Returns
    the lines to print.
    """
    from atool.export.tensorrt import build_engine
    from atool.runtime.parity import format_engine_report, verify_engine

    final = Path(onnx_path).with_suffix(".engine")
    tmp = final.with_name(f".{final.stem}.unverified.engine")
    try:
        info = build_engine(onnx_path, tmp, **options)
        lines = []
        if verify:
            report = verify_engine(onnx_path, tmp, sample_size=sample_size)
            lines.append(format_engine_report(report))
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    head = (f"wrote {final} (TensorRT {info['tensorrt']}, {info['precision']}, {info['bytes'] / 1e6:.1f} MB, "
            f"batch {':'.join(map(str, info['profile']['batch']))}) in {info['build_seconds']:.1f} s")
    return "\n".join([head] + lines)
