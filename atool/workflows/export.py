"""Export a checkpoint and check the written graph against torch before it is published.

Conversion (``atool.export``) and running (``atool.runtime``) sit side by side
in the layers, so neither imports the other; this is where they meet.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from atool.core.errors import BadInput
from atool.export.onnx import DEFAULT_OPSET, export_onnx
from atool.runtime.parity import DEFAULT_TOLERANCE, verify_export


def export_checked(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
    sample_size: tuple[int, int] = (256, 128),
    tolerance: float = DEFAULT_TOLERANCE,
) -> dict[str, Any]:
    """``export_onnx`` with, unless ``verify`` is False, onnxruntime compared with torch on the temp file.

    A Failure from the parity check leaves ``out`` as it was.
    """
    if not tolerance > 0:
        raise BadInput(f"tolerance {tolerance} must be a positive number (default {DEFAULT_TOLERANCE})")

    def check(ckpt: Path, written: Path) -> dict[str, Any]:
        return verify_export(ckpt, written, sample_size=sample_size, tolerance=tolerance)

    return export_onnx(checkpoint, out, opset=opset, verify=check if verify else None, sample_size=sample_size)
