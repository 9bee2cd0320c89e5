"""ONNX Runtime backend: runs a model written by ``atool export``.

The model file is self-describing (atool metadata in ``metadata_props``), so
nothing but the .onnx file is needed. onnxruntime is imported when a model
is loaded, never at module import, so ``atool --help`` works without it.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from atool.runtime.backends import BACKENDS, Backend
from atool.core.errors import BadInput, MissingDependency
from atool.core.metadata import parse_metadata

log = logging.getLogger(__name__)

_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependency(
            "onnxruntime is not installed; install it with `pip install onnxruntime` "
            "(or atool[gpu] for onnxruntime-gpu), or run the checkpoint with the torch backend"
        ) from None
    return onnxruntime


def _providers(ort: Any, device: str) -> list[Any]:
    """Execution providers for ``device`` ("cpu", "cuda" or "cuda:N"), best first."""
    m = re.fullmatch(r"(cpu|cuda)(?::(\d+))?", device.strip().lower())
    if not m:
        raise BadInput(f"device {device!r} is not valid for the onnxruntime backend; use cpu, cuda or cuda:N")
    if m.group(1) == "cpu":
        return [_CPU]
    if _CUDA not in ort.get_available_providers():
        # Falling back keeps a pipeline running on a box without a GPU build, but
        # it is slow enough that the user must hear about it.
        log.warning(
            "device %s requested but this onnxruntime has no CUDA provider (install onnxruntime-gpu, "
            "e.g. via atool[gpu]); running on CPU",
            device,
        )
        return [_CPU]
    return [(_CUDA, {"device_id": int(m.group(2) or 0)}), _CPU]


@BACKENDS.register("onnxruntime")
class OnnxRuntimeBackend(Backend):
    suffixes = (".onnx",)
    """Runs an atool-exported ONNX model; see the package docstring for ``infer``."""


    def __init__(self, path: Path, device: str = "cpu", threads: int | None = None):
        ort = _import_onnxruntime()
        self.path = Path(path)
        self.device = device
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # 0 lets ORT use one thread per physical core.
        opts.intra_op_num_threads = int(threads) if threads else 0
        # ORT's own warnings (e.g. unused initialisers) go to stderr unprompted; keep errors only.
        opts.log_severity_level = 3
        providers = _providers(ort, device)
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=providers)
        except Exception as exc:  # ORT raises its own types (InvalidProtobuf, Fail, ...) for bad files
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BadInput(
                f"{self.path} could not be loaded as an ONNX model ({detail[:160]}); "
                "is it a model written by `atool export`?"
            ) from None
        self.providers = list(self.session.get_providers())
        if providers[0] != _CPU and self.providers[0] != providers[0][0]:
            log.warning("onnxruntime could not start CUDA for %s (libraries missing?); running on CPU", self.path)

        props = dict(self.session.get_modelmeta().custom_metadata_map)
        meta = parse_metadata(props, str(self.path))
        self.metadata = meta
        self.classes = list(meta["classes"])
        self.heads = bool(meta["heads"])
        self.prototypes = bool(meta["prototypes"])

        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != meta["input"]["name"] or inputs[0].type != "tensor(uint8)":
            got = ", ".join(f"{i.name}:{i.type}" for i in inputs)
            raise BadInput(
                f"{self.path}: graph inputs ({got}) do not match its atool metadata "
                f"(one uint8 input {meta['input']['name']!r}); was the file edited after `atool export`?"
            )
        self.input_name = inputs[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        if self.output_names != meta["outputs"]:
            raise BadInput(
                f"{self.path}: graph outputs {self.output_names} do not match its atool metadata "
                f"{meta['outputs']}; was the file edited after `atool export`?"
            )

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """uint8 N x H x W x 3 -> {"prob": N x C x H x W, "entropy": N x H x W, ...} float32 (every graph output by name)."""
        self.check_batch(batch)
        outs = self.session.run(self.output_names, {self.input_name: np.ascontiguousarray(batch)})
        return dict(zip(self.output_names, outs))
