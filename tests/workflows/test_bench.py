"""tools/bench_query.py runs end to end and reports consistent ratios (slow: it exports a model)."""

from __future__ import annotations

import json

import pytest
from conftest import load_tool


def test_bench_rejects_bad_arguments(capsys):
    bench = load_tool("bench_query")
    assert bench.main(["--images", "0"]) == 2
    assert bench.main(["--ort-config", "no-equals-sign"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        bench.main(["--size", "banana"])
    assert exc.value.code == 2


@pytest.mark.slow
def test_bench_reports_both_backends_and_ratios(tmp_path):
    bench = load_tool("bench_query")
    out = tmp_path / "bench.json"
    assert bench.main(["--images", "2", "--size", "128x64", "--repeats", "1", "--budget", "5", "--selector", "--image-format", "jpg",
                       "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = {r["backend"]: r for r in result["backends"]}
    assert set(rows) == {"torch", "onnxruntime"}
    for r in rows.values():
        assert r["images"] == 2 and r["infer_images_per_s"] > 0 and r["query_images_per_s"] > 0
        assert r["end_to_end_over_inference"] == pytest.approx(r["infer_seconds"] / r["query_seconds"], rel=0.05)
        cpu = r["cpu_ms_per_image"]
        assert cpu["host"] == pytest.approx(cpu["query"] - cpu["inference"], abs=0.02)
        assert 0 < r["end_to_end_bound"] <= 1
    ratio = result["onnxruntime_over_torch"]["inference"]
    assert ratio == pytest.approx(rows["onnxruntime"]["infer_images_per_s"] / rows["torch"]["infer_images_per_s"], rel=0.05)
    assert result["image_format"] == "jpg"
    sel = {r["backend"]: r for r in result["selector_backends"]}
    for name, v in result["selector_over_plain"].items():
        assert v["query"] == pytest.approx(rows[name]["query_images_per_s"] / sel[name]["query_images_per_s"], rel=0.01)
        assert v["inference"] > 0
