"""ONNX -> TensorRT engine, for TensorRT 10 and TensorRT 11.

The two lines differ in how reduced precision is asked for:

* **TensorRT 10** builds a weakly typed network and picks FP16/INT8 kernels
  where ``BuilderFlag.FP16`` / ``BuilderFlag.INT8`` allow them; INT8 needs an
  ``IInt8EntropyCalibrator2`` fed with calibration images.
* **TensorRT 11** removed those flags: every network is strongly typed, so
  the precision must already be in the ONNX graph. FP16 comes from NVIDIA
  ModelOpt's AutoCast (``modelopt.onnx.autocast``), INT8 from its
  post-training quantization (``modelopt.onnx.quantization``, Q/DQ nodes,
  calibrated on the images) before the build.

The major version is read from ``tensorrt.__version__``; a precision the
installed line cannot build (or that needs ModelOpt when it is missing) is a
one-line BadInput/MissingDependency. The engine is written with the ONNX
model's ``atool.*`` metadata in a header (``atool.core.engine_file``), plus
``atool.trt_precision``/``atool.trt_profile``/``atool.trt_version``.

tensorrt, torch (CUDA buffers for the TensorRT 10 calibrator) and modelopt are
imported inside the functions that need them.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from atool.core.engine_file import write_engine_file
from atool.core.errors import BadInput, Failure, MissingDependency
from atool.core.optional import import_tensorrt
from atool.export.trt_calibration import calibration_batch, make_entropy_calibrator

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
MODELOPT_MISSING = (
    "TensorRT {version} builds only strongly typed networks, so {precision} needs NVIDIA ModelOpt to rewrite the ONNX "
    "graph first; install it with `pip install nvidia-modelopt[onnx]`, or build fp32"
)


@dataclass(frozen=True)
class EngineProfile:
    """The optimisation profile: min/opt/max batch and (width, height) of the NHWC uint8 input."""

    batch: tuple[int, int, int] = (1, 4, 8)
    size_min: tuple[int, int] = (256, 128)
    size_opt: tuple[int, int] = (1024, 512)
    size_max: tuple[int, int] = (2048, 1024)

    def shapes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) input shapes N x H x W x 3."""
        sizes = (self.size_min, self.size_opt, self.size_max)
        return tuple((b, s[1], s[0], 3) for b, s in zip(self.batch, sizes))  # type: ignore[return-value]

    def validate(self) -> None:
        for i, name in ((0, "batch"), (1, "width"), (2, "height")):
            seq = [self.batch[0], self.batch[1], self.batch[2]] if i == 0 else [s[i - 1] for s in (self.size_min, self.size_opt, self.size_max)]
            if min(seq) < 1 or not seq[0] <= seq[1] <= seq[2]:
                raise BadInput(f"TensorRT profile {name} must be min <= opt <= max, all >= 1; got {seq[0]}:{seq[1]}:{seq[2]}")

    def describe(self) -> dict[str, Any]:
        return {"batch": list(self.batch), "size_min": list(self.size_min), "size_opt": list(self.size_opt), "size_max": list(self.size_max)}


def parse_batch(text: str) -> tuple[int, int, int]:
    """``"1:4:8"`` -> (1, 4, 8); one number N means 1:N:N."""
    parts = text.split(":")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        raise BadInput(f"--trt-batch must be MIN:OPT:MAX (e.g. 1:4:8) or one number, got {text!r}") from None
    if len(nums) == 1:
        return 1, nums[0], nums[0]
    if len(nums) != 3:
        raise BadInput(f"--trt-batch must be MIN:OPT:MAX (e.g. 1:4:8) or one number, got {text!r}")
    return nums[0], nums[1], nums[2]


