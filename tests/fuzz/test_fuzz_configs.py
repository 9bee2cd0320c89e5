"""Fuzzing configs (YAML presets of train and query), class lists, answer paths and ONNX files.

Properties: a config either builds or is ``BadInput`` in one line; a class
list reads or is ``BadInput``; ``answer_image_path`` accepts only paths that
resolve to a file inside the root; ``check_external_data`` returns or refuses
in one line, for any bytes.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import yaml
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from atool.active.query_config import QueryConfig
from atool.annotate.paths import answer_image_path
from atool.core.config import build_config, load_yaml
from atool.core.errors import BadInput
from atool.core.train_config import TrainConfig
from atool.data.adapters.folder import read_classes
from atool.runtime.onnx_safety import check_external_data
from fuzzkit import fuzz_case_count, fuzz_tests, json_values, mutated_bytes, mutated_json, scratch_dir  # noqa: F401 - the fixture prints the case count

DIR = scratch_dir("atool-fuzz-cfg-")
ROOT = DIR / "images"
(ROOT / "sub").mkdir(parents=True)
(ROOT / "a.png").write_bytes(b"x")
(ROOT / "sub" / "b.png").write_bytes(b"x")
(DIR / "outside.png").write_bytes(b"x")
os.symlink(DIR, ROOT / "up")
os.symlink(DIR / "outside.png", ROOT / "leak.png")

TRAIN = {"method": "source", "source": "data/src", "iters": 100, "batch_size": 2, "lr": 0.01, "crop": "64x32",
         "optimizer": "sgd", "seed": 1, "pseudo_threshold": 0.9}
QUERY = {"strategy": "entropy", "params": {"radius": 4}, "budget": 10, "per_image": False, "seed": 0, "batch_size": 2}
KEYS = sorted(set(TRAIN) | set(QUERY) | {"target", "amp_dtype", "source_size", "workers", "exclude", "teacher"})


def _build(cls: type, preset: object) -> None:
    path = DIR / "cfg.yaml"
    path.write_text(yaml.safe_dump(preset) if not isinstance(preset, bytes) else preset.decode("latin-1"))
    try:
        data = load_yaml(path)
        build_config(cls, data, label=f"{cls.__name__} config")
    except BadInput as exc:
        assert "\n" not in str(exc), str(exc)


def train_preset(preset: object) -> None:
    _build(TrainConfig, preset)


def query_preset(preset: object) -> None:
    _build(QueryConfig, preset)


def yaml_bytes(data: bytes) -> None:
    _build(TrainConfig, data)
    _build(QueryConfig, data)


def classes_text(text: str) -> None:
    path = DIR / "classes.txt"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        names = read_classes(path)
    except BadInput as exc:
        assert "\n" not in str(exc)
    else:
        assert names and len(set(names)) == len(names) and all(n and n == n.strip() for n in names) and len(names) < 255


def image_path(rel: object) -> None:
    got, why = answer_image_path(rel, ROOT)
    if got is None:
        assert why
        return
    real = os.path.realpath(ROOT / got)
    assert os.path.commonpath([os.path.realpath(ROOT), real]) == os.path.realpath(ROOT) and os.path.isfile(real)


def _onnx_seed(location: str) -> bytes:
    w = numpy_helper.from_array(np.ones(2, np.float32), "W")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    w.external_data.add(key="location", value=location)
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2])
    graph = helper.make_graph([helper.make_node("Add", ["X", "W"], ["Y"])], "g", [x], [y], [w])
    return helper.make_model(graph).SerializeToString()


ONNX_SEEDS = (_onnx_seed("w.bin"), _onnx_seed("../w.bin"), _onnx_seed("/etc/passwd"))


def onnx_bytes(data: bytes) -> None:
    path = DIR / "m" / "model.onnx"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    try:
        n = check_external_data(path)
    except BadInput as exc:
        assert "\n" not in str(exc) and "refused" in str(exc)
        return
    assert n >= 0
    model = None
    try:
        model = onnx.load_from_string(data)
    except Exception:  # noqa: BLE001 - not ONNX: nothing to compare
        return
    for t in model.graph.initializer:  # what passed must really be inside
        for e in t.external_data:
            if e.key == "location":
                assert ".." not in e.value.replace("\\", "/").split("/") and not e.value.startswith("/")


_paths = st.one_of(
    st.text(alphabet="ab./\\:\0~ -", max_size=16),
    st.sampled_from(["a.png", "sub/b.png", "up/outside.png", "leak.png", "../outside.png", "/etc/passwd", "sub/../a.png", "C:/a.png"]),
    json_values,
)
test_train_preset, test_train_preset_slow = fuzz_tests(train_preset, mutated_json(TRAIN), n=50)
test_query_preset, test_query_preset_slow = fuzz_tests(query_preset, mutated_json(QUERY), n=50)
test_yaml_bytes, test_yaml_bytes_slow = fuzz_tests(
    yaml_bytes, mutated_bytes(yaml.safe_dump(TRAIN).encode(), yaml.safe_dump(QUERY).encode(), b"a: &x [*x]\n", b"!!python/object:os.system {}\n"), n=40
)
test_classes_text, test_classes_text_slow = fuzz_tests(classes_text, st.text(max_size=80), n=30)
test_image_path, test_image_path_slow = fuzz_tests(image_path, _paths, n=50)
test_onnx_bytes, test_onnx_bytes_slow = fuzz_tests(onnx_bytes, mutated_bytes(*ONNX_SEEDS), n=35)
