"""ONNX -> TensorRT engine.

Building engines is not implemented in this version (it comes with the engine
runtime in a later release). What exists is the dependency check, so that
``atool export --trt`` fails fast, before any ONNX work, with a message that
says what to do instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from atool.core.errors import BadInput, MissingDependency
from atool.core.optional import import_tensorrt

def _not_supported(trt: Any) -> BadInput:
    version = getattr(trt, "__version__", "?")
    return BadInput(
        f"building TensorRT engines is not supported in this version of atool yet (TensorRT {version} found); "
        "export without --trt and run the .onnx model with the onnxruntime backend "
        "(its CUDA provider uses the GPU with --device cuda)"
    )


def check_tensorrt() -> None:
    """Raise unless ``build_engine`` can run here; cheap, meant to run before an export.

    MissingDependency (exit 2) without TensorRT; BadInput (exit 2) with it,
    because this version cannot build engines yet.
    """
    raise _not_supported(import_tensorrt())


def build_engine(onnx_path: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Build a TensorRT engine from an atool-exported ONNX model (not available yet).

    Raises MissingDependency when TensorRT is absent, BadInput otherwise.
    """
    raise _not_supported(import_tensorrt())