def parse_sizes(text: str) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """``"256x128:1024x512:2048x1024"`` -> three (width, height); one WxH means that size only."""
    out = []
    for part in text.split(":"):
        w, sep, h = part.lower().partition("x")
        try:
            out.append((int(w), int(h)))
        except ValueError:
            raise BadInput(f"--trt-size must be MIN:OPT:MAX sizes WxH (e.g. 256x128:1024x512:2048x1024), got {text!r}") from None
        if not sep:
            raise BadInput(f"--trt-size must be MIN:OPT:MAX sizes WxH (e.g. 256x128:1024x512:2048x1024), got {text!r}")
    if len(out) == 1:
        return out[0], out[0], out[0]
    if len(out) != 3:
        raise BadInput(f"--trt-size takes one WxH or three (MIN:OPT:MAX), got {text!r}")
    return out[0], out[1], out[2]


def tensorrt_major(trt: Any) -> int:
    """The installed TensorRT's major version; BadInput below 10 (no named-tensor API)."""
    version = str(getattr(trt, "__version__", "0"))
    try:
        major = int(version.split(".")[0])
    except ValueError:
        raise BadInput(f"cannot read the TensorRT version from {version!r}; atool needs TensorRT 10 or 11") from None
    if major < 10:
        raise BadInput(f"TensorRT {version} is too old: atool needs TensorRT 10 or 11 (named tensors, execute_async_v3)")
    return major


def _modelopt_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("modelopt") is not None


