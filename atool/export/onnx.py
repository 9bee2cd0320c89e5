"""Checkpoint -> one self-contained, self-describing ONNX file.

What is exported is ``DeployModel``, the very module the torch backend runs,
so the ONNX graph computes the same function by construction: uint8 NHWC in,
softmax and normalised entropy at input resolution out. Batch, height and
width are dynamic.

Exporter: torch's ``torch.export``-based exporter (``dynamo=True``), the
default since torch 2.9; the TorchScript exporter is deprecated. Its one
blemish on these models is that it decomposes ``adaptive_avg_pool2d`` (the
squeeze-excite blocks) into ReduceMean + Reshape + a Range/Gather emulation of
``as_strided``; a translation to ``GlobalAveragePool`` for the global case
keeps the graph what a reader (and TensorRT) expects. Opset 18 is the
exporter's native opset (no version conversion) and the oldest that current
TensorRT and onnxruntime releases all run.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import onnx
import torch

import atool
from atool.core.errors import BadInput, Failure, MissingDependency
from atool.core.metadata import build_metadata
from atool.core.io import atomic_write, sha256_file
from atool.models.inference_graph import INPUT_NAME, DeployModel
from atool.models.checkpoint import load_checkpoint, model_from_checkpoint
from atool.models.prototypes import prototypes_of

log = logging.getLogger(__name__)

DEFAULT_OPSET = 18
MIN_OPSET = 17
# Below this the exporter converts down from its native opset, which can fail.
NATIVE_OPSET = 18
MIN_SAMPLE_SIDE = 32
_DYNAMIC_AXES = ("batch", "height", "width")


def _max_opset() -> int:
    try:
        from torch.onnx import _constants

        return int(_constants.ONNX_MAX_OPSET)
    except (ImportError, AttributeError):  # private module; keep working if it moves
        return 21


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def _global_avg_pool(self: Any, output_size: Any) -> Any:
    from onnxscript import opset18 as op

    return op.GlobalAveragePool(self)


def _translation_table(program: torch.export.ExportedProgram) -> dict[Callable, Callable]:
    """Custom ATen -> ONNX translations that apply to this program."""
    target = torch.ops.aten.adaptive_avg_pool2d.default
    sizes = [list(n.args[1]) for n in program.graph.nodes if n.op == "call_function" and n.target == target]
    # Only the global case maps onto one ONNX op; any other size keeps the
    # exporter's (correct, if verbose) decomposition for every call site.
    if sizes and all(s == [1, 1] for s in sizes):
        return {target: _global_avg_pool}
    return {}


def _name_dynamic_axes(proto: onnx.ModelProto) -> None:
    """Rename the exporter's symbols (s40, s62, ...) to batch/height/width, or fail if a dim was frozen."""
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    mapping = {}
    for axis, name in enumerate(_DYNAMIC_AXES):
        if not dims[axis].dim_param:
            raise Failure(
                f"the exported graph fixed the input {name} to {dims[axis].dim_value}; the model's forward "
                "must not branch on or specialise to the image size or batch size"
            )
        if dims[axis].dim_param in mapping:
            # Two axes sharing a symbol means the graph only accepts, e.g., square images.
            raise Failure(
                f"the exported graph ties the input {name} to the {mapping[dims[axis].dim_param]}; "
                "use a --sample-size whose sides differ and are not the batch size"
            )
        mapping[dims[axis].dim_param] = name
    pattern = re.compile(r"\b(" + "|".join(re.escape(s) for s in mapping) + r")\b")
    for value in [*proto.graph.input, *proto.graph.output, *proto.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_param = pattern.sub(lambda m: mapping[m.group(1)], dim.dim_param)


def _check_exporter() -> None:
    params = inspect.signature(torch.onnx.export).parameters
    if "dynamo" not in params or "custom_translation_table" not in params:
        raise MissingDependency(
            f"atool export needs torch's torch.export-based ONNX exporter (torch >= 2.6); "
            f"this is torch {torch.__version__}; upgrade torch"
        )


def _validate_args(out: Path, opset: int, sample_size: tuple[int, int]) -> None:
    if out.suffix.lower() != ".onnx":
        raise BadInput(f"output {out} must end in .onnx (the suffix picks the runtime backend when it is loaded)")
    top = _max_opset()
    if not MIN_OPSET <= int(opset) <= top:
        raise BadInput(f"opset {opset} is not supported; use {MIN_OPSET}..{top} (default {DEFAULT_OPSET})")
    if len(sample_size) != 2 or min(sample_size) < MIN_SAMPLE_SIDE:
        raise BadInput(f"sample size {sample_size} is too small; width and height must be at least {MIN_SAMPLE_SIDE}")


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Hold back the exporter's warnings (e.g. its notice on down-converting the opset) unless debugging.

    They are addressed to torch developers; atool reports what matters itself
    (the opset it produced, and a parity check that would catch a bad conversion).
    """
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _to_onnx(net: DeployModel, sample_size: tuple[int, int], opset: int) -> onnx.ModelProto:
    width, height = sample_size
    # Batch 2, not 1: torch.export specialises dims of size 0 and 1 to constants.
    example = torch.zeros((2, height, width, 3), dtype=torch.uint8)
    auto = torch.export.Dim.AUTO
    try:
        program = torch.export.export(net, (example,), dynamic_shapes={"image": {0: auto, 1: auto, 2: auto}}, strict=False)
    except Exception as exc:
        log.debug("torch.export failed", exc_info=True)
        raise Failure(f"torch.export could not trace the model: {_first_line(exc)}") from exc
    try:
        onnx_program = torch.onnx.export(
            program,
            dynamo=True,
            verbose=False,
            input_names=[INPUT_NAME],
            output_names=net.output_names(),
            opset_version=int(opset),
            optimize=True,
            custom_translation_table=_translation_table(program),
        )
    except Exception as exc:
        log.debug("ONNX translation failed", exc_info=True)
        raise Failure(f"the ONNX exporter failed: {_first_line(exc)}") from exc
    return onnx_program.model_proto


def export_onnx(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    verify: Callable[[Path, Path], dict[str, Any]] | None = None,
    sample_size: tuple[int, int] = (256, 128),
) -> dict[str, Any]:
    """Export ``checkpoint`` to ``out`` (.onnx) with atool metadata; optionally verify parity.

    The graph maps uint8 N x H x W x 3 RGB ("image") to float32 ``prob``
    N x C x H x W and ``entropy`` N x H x W (plus ``heads_disagree``/``heads_discrepancy`` N x H x W for a selector, and
    ``gap`` N x H x W when the checkpoint has source prototypes), with
    N, H, W dynamic. ``sample_size`` is (width, height) for tracing and for the
    verification images. ``verify(checkpoint, written_onnx)`` (e.g. the runtime's
    parity check, ``atool.workflows.export.export_checked``) runs on the file
    under its temp name; if it raises, ``out`` is left as it was. Conversion
    lives here and running lives in ``atool.runtime``, so this module never
    imports a backend.

    Returns ``{"out", "opset", "inputs", "outputs", "metadata", "bytes",
    "export_seconds", "verify_seconds", "verify" (compare report or None)}``.
    """
    checkpoint = Path(checkpoint)
    out = Path(out)
    sample_size = (int(sample_size[0]), int(sample_size[1]))
    _validate_args(out, opset, sample_size)
    _check_exporter()

    t0 = time.perf_counter()
    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt)
    heads = bool(getattr(model, "has_heads", False))
    classes = list(ckpt["classes"])
    protos = prototypes_of(ckpt, f"checkpoint {checkpoint}")
    net = DeployModel(
        model, ckpt["mean"], ckpt["std"], len(classes), heads=heads, prototypes=protos.vectors if protos else None
    ).eval()

    with _quiet_exporter():
        proto = _to_onnx(net, sample_size, opset)
    _name_dynamic_axes(proto)
    got_opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if got_opset != int(opset):
        raise Failure(f"the exporter produced opset {got_opset} instead of {opset}; use opset {NATIVE_OPSET} or newer")

    model_info = {"name": ckpt["model"]["name"], "args": dict(ckpt["model"].get("args", {}))}
    # A local file path says nothing about the exported weights and leaks the training machine's layout.
    model_info["args"].pop("backbone_weights", None)
    metadata = build_metadata(
        version=atool.__version__,
        classes=classes,
        mean=ckpt["mean"],
        std=ckpt["std"],
        input_name=INPUT_NAME,
        outputs=net.output_names(),
        heads=heads,
        source_sha256=sha256_file(checkpoint),
        model=model_info,
        step=ckpt.get("step"),
        prototypes=protos.describe() if protos else None,
    )
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = f"atool {atool.__version__} export of {model_info['name']} (step {ckpt.get('step')})"
    try:
        onnx.checker.check_model(proto, full_check=True)
        data = proto.SerializeToString()
    except Exception as exc:  # checker errors, or a proto over protobuf's 2 GB single-message limit
        raise Failure(f"the exported ONNX graph is invalid: {_first_line(exc)}") from exc
    export_seconds = time.perf_counter() - t0

    report: dict[str, Any] = {
        "out": str(out),
        "opset": got_opset,
        "inputs": {INPUT_NAME: ["batch", "height", "width", 3]},
        "outputs": net.output_names(),
        "metadata": metadata,
        "bytes": len(data),
        "export_seconds": export_seconds,
        "verify_seconds": None,
        "verify": None,
    }

    def write(tmp: Path) -> None:
        tmp.write_bytes(data)
        if verify:
            # Verified under the temp name, so a model that fails never replaces a good one.
            t1 = time.perf_counter()
            report["verify"] = verify(checkpoint, tmp)
            report["verify_seconds"] = time.perf_counter() - t1

    atomic_write(out, write)
    return report
