"""Missing GPU runtimes are one-line exit-2 errors, never a silent CPU fallback; the engine file header."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from atool.core.engine_file import HEADER_BYTES, pack_engine, read_engine_file, write_engine_file
from atool.core.errors import BadInput, MissingDependency
from atool.core.optional import NOT_INSTALLED
from conftest import assert_one_line_error, run_cli

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None
no_tensorrt = pytest.mark.skipif(HAVE_TENSORRT, reason="tensorrt is installed here")


def write_tiny_onnx(path: Path, classes: list[str]) -> Path:
    """An atool-shaped ONNX model: uint8 N x H x W x 3 in; ``prob`` (3 channels scaled, not a real softmax) and ``entropy``.

    Enough for loading, provider and selection tests; it is not a segmentation model.
    """
    import onnx
    from onnx import TensorProto, helper

    from atool.core.metadata import build_metadata

    c = len(classes)
    nodes = [
        helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["f"], ["t"], perm=[0, 3, 1, 2]),
        helper.make_node("ReduceMean", ["t", "axis1"], ["m"], keepdims=1),
        helper.make_node("Tile", ["m", "reps"], ["tiled"]),
        helper.make_node("Softmax", ["tiled"], ["prob"], axis=1),
        helper.make_node("ReduceMax", ["prob", "axis1"], ["entropy"], keepdims=0),
    ]
    inits = [helper.make_tensor("axis1", TensorProto.INT64, [1], [1]), helper.make_tensor("reps", TensorProto.INT64, [4], [1, c, 1, 1])]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", "H", "W", 3])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", c, "H", "W"]),
         helper.make_tensor_value_info("entropy", TensorProto.FLOAT, ["N", "H", "W"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    meta = build_metadata(version="test", classes=classes, mean=[0.5] * 3, std=[0.25] * 3, input_name="image",
                          outputs=["prob", "entropy"], heads=False, source_sha256="0" * 64)
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def model_pair(tmp_path_factory, tiny_checkpoint) -> tuple[Path, Path]:
    """(x.pt, x.onnx) with the same stem and classes: the tiny checkpoint and a hand-built ONNX model."""
    from atool.data.synth import SYNTH_CLASSES

    root = tmp_path_factory.mktemp("runtime_models")
    pt = root / "m.pt"
    shutil.copy(tiny_checkpoint, pt)
    return pt, write_tiny_onnx(root / "m.onnx", list(SYNTH_CLASSES))


def _ort_has(provider: str) -> bool:
    import onnxruntime

    return provider in onnxruntime.get_available_providers()


# ------------------------------------------------------------------------------ engine header


def test_engine_file_round_trip(tmp_path):
    meta = {"atool.classes": '["a","b"]', "atool.heads": "false"}
    path = write_engine_file(tmp_path / "m.engine", meta, b"ENGINEBYTES\0\1")
    assert read_engine_file(path) == (meta, b"ENGINEBYTES\0\1")
    assert path.read_bytes() == pack_engine(meta, b"ENGINEBYTES\0\1")
    assert not [p for p in tmp_path.iterdir() if p.name != "m.engine"]  # no temp file left


@pytest.mark.parametrize("damage", ["no-header", "truncated", "appended", "bad-json"])
def test_engine_file_damage_is_one_line_bad_input(tmp_path, damage):
    good = pack_engine({"atool.classes": '["a"]'}, b"x" * 100)
    data = {
        "no-header": b"\0" * 200,
        "truncated": good[:-1],
        "appended": good + b"!",
        "bad-json": good[:HEADER_BYTES] + b"\xff" + good[HEADER_BYTES + 1:],
    }[damage]
    path = tmp_path / "m.engine"
    path.write_bytes(data)
    with pytest.raises(BadInput) as e:
        read_engine_file(path)
    assert "\n" not in str(e.value) and "atool export" in str(e.value)


# ------------------------------------------------------------------------------ TensorRT missing


@no_tensorrt
@pytest.mark.parametrize("flags", [[], ["--fp16"], ["--int8", "--calib-images", "CALIB"]], ids=["fp32", "fp16", "int8"])
def test_export_trt_without_tensorrt_exits_2_before_exporting(tiny_checkpoint, synth_pair, tmp_path, flags):
    flags = [str(synth_pair / "target_train" / "images") if f == "CALIB" else f for f in flags]
    out = tmp_path / "m.onnx"
    r = run_cli("export", "--checkpoint", tiny_checkpoint, "--out", out, "--trt", *flags)
    assert_one_line_error(r, 2, contains="TensorRT is not installed")
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--fp16"], "add --trt"),
    (["--trt", "--fp16", "--int8"], "one of --fp16 and --int8"),
    (["--trt", "--int8"], "--calib-images"),
    (["--trt", "--trt-batch", "4:2:8"], "min <= opt <= max"),
    (["--trt", "--trt-size", "1024"], "WxH"),
])
def test_export_trt_option_errors(tiny_checkpoint, tmp_path, args, message):
    r = run_cli("export", "--checkpoint", tiny_checkpoint, "--out", tmp_path / "m.onnx", *args)
    assert_one_line_error(r, 2, contains=message)
    assert not (tmp_path / "m.onnx").exists()


@no_tensorrt
def test_query_engine_without_tensorrt_exits_2(synth_pair, tmp_path):
    engine = write_engine_file(tmp_path / "m.engine", {"atool.classes": '["a","b"]'}, b"\0" * 64)
    out = tmp_path / "q.json"
    r = run_cli("query", "--model", engine, "--images", synth_pair / "target_train" / "images", "--budget", "5", "--out", out)
    assert_one_line_error(r, 2, contains=NOT_INSTALLED)
    assert not out.exists()


# ------------------------------------------------------------------------------ onnxruntime providers


@pytest.mark.skipif(_ort_has("CUDAExecutionProvider"), reason="this onnxruntime has CUDA")
def test_cuda_device_without_cuda_provider_is_an_error(model_pair):
    from atool.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    with pytest.raises(MissingDependency, match="no CUDAExecutionProvider") as e:
        OnnxRuntimeBackend(model_pair[1], device="cuda")
    assert "\n" not in str(e.value)


@pytest.mark.skipif(_ort_has("TensorrtExecutionProvider"), reason="this onnxruntime has TensorRT")
def test_tensorrt_provider_missing_is_an_error(model_pair):
    from atool.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    with pytest.raises(MissingDependency, match="no TensorrtExecutionProvider"):
        OnnxRuntimeBackend(model_pair[1], device="cuda", provider="tensorrt")


@pytest.mark.skipif(_ort_has("CUDAExecutionProvider"), reason="this onnxruntime has CUDA")
@pytest.mark.filterwarnings("ignore:Specified provider")
def test_provider_listed_but_not_started_is_an_error(model_pair, monkeypatch):
    """A provider that is listed but fails to start (missing CUDA libraries): ORT quietly runs on the CPU; atool refuses."""
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    from atool.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    with pytest.raises(MissingDependency, match="could not start CUDAExecutionProvider"):
        OnnxRuntimeBackend(model_pair[1], device="cuda")


@pytest.mark.skipif(_ort_has("CUDAExecutionProvider"), reason="this onnxruntime has CUDA")
@pytest.mark.parametrize("args", [["--device", "cuda"], ["--provider", "tensorrt"], ["--provider", "cuda"]])
def test_query_missing_provider_exits_2_with_one_line(model_pair, synth_pair, tmp_path, args):
    out = tmp_path / "q.json"
    r = run_cli("query", "--model", model_pair[1], "--images", synth_pair / "target_train" / "images", "--budget", "5",
                "--out", out, *args)
    assert_one_line_error(r, 2, contains="ExecutionProvider")
    assert not out.exists()


def test_cpu_provider_still_runs(model_pair):
    from atool.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(model_pair[1], device="cpu", provider="cpu")
    assert backend.providers[0] == "CPUExecutionProvider"
    assert backend.infer(np.zeros((1, 8, 8, 3), np.uint8))["prob"].shape == (1, len(backend.classes), 8, 8)
    with pytest.raises(BadInput, match="contradicts"):
        OnnxRuntimeBackend(model_pair[1], device="cuda", provider="cpu")


def test_cpu_sessions_do_not_spin_unless_asked(model_pair):
    from atool.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    key = "session.intra_op.allow_spinning"
    quiet = OnnxRuntimeBackend(model_pair[1], device="cpu")
    assert quiet.session.get_session_options().get_session_config_entry(key) == "0"
    spinning = OnnxRuntimeBackend(model_pair[1], device="cpu", session_options={"config": {key: "1"}})
    assert spinning.session.get_session_options().get_session_config_entry(key) == "1"


def test_provider_needs_onnxruntime_backend(model_pair, synth_pair, tmp_path):
    r = run_cli("query", "--model", model_pair[0], "--images", synth_pair / "target_train" / "images", "--budget", "5",
                "--out", tmp_path / "q.json", "--backend", "torch", "--provider", "cuda")
    assert_one_line_error(r, 2, contains="--provider selects an onnxruntime")


def test_engine_metadata_parses_like_onnx(tmp_path):
    """What the exporter puts in the header is what the backend's parse_metadata accepts."""
    from atool.core.metadata import build_metadata, parse_metadata

    meta = build_metadata(version="t", classes=["a", "b"], mean=[0.5] * 3, std=[0.2] * 3, input_name="image",
                          outputs=["prob", "entropy", "heads_disagree", "heads_discrepancy"], heads=True, source_sha256="0" * 64)
    meta["atool.trt_precision"] = "fp16"
    props, _ = read_engine_file(write_engine_file(tmp_path / "m.engine", meta, b"e"))
    parsed = parse_metadata(props, "m.engine")
    assert parsed["classes"] == ["a", "b"] and parsed["heads"] is True and props["atool.trt_precision"] == "fp16"
    assert json.loads(props["atool.outputs"])[2:] == ["heads_disagree", "heads_discrepancy"]
