"""Every command through the real `atool` entry point: help, data synth, eval, errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from atool.cli import main
from conftest import SHARED_SCHEMAS, assert_one_line_error, run_cli


def test_help_lists_every_command():
    r = run_cli("--help")
    assert r.exit_code == 0
    for name in ["data", "train", "eval", "export", "query", "oracle", "ingest", "demo"]:
        assert name in r.output
    for name in main.commands:
        assert run_cli(name, "--help").exit_code == 0
    assert run_cli("data", "synth", "--help").exit_code == 0


def test_console_script_runs_without_onnxruntime_import():
    """`atool --help` must not pay for (or need) onnxruntime/tensorrt."""
    code = "import sys; from atool.cli import main; sys.argv=['atool','--help']\ntry: main()\nexcept SystemExit: pass\nprint('onnxruntime' in sys.modules, 'tensorrt' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False False"


def test_version():
    r = run_cli("--version")
    assert r.exit_code == 0 and "atool" in r.output


def test_data_synth_cli(tmp_path):
    r = run_cli("data", "synth", "--out", tmp_path / "d", "--n-source", "2", "--n-target", "2", "--n-val", "1", "--size", "64x32", "--seed", "3")
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "d" / "source" / "images").iterdir())) == 2
    assert (tmp_path / "d" / "target_train" / "oracle_labels").is_dir()
    assert_one_line_error(run_cli("data", "synth", "--out", tmp_path / "e", "--size", "60x30"), 2)
    assert run_cli("data", "synth", "--out", tmp_path / "e", "--size", "banana").exit_code == 2


def test_eval_cli_table_and_json(synth_pair, tiny_checkpoint):
    r = run_cli("eval", "--checkpoint", tiny_checkpoint, "--data", synth_pair / "target_val")
    assert r.exit_code == 0, r.output
    assert "mIoU" in r.output and "road" in r.output
    r = run_cli("eval", "--checkpoint", tiny_checkpoint, "--data", synth_pair / "target_val", "--json")
    data = json.loads(r.output)
    assert 0 <= data["miou"] <= 100 and set(data["iou"]) >= {"road", "sky"}
    assert data["pixels"] == 4 * 64 * 32


def test_eval_bad_inputs(synth_pair, tiny_checkpoint, tmp_path):
    assert_one_line_error(run_cli("eval", "--data", synth_pair / "target_val"), 2, "exactly one")
    assert_one_line_error(run_cli("eval", "--checkpoint", tmp_path / "nope.pt", "--data", synth_pair / "target_val"), 2, "not found")
    other = tmp_path / "other"
    shutil.copytree(synth_pair / "target_val", other)
    (other / "classes.txt").write_text("a\nb\n")
    assert_one_line_error(run_cli("eval", "--checkpoint", tiny_checkpoint, "--data", other), 2, "class lists differ")
    assert_one_line_error(run_cli("eval", "--checkpoint", tiny_checkpoint, "--data", synth_pair / "target_train"), 2, "needs labels")


@pytest.mark.skipif(not SHARED_SCHEMAS.is_dir(), reason="../shared/schemas not beside this checkout")
def test_packaged_schemas_equal_shared_ones():
    from importlib import resources

    for src in SHARED_SCHEMAS.glob("*.schema.json"):
        packaged = resources.files("atool.core.schemas").joinpath(src.name).read_text(encoding="utf-8")
        assert json.loads(packaged) == json.loads(src.read_text(encoding="utf-8")), src.name


TINY_DEMO = """
data: {n_source: 6, n_target: 4, n_val: 3, size: [64, 32]}
train: {batch_size: 2, crop: [64, 32], log_every: 1000}
source: {iters: 2}
advent: {iters: 2}
adapt: {iters: 2}
supervised: {iters: 2}
query: {clicks_per_image: 5}
"""


def test_demo_cli_runs_the_whole_loop_on_a_tiny_config(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_DEMO)
    r = run_cli("demo", "--out", tmp_path / "demo", "--seed", "1", "--config", cfg)
    assert r.exit_code == 0, r.output
    table = r.output.strip().splitlines()
    names = ["source-only", "UDA (ADVENT)", "adapt+random", "adapt+active", "target-supervised"]
    rows = {line.split("  ")[0].strip(): line.split() for line in table if line.split("  ")[0].strip() in names}
    assert list(rows) == names
    # Both arms spend the same clicks: 5 per pool image.
    assert rows["adapt+random"][-1] == rows["adapt+active"][-1] == "20"
    summary = json.loads((tmp_path / "demo" / "demo_results.json").read_text())
    assert [r["model"] for r in summary["results"]] == names
    assert all(0 <= r["miou"] <= 100 for r in summary["results"])
    for name in ["advent.onnx", "queries_active.json", "answers_random.json", "labels_active", "adapt_active.pt"]:
        assert (tmp_path / "demo" / name).exists(), name


@pytest.mark.parametrize(
    "text,message",
    [
        ("qurey: {clicks_per_image: 5}\n", "unknown section"),
        ("query: {clicks: 5}\n", "unknown key"),
        ("source: {iterations: 5}\n", "unknown key"),
        ("query: {clicks_per_image: 0}\n", "positive integer"),
        ("data: {size: [64]}\n", "width, height"),
        ("- a\n- b\n", "mapping"),
        ("data: [1, 2\n", "not valid YAML"),
    ],
)
def test_demo_rejects_bad_configs_in_one_line(tmp_path, text, message):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    assert_one_line_error(run_cli("demo", "--out", tmp_path / "demo", "--config", cfg), 2, message)


def test_eval_skips_and_reports_a_corrupt_image(synth_pair, tiny_checkpoint, tmp_path):
    data = tmp_path / "val"
    shutil.copytree(synth_pair / "target_val", data)
    first = sorted((data / "images").iterdir())[0]
    first.write_bytes(b"\x89PNG truncated")
    r = run_cli("eval", "--checkpoint", tiny_checkpoint, "--data", data, "--json")
    assert r.exit_code == 0, r.output
    assert "skipped 1 of 4 images" in r.stderr
    assert json.loads(r.stdout)["images"] == 3
    for image in (data / "images").iterdir():
        image.write_bytes(b"not an image")
    assert_one_line_error(run_cli("eval", "--checkpoint", tiny_checkpoint, "--data", data), 2, "no usable labeled image")


@pytest.mark.slow
def test_full_demo_active_beats_random(tmp_path):
    """The README's claim, on the packaged config (about 6 minutes on 2 cores)."""
    r = run_cli("demo", "--out", tmp_path / "demo", "--seed", "0")
    assert r.exit_code == 0, r.output
    results = {row["model"]: row for row in json.loads((tmp_path / "demo" / "demo_results.json").read_text())["results"]}
    active, random = results["adapt+active"], results["adapt+random"]
    assert active["clicks"] == random["clicks"] > 0
    assert active["miou"] > random["miou"]
    assert results["source-only"]["miou"] < results["target-supervised"]["miou"] - 20
