"""TensorRT engines and onnxruntime's GPU providers, on a machine with an NVIDIA GPU.

Marked ``gpu``; every test skips cleanly without CUDA, TensorRT (or, on
TensorRT 11, ModelOpt for FP16) or onnxruntime-gpu. Run them with
``pytest -m gpu tests/runtime/test_tensorrt_gpu.py``.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from conftest import run_cli

pytestmark = pytest.mark.gpu

HAVE_CUDA = torch.cuda.is_available()
HAVE_TRT = importlib.util.find_spec("tensorrt") is not None
needs_trt = pytest.mark.skipif(not (HAVE_CUDA and HAVE_TRT), reason="needs CUDA and TensorRT")


def _ort_provider(name: str) -> bool:
    import onnxruntime

    return name in onnxruntime.get_available_providers()


@pytest.fixture(scope="module")
def fp16_engine(tmp_path_factory, tiny_checkpoint):
    """The tiny checkpoint exported to ONNX and built as an FP16 engine through `atool export --trt --fp16`."""
    if not (HAVE_CUDA and HAVE_TRT):
        pytest.skip("needs CUDA and TensorRT")
    from atool.export.tensorrt import tensorrt_major

    import tensorrt

    if tensorrt_major(tensorrt) >= 11 and importlib.util.find_spec("modelopt") is None:
        pytest.skip("TensorRT 11 builds FP16 through ModelOpt, which is not installed")
    root = tmp_path_factory.mktemp("trt")
    onnx_path = root / "m.onnx"
    r = run_cli("export", "--checkpoint", tiny_checkpoint, "--out", onnx_path, "--trt", "--fp16",
                "--trt-batch", "1:2:4", "--trt-size", "32x32:64x32:256x128", "--sample-size", "64x32")
    assert r.exit_code == 0, r.output
    assert "tensorrt vs onnxruntime" in r.output and "entropy points agreement" in r.output
    return onnx_path, root / "m.engine"


@needs_trt
def test_engine_carries_metadata_and_runs(fp16_engine):
    from atool.runtime.backends import load_backend

    onnx_path, engine = fp16_engine
    backend = load_backend(engine)
    assert backend.name == "tensorrt" and backend.metadata["precision"] == "fp16"
    assert backend.classes == load_backend(onnx_path).classes
    maps = backend.infer(np.random.default_rng(0).integers(0, 256, (2, 32, 64, 3), dtype=np.uint8))
    assert maps["prob"].shape == (2, len(backend.classes), 32, 64) and maps["prob"].dtype == np.float32
    np.testing.assert_allclose(maps["prob"].sum(axis=1), 1.0, atol=5e-3)
    # Buffers are reused: a second batch of the same shape allocates nothing new.
    before = {n: b.flat.data_ptr() for n, b in backend._buffers.items() if b.flat is not None}
    backend.infer(np.zeros((2, 32, 64, 3), np.uint8))
    assert {n: b.flat.data_ptr() for n, b in backend._buffers.items() if b.flat is not None} == before


@needs_trt
def test_fp16_parity_with_onnxruntime(fp16_engine):
    from atool.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from atool.runtime.backends.tensorrt_backend import TensorRTBackend
    from atool.runtime.parity import compare_engine, sample_batches

    onnx_path, engine = fp16_engine
    report = compare_engine(OnnxRuntimeBackend(onnx_path), TensorRTBackend(engine), sample_batches((64, 32))[:1])
    assert report["max_abs_prob_diff"] < 2e-2
    assert report["argmax_agreement"] >= 0.99
    assert report["points_agreement"] >= 0.8


@needs_trt
def test_query_on_the_engine(fp16_engine, synth_pair, tmp_path):
    _, engine = fp16_engine
    out = tmp_path / "q.json"
    r = run_cli("query", "--model", engine, "--images", synth_pair / "target_train" / "images", "--budget", "10", "--out", out)
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["model"]["backend"] == "tensorrt" and doc["budget"]["used"] == 10


@needs_trt
def test_input_outside_the_profile_is_one_line(fp16_engine):
    from atool.core.errors import BadInput
    from atool.runtime.backends import load_backend

    with pytest.raises(BadInput, match="outside the engine's profile"):
        load_backend(fp16_engine[1]).infer(np.zeros((8, 32, 64, 3), np.uint8))


@pytest.mark.skipif(not HAVE_CUDA, reason="needs CUDA")
def test_onnxruntime_cuda_provider_with_io_binding(tiny_checkpoint, tmp_path):
    if not _ort_provider("CUDAExecutionProvider"):
        pytest.skip("onnxruntime has no CUDA provider (install onnxruntime-gpu)")
    from atool.runtime.backends import load_backend
    from atool.runtime.parity import compare_backends, sample_batches

    onnx_path = tmp_path / "m.onnx"
    assert run_cli("export", "--checkpoint", tiny_checkpoint, "--out", onnx_path, "--no-verify").exit_code == 0
    gpu = load_backend(onnx_path, device="cuda")
    assert gpu.providers[0] == "CUDAExecutionProvider" and gpu.device_id == 0
    report = compare_backends(load_backend(onnx_path), gpu, sample_batches((64, 32)))
    assert report["max_abs_prob_diff"] < 1e-3
