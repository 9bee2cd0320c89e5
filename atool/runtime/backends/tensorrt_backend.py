"""TensorRT backend: runs an engine written by ``atool export --trt``.

The engine file starts with atool's metadata (``atool.core.engine_file``), so
classes, heads and outputs come from the one file, as for ONNX models.
Inference uses the named-tensor API (TensorRT 10 and 11 alike):
``set_input_shape``, ``set_tensor_address`` and ``execute_async_v3`` on one
CUDA stream. Device buffers (torch CUDA tensors) are allocated once and
grown only when a larger batch or image arrives, so a run over same-sized
images allocates nothing after the first batch. The engine computes the
probabilities and entropy only; argmax and selection stay on the host
(TensorRT's ArgMax is slow and the strategies need the maps anyway).

tensorrt and torch's CUDA runtime are imported when a model is loaded, never
at module import.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from atool.core.engine_file import read_engine_file
from atool.core.errors import BadInput, Failure
from atool.core.metadata import parse_metadata
from atool.core.optional import import_tensorrt
from atool.runtime.backends import BACKENDS, Backend


def _cuda_device(device: str) -> Any:
    import torch

    m = re.fullmatch(r"cuda(?::(\d+))?", device.strip().lower())
    if not m:
        raise BadInput(f"device {device!r} is not valid for a TensorRT engine; engines run on cuda or cuda:N")
    if not torch.cuda.is_available():
        raise BadInput("TensorRT engines run on an NVIDIA GPU, and no CUDA device is visible here; use the .onnx model on the CPU")
    index = int(m.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise BadInput(f"device {device} does not exist: {torch.cuda.device_count()} CUDA device(s) visible")
    return torch.device("cuda", index)


class _Buffer:
    """A grow-only CUDA allocation viewed at the shape a batch needs."""

    def __init__(self, dtype: Any, device: Any) -> None:
        self.dtype, self.device, self.flat = dtype, device, None

    def view(self, shape: tuple[int, ...]) -> Any:
        import torch

        n = int(np.prod(shape))
        if self.flat is None or self.flat.numel() < n:
            self.flat = torch.empty(n, dtype=self.dtype, device=self.device)
        return self.flat[:n].view(shape)


@BACKENDS.register("tensorrt")
class TensorRTBackend(Backend):
    """Runs an atool TensorRT engine; see the package docstring for ``infer``."""

    suffixes = (".engine", ".plan")

    def __init__(self, path: Path, device: str = "cuda", threads: int | None = None):
        self.path = Path(path)
        trt = import_tensorrt()  # first: without TensorRT the answer is "install it", whatever the file
        import torch

        self.device = _cuda_device(device)
        props, engine_bytes = read_engine_file(self.path)
        meta = parse_metadata(props, str(self.path))
        self.metadata = dict(meta, precision=props.get("atool.trt_precision"), tensorrt=props.get("atool.trt_version"),
                             profile=json.loads(props["atool.trt_profile"]) if "atool.trt_profile" in props else None)
        self.classes = list(meta["classes"])
        self.heads = bool(meta["heads"])
        self.prototypes = bool(meta["prototypes"])
        self.output_names = list(meta["outputs"])
        self.input_name = meta["input"]["name"]

        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        with torch.cuda.device(self.device):
            self.engine = self._runtime.deserialize_cuda_engine(engine_bytes)
            if self.engine is None:
                raise BadInput(
                    f"{self.path}: TensorRT {trt.__version__} could not deserialize the engine (built by TensorRT "
                    f"{props.get('atool.trt_version', '?')}; engines only load on the TensorRT version and GPU type that "
                    "built them): rebuild it here with `atool export --trt`"
                )
            self.context = self.engine.create_execution_context()
            self.stream = torch.cuda.Stream(device=self.device)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if inputs != [self.input_name] or sorted(outputs) != sorted(self.output_names):
            raise BadInput(
                f"{self.path}: engine tensors (inputs {inputs}, outputs {outputs}) do not match its atool metadata "
                f"(input {self.input_name!r}, outputs {self.output_names}); rebuild it with `atool export --trt`"
            )
        self._dtypes = {n: _torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}
        if self._dtypes[self.input_name] != torch.uint8:
            raise BadInput(f"{self.path}: engine input {self.input_name!r} is not uint8; rebuild it with `atool export --trt`")
        self._buffers = {n: _Buffer(self._dtypes[n], self.device) for n in names}
        self._host_in: Any = None
        lo, _, hi = self.engine.get_tensor_profile_shape(self.input_name, 0)
        self._limits = (tuple(int(v) for v in lo), tuple(int(v) for v in hi))

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        lo, hi = self._limits
        if not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
            raise BadInput(
                f"{self.path}: input N x H x W x 3 = {shape} is outside the engine's profile {lo} .. {hi}; "
                "rebuild with `atool export --trt --trt-batch MIN:OPT:MAX --trt-size MIN:OPT:MAX` covering it"
            )

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """uint8 N x H x W x 3 -> {"prob": N x C x H x W, "entropy": N x H x W, ...} float32, every output by name."""
        import torch

        self.check_batch(batch)
        shape = tuple(int(s) for s in batch.shape)
        self._check_shape(shape)
        n = int(np.prod(shape))
        if self._host_in is None or self._host_in.numel() < n:
            # Pinned staging memory: the host-to-device copy is then a real async DMA.
            self._host_in = torch.empty(n, dtype=torch.uint8, pin_memory=True)
        host = self._host_in[:n].view(shape)
        host.numpy()[...] = batch
        dev_in = self._buffers[self.input_name].view(shape)
        if not self.context.set_input_shape(self.input_name, shape):
            raise Failure(f"TensorRT rejected input shape {shape} for {self.path}")
        self.context.set_tensor_address(self.input_name, int(dev_in.data_ptr()))
        outs = {}
        for name in self.output_names:
            out_shape = tuple(int(s) for s in self.context.get_tensor_shape(name))
            outs[name] = self._buffers[name].view(out_shape)
            self.context.set_tensor_address(name, int(outs[name].data_ptr()))
        with torch.cuda.stream(self.stream):
            dev_in.copy_(host, non_blocking=True)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise Failure(f"TensorRT execution failed for {self.path} on input {shape}")
            results = {name: t.float().cpu() for name, t in outs.items()}
        self.stream.synchronize()
        return {name: results[name].numpy() for name in self.output_names}


def _torch_dtype(trt: Any, dtype: Any) -> Any:
    import torch

    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16, trt.DataType.UINT8: torch.uint8,
             trt.DataType.INT32: torch.int32, trt.DataType.INT8: torch.int8, trt.DataType.BOOL: torch.bool}
    if dtype not in table:
        raise BadInput(f"engine tensor type {dtype} is not one atool reads; rebuild the engine with `atool export --trt`")
    return table[dtype]
