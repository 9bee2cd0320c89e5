"""Optional runtimes, imported only when a command needs them, failing in one line."""

from __future__ import annotations

from typing import Any

from atool.core.errors import MissingDependency

NOT_INSTALLED = (
    "TensorRT is not installed; install atool[gpu] on a machine with an NVIDIA GPU, "
    "or use the .onnx model with the onnxruntime backend"
)


def import_tensorrt() -> Any:
    """Import and return the ``tensorrt`` module, or raise MissingDependency (exit 2)."""
    try:
        import tensorrt
    except ImportError:
        raise MissingDependency(NOT_INSTALLED) from None
    except (OSError, RuntimeError) as exc:
        # The wheel is there but its CUDA/libnvinfer libraries are not loadable.
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MissingDependency(
            f"TensorRT is installed but could not be loaded ({detail[:160]}); check the NVIDIA driver and CUDA "
            "libraries, or use the .onnx model with the onnxruntime backend"
        ) from None
    return tensorrt
