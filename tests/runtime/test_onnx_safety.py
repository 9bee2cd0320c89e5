"""ONNX models whose external data lies outside their folder are refused before anything reads it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from atool.core.errors import BadInput
from atool.runtime.onnx_safety import check_external_data, location_problem
from conftest import assert_one_line_error, run_cli


def _model_with_external(folder: Path, location: str, *, in_subgraph: bool = False) -> Path:
    """A tiny graph Y = X + W whose W lives in the external file ``location`` (written only if inside)."""
    folder.mkdir(parents=True, exist_ok=True)
    w = numpy_helper.from_array(np.ones(4, np.float32), "W")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        w.external_data.add(key=key, value=value)
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [4])
    if in_subgraph:  # the external tensor sits in a Constant inside an If branch
        const = helper.make_node("Constant", [], ["W"], value=w)
        branch = helper.make_graph([const, helper.make_node("Add", ["X", "W"], ["Y"])], "b", [], [y])
        cond = numpy_helper.from_array(np.array(True), "C")
        graph = helper.make_graph([helper.make_node("If", ["C"], ["Y"], then_branch=branch, else_branch=branch)], "g", [x], [y], [cond])
    else:
        graph = helper.make_graph([helper.make_node("Add", ["X", "W"], ["Y"])], "g", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_inside_location_is_accepted_and_runs(tmp_path):
    import onnxruntime as ort

    path = _model_with_external(tmp_path / "m", "weights.bin")
    (tmp_path / "m" / "weights.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    assert check_external_data(path) == 1
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"X": np.zeros(4, np.float32)})[0]
    assert out.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "location, why",
    [
        ("../secret.bin", "'..'"),
        ("sub/../../secret.bin", "'..'"),
        ("..\\secret.bin", "'..'"),
        ("/etc/passwd", "absolute"),
        ("C:\\Windows\\win.ini", "absolute"),
        ("\\\\server\\share\\w.bin", "absolute"),
        ("", "empty"),
    ],
)
def test_outside_locations_are_refused(tmp_path, location, why):
    path = _model_with_external(tmp_path / "m", location)
    with pytest.raises(BadInput, match=why) as exc:
        check_external_data(path)
    assert "\n" not in str(exc.value) and "refused" in str(exc.value)


def test_symlink_escape_is_refused(tmp_path):
    secret = tmp_path / "outside" / "secret.bin"
    secret.parent.mkdir()
    secret.write_bytes(b"\0" * 16)
    path = _model_with_external(tmp_path / "m", "link/secret.bin")
    os.symlink(secret.parent, tmp_path / "m" / "link")
    with pytest.raises(BadInput, match="outside the model's folder"):
        check_external_data(path)
    assert location_problem("plain.bin", tmp_path / "m") is None


def test_subgraph_tensors_are_checked(tmp_path):
    path = _model_with_external(tmp_path / "m", "/etc/hostname", in_subgraph=True)
    with pytest.raises(BadInput, match="absolute"):
        check_external_data(path)


def test_backend_refuses_before_onnxruntime_opens_it(tmp_path, monkeypatch):
    import onnxruntime as ort

    from atool.runtime.backends import load_backend

    path = _model_with_external(tmp_path / "m", "../secret.bin")
    (tmp_path / "secret.bin").write_bytes(b"\0" * 16)

    def never(*_a, **_k):
        raise AssertionError("onnxruntime was asked to load a refused model")

    monkeypatch.setattr(ort, "InferenceSession", never)
    with pytest.raises(BadInput, match="climbs out"):
        load_backend(path)


def test_query_cli_refuses_in_one_line(tmp_path):
    path = _model_with_external(tmp_path / "m", "/etc/passwd")
    images = tmp_path / "images"
    images.mkdir()
    import cv2

    cv2.imwrite(str(images / "a.png"), np.zeros((32, 64, 3), np.uint8))
    r = run_cli("query", "--model", path, "--images", images, "--budget", 1, "--out", tmp_path / "q.json")
    assert_one_line_error(r, 2, "external location '/etc/passwd'")
    assert not (tmp_path / "q.json").exists()


def test_not_onnx_is_left_to_the_loader(tmp_path):
    path = tmp_path / "x.onnx"
    path.write_bytes(b"garbage")
    assert check_external_data(path) == 0
