"""TensorRT backend for serialized engines (.engine, .plan).

Running engines is not implemented in this version; loading one says so
honestly instead of pretending. tensorrt is imported only when a model is
loaded, so the rest of atool never needs it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from atool.runtime.backends import BACKENDS, Backend
from atool.core.errors import BadInput
from atool.core.optional import import_tensorrt


@BACKENDS.register("tensorrt")
class TensorRTBackend(Backend):
    suffixes = (".engine", ".plan")

    def __init__(self, path: Path, device: str = "cuda", threads: int | None = None):
        self.path = Path(path)
        trt = import_tensorrt()
        version = getattr(trt, "__version__", "?")
        raise BadInput(
            f"{self.path}: running TensorRT engines is not supported in this version of atool yet "
            f"(TensorRT {version} found); use the .onnx model with the onnxruntime backend "
            "(--device cuda for its CUDA provider)"
        )

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:  # pragma: no cover - never constructed
        raise NotImplementedError
