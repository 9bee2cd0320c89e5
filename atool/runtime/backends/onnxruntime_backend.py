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
_TRT = "TensorrtExecutionProvider"
_CPU = "CPUExecutionProvider"
PROVIDERS = {"cpu": _CPU, "cuda": _CUDA, "tensorrt": _TRT}


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependency(
            "onnxruntime is not installed; install it with `pip install onnxruntime` "
            "(or atool[gpu] for onnxruntime-gpu), or run the checkpoint with the torch backend"
        ) from None
    return onnxruntime


def _providers(ort: Any, device: str, provider: str | None = None) -> list[Any]:
    """Execution providers for ``device`` ("cpu", "cuda" or "cuda:N") and ``provider``, best first.

    ``provider`` None means CPU for a cpu device and CUDA for a cuda one;
    "tensorrt" is ORT's TensorRT provider, with CUDA for the nodes TensorRT
    does not take. A provider this onnxruntime build lacks is MissingDependency,
    never a silent CPU fallback: a GPU run that quietly takes the CPU is ten
    times slower and nobody notices until the fleet job misses its window.
    """
    m = re.fullmatch(r"(cpu|cuda)(?::(\d+))?", str(device).strip().lower())
    if not m:
        raise BadInput(f"device {device!r} is not valid for the onnxruntime backend; use cpu, cuda or cuda:N")
    if provider is not None and provider not in PROVIDERS:
        raise BadInput(f"onnxruntime provider {provider!r} is not one of {', '.join(PROVIDERS)}")
    kind = provider or ("cuda" if m.group(1) == "cuda" else "cpu")
    if kind == "cpu":
        if m.group(1) == "cuda":
            raise BadInput(f"--provider cpu contradicts --device {device}; give one of them")
        return [_CPU]
    available = ort.get_available_providers()
    wanted = PROVIDERS[kind]
    if wanted not in available:
        raise MissingDependency(
            f"onnxruntime {ort.__version__} has no {wanted} (available: {', '.join(available)}); install onnxruntime-gpu "
            f"(atool[gpu]){' with TensorRT' if kind == 'tensorrt' else ''}, or run on the CPU with --device cpu"
        )
    _preload_cuda_libraries(ort)
    device_id = int(m.group(2) or 0)
    cuda = (_CUDA, {"device_id": device_id})
    if kind == "tensorrt":
        return [(_TRT, {"device_id": device_id})] + ([cuda] if _CUDA in available else []) + [_CPU]
    return [cuda, _CPU]


def _preload_cuda_libraries(ort: Any) -> None:
    """Let onnxruntime-gpu find CUDA and cuDNN installed as pip packages (nvidia-*), as torch's are.

    Without this, a pip-only install has the libraries on disk but not on the
    loader's path, the CUDA provider fails to load, and the session refuses
    below. ``preload_dlls`` exists from onnxruntime 1.21; older builds rely on
    the system's library path.
    """
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload()
    except Exception as exc:  # a missing library is reported by the provider check that follows
        log.debug("onnxruntime.preload_dlls: %s", exc)


_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
           "layout": "ORT_ENABLE_LAYOUT", "all": "ORT_ENABLE_ALL"}


def tune_session(ort: Any, opts: Any, overrides: dict[str, Any] | None) -> None:
    """Apply profiling/tuning ``overrides`` to SessionOptions ``opts`` (for ``tools/bench_query.py``).

    Keys: ``optimization`` (disable|basic|extended|layout|all), ``parallel``
    (bool: ORT_PARALLEL execution), ``inter_op_threads``, ``profile`` (a file
    prefix: ORT writes a JSON trace per session), ``save_optimized`` (path of
    the optimised graph), and ``config`` ({session config key: value}).
    """
    if not overrides:
        return
    unknown = sorted(set(overrides) - {"optimization", "parallel", "inter_op_threads", "profile", "save_optimized", "config"})
    if unknown:
        raise BadInput(f"unknown onnxruntime session option(s) {', '.join(unknown)}")
    if "optimization" in overrides:
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[overrides["optimization"]])
    if overrides.get("parallel"):
        opts.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    if overrides.get("inter_op_threads"):
        opts.inter_op_num_threads = int(overrides["inter_op_threads"])
    if overrides.get("profile"):
        opts.enable_profiling = True
        opts.profile_file_prefix = str(overrides["profile"])
    if overrides.get("save_optimized"):
        opts.optimized_model_filepath = str(overrides["save_optimized"])
    for key, value in (overrides.get("config") or {}).items():
        opts.add_session_config_entry(str(key), str(value))


@BACKENDS.register("onnxruntime")
class OnnxRuntimeBackend(Backend):
    suffixes = (".onnx",)
    """Runs an atool-exported ONNX model; see the package docstring for ``infer``."""


    def __init__(self, path: Path, device: str = "cpu", threads: int | None = None, provider: str | None = None,
                 session_options: dict[str, Any] | None = None):
        ort = _import_onnxruntime()
        self.path = Path(path)
        self.device = device
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # 0 lets ORT use one thread per physical core.
        opts.intra_op_num_threads = int(threads) if threads else 0
        # ORT's own warnings (e.g. unused initialisers) go to stderr unprompted; keep errors only.
        opts.log_severity_level = 3
        providers = _providers(ort, device, provider)
        if device == "cpu" and "session.intra_op.allow_spinning" not in ((session_options or {}).get("config") or {}):
            # Idle intra-op threads spin by default, taking the cores that decoding and selection
            # need between batches: measured on 2 cores at 1024x512, query +5% end to end
            # (inference-only -4%). A ``session_options`` config entry for it wins.
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        tune_session(ort, opts, session_options)
        from atool.runtime.onnx_safety import check_external_data

        check_external_data(self.path)  # before onnxruntime opens any external-data file
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=providers)
        except Exception as exc:  # ORT raises its own types (InvalidProtobuf, Fail, ...) for bad files
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BadInput(
                f"{self.path} could not be loaded as an ONNX model ({detail[:160]}); "
                "is it a model written by `atool export`?"
            ) from None
        self.providers = list(self.session.get_providers())
        want = providers[0] if isinstance(providers[0], str) else providers[0][0]
        if self.providers[0] != want:
            # ORT falls back quietly when a provider's libraries (CUDA, cuDNN, TensorRT) fail to load.
            raise MissingDependency(
                f"onnxruntime could not start {want} for {self.path} (it runs on {self.providers[0]}); "
                "check the CUDA/cuDNN/TensorRT libraries onnxruntime-gpu needs, or run with --device cpu"
            )
        self.device_id = int(providers[0][1]["device_id"]) if want != _CPU else None

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
        if self.device_id is None:
            outs = self.session.run(self.output_names, {self.input_name: np.ascontiguousarray(batch)})
            return dict(zip(self.output_names, outs))
        # GPU: I/O binding, so ORT copies the uint8 input once and the outputs once,
        # instead of staging them through its own CPU-side tensors.
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input_name, np.ascontiguousarray(batch))
        for name in self.output_names:
            binding.bind_output(name, "cuda", self.device_id)
        self.session.run_with_iobinding(binding)
        return dict(zip(self.output_names, binding.copy_outputs_to_cpu()))