def check_tensorrt(precision: str = "fp32", calib_images: str | os.PathLike | None = None) -> int:
    """Raise unless this machine can build a ``precision`` engine; returns the TensorRT major version.

    Cheap (no ONNX work), meant to run before an export: MissingDependency
    (exit 2) without TensorRT or, on TensorRT 11 for fp16/int8, without
    ModelOpt; BadInput for an unknown precision or int8 without images.
    """
    if precision not in PRECISIONS:
        raise BadInput(f"TensorRT precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "int8" and calib_images is None:
        raise BadInput("--int8 needs calibration images: add --calib-images DIR (a few hundred target images)")
    if precision != "int8" and calib_images is not None:
        raise BadInput("--calib-images is only used by --int8")
    if calib_images is not None and not Path(calib_images).is_dir():
        raise BadInput(f"calibration image folder {calib_images} does not exist")
    trt = import_tensorrt()
    major = tensorrt_major(trt)
    if major >= 11 and precision != "fp32" and not _modelopt_available():
        raise MissingDependency(MODELOPT_MISSING.format(version=trt.__version__, precision=precision))
    if major == 10 and precision == "fp16" and not hasattr(trt.BuilderFlag, "FP16"):
        raise BadInput(f"this TensorRT {trt.__version__} has no BuilderFlag.FP16; it cannot build fp16 engines")
    if major == 10 and precision == "int8" and not hasattr(trt.BuilderFlag, "INT8"):
        raise BadInput(f"this TensorRT {trt.__version__} has no BuilderFlag.INT8; it cannot build int8 engines")
    return major


def _read_metadata(onnx_path: Path) -> tuple[dict[str, str], str]:
    """(atool metadata_props, input name) of an exported model."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props if p.key.startswith("atool.")}
    if "atool.input" not in props:
        raise BadInput(f"{onnx_path} has no atool metadata; build engines from a model written by `atool export`")
    return props, json.loads(props["atool.input"])["name"]


def _modelopt_rewrite(onnx_path: Path, precision: str, input_name: str, calib: np.ndarray | None, tmp: Path) -> Path:
    """TensorRT 11: the ONNX graph with FP16 casts (AutoCast) or INT8 Q/DQ nodes (PTQ) in it."""
    import onnx

    out = tmp / f"model_{precision}.onnx"
    if precision == "fp16":
        from modelopt.onnx.autocast import convert_to_mixed_precision

        # keep_io_types: the uint8 input and float32 outputs stay as the backend expects.
        converted = convert_to_mixed_precision(onnx_path=str(onnx_path), low_precision_type="fp16", keep_io_types=True)
        onnx.save(converted, str(out))
    else:
        from modelopt.onnx.quantization import quantize

        quantize(str(onnx_path), quantize_mode="int8", calibration_data={input_name: calib},
                 calibration_method="entropy", output_path=str(out))
    if not out.is_file():
        raise Failure(f"ModelOpt did not write the {precision} model for {onnx_path}")
    return out


def _parse(trt: Any, builder: Any, logger: Any, onnx_path: Path) -> Any:
    # TensorRT 10: networks are always explicit-batch (the flag is deprecated and
    # ignored) and weakly typed unless STRONGLY_TYPED is set; TensorRT 11: always
    # strongly typed. So no creation flag is right for both.
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise Failure(f"TensorRT could not parse {onnx_path}: {errors[:300]}")
    return network, parser


def build_engine(
    onnx_path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    precision: str = "fp32",
    calib_images: str | os.PathLike | None = None,
    profile: EngineProfile = EngineProfile(),
    workspace_gib: float = 4.0,
) -> dict[str, Any]:
    """Build a TensorRT engine from an atool-exported ONNX model and write it (header + engine) to ``out``.

    The input is uint8 N x H x W x 3 with one optimisation profile over
    ``profile``. Returns ``{"engine", "precision", "tensorrt", "profile",
    "build_seconds", "bytes"}``. Raises MissingDependency/BadInput as
    ``check_tensorrt`` does, Failure when TensorRT cannot build the network.
    """
    onnx_path, out = Path(onnx_path), Path(out)
    if not onnx_path.is_file():
        raise BadInput(f"ONNX model {onnx_path} not found")
    profile.validate()
    major = check_tensorrt(precision, calib_images)
    trt = import_tensorrt()
    props, input_name = _read_metadata(onnx_path)
    t0 = time.perf_counter()
    calib = calibration_batch(calib_images, profile.size_opt) if precision == "int8" else None

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    with tempfile.TemporaryDirectory(prefix="atool-trt-") as tmp:
        source = onnx_path
        if major >= 11 and precision != "fp32":
            source = _modelopt_rewrite(onnx_path, precision, input_name, calib, Path(tmp))
        network, _parser = _parse(trt, builder, logger, source)
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
        opt_profile = builder.create_optimization_profile()
        lo, opt, hi = profile.shapes()
        opt_profile.set_shape(input_name, lo, opt, hi)
        config.add_optimization_profile(opt_profile)
        calibrator = None
        if major == 10 and precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        elif major == 10 and precision == "int8":
            # FP16 too: layers TensorRT keeps out of INT8 then fall back to FP16, not FP32.
            config.set_flag(trt.BuilderFlag.INT8)
            config.set_flag(trt.BuilderFlag.FP16)
            calibrator = make_entropy_calibrator(trt, calib, input_name, Path(tmp) / "calib.cache")
            config.int8_calibrator = calibrator
            # With dynamic shapes, calibration runs at one profile's shapes: a batch of opt-sized images.
            calib_profile = builder.create_optimization_profile()
            shape = calibrator.shape
            calib_profile.set_shape(input_name, shape, shape, shape)
            config.set_calibration_profile(calib_profile)
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise Failure(f"TensorRT {trt.__version__} could not build a {precision} engine from {onnx_path} (see its log above)")
    meta = dict(props)
    meta["atool.trt_precision"] = precision
    meta["atool.trt_version"] = str(trt.__version__)
    meta["atool.trt_profile"] = json.dumps(profile.describe(), sort_keys=True, separators=(",", ":"))
    data = memoryview(serialized)
    write_engine_file(out, meta, data)
    seconds = time.perf_counter() - t0
    log.info("TensorRT %s: %s engine %s in %.1f s", trt.__version__, precision, out, seconds)
    return {"engine": str(out), "precision": precision, "tensorrt": str(trt.__version__), "profile": profile.describe(),
            "build_seconds": round(seconds, 2), "bytes": data.nbytes}


__all__ = ["PRECISIONS", "EngineProfile", "parse_batch", "parse_sizes", "tensorrt_major", "check_tensorrt", "build_engine"]
