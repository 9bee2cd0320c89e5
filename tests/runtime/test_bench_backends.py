"""``atool bench`` (timing, table, JSON) and ``atool query --backend auto`` reading what it measured."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from atool.runtime.bench import (SCHEMA, Target, bench_result, fastest, format_table, make_batches, percentiles,
                                 sibling_models)
from atool.runtime.select import bench_path_for, choose_auto
from conftest import assert_one_line_error, run_cli
from test_providers_and_engines import write_tiny_onnx


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_checkpoint) -> tuple[Path, Path]:
    from atool.data.synth import SYNTH_CLASSES

    root = tmp_path_factory.mktemp("bench_models")
    pt = root / "m.pt"
    shutil.copy(tiny_checkpoint, pt)
    return pt, write_tiny_onnx(root / "m.onnx", list(SYNTH_CLASSES))


def _row(target: Target, infer: float, query: float | None) -> dict:
    return {"backend": target.backend, "device": target.device, "provider": target.provider, "model": target.model,
            "label": target.label, "infer_images_per_s": infer, "query_images_per_s": query,
            "latency_ms_per_batch": {"p50": 1.0, "p90": 2.0, "p99": 3.0}, "end_to_end_over_inference": None,
            "peak_rss_mb": 100.0, "gpu_memory_mb": None}


def test_percentiles_batches_and_fastest():
    assert percentiles(list(range(101))) == {"p50": 50.0, "p90": 90.0, "p99": 99.0}
    imgs = [np.zeros((4, 6, 3), np.uint8)] * 3 + [np.zeros((5, 6, 3), np.uint8)] * 2
    assert [b.shape for b in make_batches(imgs, 2)] == [(2, 4, 6, 3), (1, 4, 6, 3), (2, 5, 6, 3)]
    a, b = Target("torch", "cpu", "m.pt"), Target("onnxruntime", "cpu", "m.onnx")
    # End-to-end speed decides when measured, whatever the inference-only figure says.
    assert fastest([_row(a, 10.0, 2.0), _row(b, 5.0, 3.0)])["label"] == "onnxruntime/cpu"
    assert fastest([_row(a, 10.0, None), _row(b, 5.0, None)])["label"] == "torch/cpu"
    assert fastest([{**_row(a, 10.0, 9.0), "error": "boom"}, _row(b, 1.0, 1.0)])["label"] == "onnxruntime/cpu"
    table = format_table(bench_result([_row(a, 10.0, 2.0), {"label": "tensorrt/cuda", "error": "x"}]))
    assert "torch/cpu" in table and "tensorrt/cuda" in table and "fastest: torch/cpu" in table


def test_siblings_and_bench_path(models):
    pt, onnx_path = models
    assert sibling_models(pt) == [pt, onnx_path]
    assert bench_path_for(onnx_path) == bench_path_for(pt) == pt.with_name("m.bench.json")


def _write_bench(path: Path, rows: list[dict]) -> None:
    path.write_text(json.dumps(bench_result(rows)))


@pytest.mark.parametrize("winner", ["torch", "onnxruntime"])
def test_query_backend_auto_picks_what_the_benchmark_measured(models, synth_pair, tmp_path, winner):
    pt, onnx_path = models
    speeds = {"torch": 1.0, "onnxruntime": 1.0, winner: 50.0}
    bench = tmp_path / "b.json"
    _write_bench(bench, [_row(Target("torch", "cpu", str(pt)), 9.0, speeds["torch"]),
                         _row(Target("onnxruntime", "cpu", str(onnx_path)), 9.0, speeds["onnxruntime"])])
    out = tmp_path / "q.json"
    # --model names the checkpoint either way: auto may switch to the sibling .onnx.
    r = run_cli("query", "--model", pt, "--images", synth_pair / "target_train" / "images", "--budget", "5",
                "--strategy", "random", "--out", out, "--backend", "auto", "--bench", bench)
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["model"]["backend"] == winner


def test_auto_without_benchmark_uses_the_models_own_backend(models, caplog):
    pick = choose_auto(models[1])
    assert pick["backend"] == "onnxruntime" and pick["model"] == str(models[1]) and "no benchmark" in pick["reason"]


def test_auto_skips_rows_whose_model_is_gone(models, tmp_path):
    pt, _ = models
    bench = tmp_path / "b.json"
    _write_bench(bench, [_row(Target("onnxruntime", "cpu", str(tmp_path / "gone.onnx")), 99.0, 99.0),
                         _row(Target("torch", "cpu", str(pt)), 1.0, 1.0)])
    assert choose_auto(pt, bench)["backend"] == "torch"


def test_bad_benchmark_files_are_one_line_errors(models, synth_pair, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "something/else"}))
    for bench, message in ((bad, "not an `atool bench` result"), (tmp_path / "none.json", "not found")):
        r = run_cli("query", "--model", models[0], "--images", synth_pair / "target_train" / "images", "--budget", "5",
                    "--out", tmp_path / "q.json", "--backend", "auto", "--bench", bench)
        assert_one_line_error(r, 2, contains=message)
    r = run_cli("query", "--model", models[0], "--images", synth_pair / "target_train" / "images", "--budget", "5",
                "--out", tmp_path / "q.json", "--backend", "auto", "--device", "cpu")
    assert_one_line_error(r, 2, contains="--backend auto chooses the device")


def test_bench_cli_measures_every_backend_then_auto_uses_it(models, synth_pair, tmp_path):
    """A real (tiny) measurement: JSON and table for torch and onnxruntime, then auto runs the fastest."""
    pt, onnx_path = models
    images = synth_pair / "target_train" / "images"
    r = run_cli("bench", "--model", pt, "--images", images, "--limit", "4", "--batch-size", "2", "--repeats", "1",
                "--threads", "1", "--in-process")
    assert r.exit_code == 0, r.output
    doc = json.loads(bench_path_for(pt).read_text())
    assert doc["schema"] == SCHEMA and doc["images"] == 4
    rows = {row["label"]: row for row in doc["results"]}
    assert set(rows) == {"torch/cpu", "onnxruntime/cpu"}
    for row in rows.values():
        assert row["infer_images_per_s"] > 0 and row["query_images_per_s"] > 0 and row["peak_rss_mb"] > 0
        assert row["latency_ms_per_batch"]["p50"] <= row["latency_ms_per_batch"]["p99"]
    assert "torch/cpu" in r.output and "onnxruntime/cpu" in r.output
    out = tmp_path / "q.json"
    r = run_cli("query", "--model", pt, "--images", images, "--budget", "5", "--strategy", "random", "--out", out,
                "--backend", "auto")
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["model"]["backend"] == rows[doc["fastest"]]["backend"]
    bench_path_for(pt).unlink()
