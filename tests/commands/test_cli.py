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
    import pkgutil

    import atool.commands

    modules = {i.name for i in pkgutil.iter_modules(atool.commands.__path__) if not i.name.startswith("_")}
    assert {"data", "train", "eval", "export", "query", "oracle", "ingest", "loop", "demo"} <= modules
    # Every module of atool/commands is a command; helpers start with "_".
    assert set(main.commands) == modules
    r = run_cli("--help")
    assert r.exit_code == 0
    for name in modules:
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
    data = json.loads(r.stdout)
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
retrain: {iters: 2}
supervised: {iters: 2}
query: {clicks_per_image: 5}
"""


def test_demo_cli_runs_the_whole_loop_on_a_tiny_config(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_DEMO)
    r = run_cli("demo", "--out", tmp_path / "demo", "--seed", "1", "--config", cfg)
    assert r.exit_code == 0, r.output
    table = r.output.strip().splitlines()
    names = ["source-only", "UDA (ADVENT)", "clicks: random", "clicks: stratified", "target-supervised"]
    rows = {line.split("  ")[0].strip(): line.split() for line in table if line.split("  ")[0].strip() in names}
    assert list(rows) == names
    # Both arms spend the same clicks: 5 per pool image.
    assert rows["clicks: random"][-1] == rows["clicks: stratified"][-1] == "20"
    assert any(line.startswith("stratified - random:") for line in table)
    summary = json.loads((tmp_path / "demo" / "demo_results.json").read_text())
    assert [r["model"] for r in summary["results"]] == names
    assert all(0 <= r["miou"] <= 100 for r in summary["results"])
    for name in ["advent.onnx", "arm_active/stage_1/queries.json", "arm_random/stage_1/answers.json", "arm_active/labels", "arm_active/stage_1/model.pt"]:
        assert (tmp_path / "demo" / name).exists(), name


@pytest.mark.parametrize(
    "text,message",
    [
        ("qurey: {clicks_per_image: 5}\n", "unknown demo config key(s) qurey (did you mean query?)"),
        ("query: {clicks: 5}\n", "unknown demo config key(s) query.clicks"),
        ("source: {iterations: 5}\n", "source.iterations (did you mean iters?)"),
        ("retrain: {lr: fast}\n", "lr must be float"),
        ("query: {clicks_per_image: 0}\n", "positive integer"),
        ("data: {size: [64]}\n", "width, height"),
        ("data: 3\n", "mapping"),
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
    active, random = results["clicks: stratified"], results["clicks: random"]
    assert active["clicks"] == random["clicks"] > 0
    assert active["miou"] > random["miou"]
    assert results["source-only"]["miou"] < results["target-supervised"]["miou"] - 20


# ---------------------------------------------------------------- one config mechanism: dataclass -> YAML -> CLI


def _plain(hint):
    import types
    import typing

    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def _other_value(f, hint):
    """A valid value of field ``f`` that differs from its default (so a setting that is dropped shows)."""
    import typing

    default = f.default
    plain = _plain(hint)
    if plain is bool:
        return True if default is None else not default
    if plain is int:
        return (default or 0) + 3
    if plain is float:
        return default / 2 if default else 0.25
    if typing.get_origin(plain) is tuple:
        return (96, 48) if default != (96, 48) else (112, 64)
    assert plain is str, f"{f.name}: teach this test the type {hint}"
    if "choices" in f.metadata:
        return next(c for c in f.metadata["choices"] if c != default)
    return f"{f.name}_value"


def _train_values():
    import dataclasses
    import typing

    from atool.core.train_config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    return {f.name: _other_value(f, hints[f.name]) for f in dataclasses.fields(TrainConfig) if f.name != "method"}


@pytest.fixture
def captured_train(monkeypatch):
    """``atool train`` with the training replaced by a recorder of the config it was given."""
    import atool.train.trainer as trainer

    seen = []

    def fake(cfg):
        seen.append(cfg)
        return {"method": cfg.method, "model": cfg.model, "steps_run": 0, "seconds": 0.0, "out": cfg.out}

    monkeypatch.setattr(trainer, "train", fake)
    return seen


def test_every_train_config_field_is_settable_from_the_cli(captured_train):
    values = _train_values()
    args = []
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + name.replace("_", "-"))
        elif isinstance(value, tuple):
            args += [flag, f"{value[0]}x{value[1]}"]
        else:
            args += [flag, str(value)]
    r = run_cli("train", "advent", *args)
    assert r.exit_code == 0, r.output
    cfg = captured_train[-1]
    assert cfg.method == "advent"
    assert {name: getattr(cfg, name) for name in values} == values


def test_every_train_config_field_is_settable_from_yaml(captured_train, tmp_path):
    import yaml

    values = _train_values()
    preset = tmp_path / "all.yaml"
    preset.write_text(yaml.safe_dump({k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}))
    r = run_cli("train", "minent", "--config", preset)  # out comes from the YAML
    assert r.exit_code == 0, r.output
    cfg = captured_train[-1]
    assert cfg.method == "minent"
    assert {name: getattr(cfg, name) for name in values} == values


def test_train_options_override_the_preset_only_when_given(captured_train, tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("iters: 5\nlr: 0.01\nflip: false\ncrop: [64, 32]\nout: from_yaml.pt\n")
    assert run_cli("train", "source", "--config", preset, "--iters", "7", "--backbone-weights", "w.pth").exit_code == 0
    cfg = captured_train[-1]
    assert (cfg.iters, cfg.lr, cfg.flip, cfg.crop, cfg.out, cfg.weights) == (7, 0.01, False, (64, 32), "from_yaml.pt", "w.pth")
    assert run_cli("train", "selector", "--out", "s.pt", "--separate-backbone", "--resume").exit_code == 0
    cfg = captured_train[-1]
    assert (cfg.shared_backbone, cfg.resume, cfg.out) == (False, True, "s.pt")


def test_train_bad_input_is_one_line(captured_train, tmp_path):
    assert_one_line_error(run_cli("train", "source", "--iters", "3"), 2, "--out")
    assert_one_line_error(run_cli("train", "nope", "--out", "x.pt"), 2, "'nope' is not one of")
    assert_one_line_error(run_cli("train", "source", "--out", "x.pt", "--crop", "big"), 2, "--crop")
    bad = tmp_path / "bad.yaml"
    bad.write_text("iterz: 3\n")
    assert_one_line_error(run_cli("train", "source", "--out", "x.pt", "--config", bad), 2, "iterz (did you mean iters?)")
    bad.write_text("iters: many\n")
    assert_one_line_error(run_cli("train", "source", "--out", "x.pt", "--config", bad), 2, "iters must be int")
    assert not captured_train


def test_help_names_the_registered_plugins_without_importing_them():
    """`atool train --help` lists the methods read from their modules' source: no torch."""
    from atool.annotate.formats import FORMATS
    from atool.active.strategies import STRATEGIES
    from atool.commands._options import declared_names
    from atool.train.methods import METHODS

    assert declared_names("atool.train.methods") == METHODS.names()
    assert declared_names("atool.active.strategies") == STRATEGIES.names()
    assert declared_names("atool.annotate.formats") == FORMATS.names()
    code = ("import sys; from atool.cli import main; sys.argv=['atool','train','--help']\n"
            "try: main()\nexcept SystemExit: pass\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "self_training" in out and "advent" in out
    assert out.strip().splitlines()[-1] == "False"


def test_build_config_sections_merge_and_reject_unknown_keys():
    from atool.core.config import build_config, config_dict
    from atool.core.errors import BadInput
    from atool.workflows.rounds import LoopConfig

    cfg = build_config(LoopConfig, {"query": {"strategy": "random"}, "selector": {"selector_warmup": 2}},
                       {"stages": None, "query": {"budget": 7, "per_image": None}})
    # Sections are laid over their defaults key by key; None overrides are 'not given'.
    assert (cfg.stages, cfg.query.strategy, cfg.query.budget, cfg.query.per_image) == (3, "random", 7, True)
    assert cfg.selector == {"iters": 200, "selector_warmup": 2}
    assert build_config(LoopConfig, config_dict(cfg)) == cfg
    for preset, message in (({"query": {"budgte": 3}}, "query.budgte (did you mean budget?)"),
                            ({"retrain": {"lr_rate": 1.0}}, "retrain.lr_rate"),
                            ({"query": [1]}, "mapping"),
                            ({"stages": "3"}, "stages must be int")):
        with pytest.raises(BadInput, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")) as exc:
            build_config(LoopConfig, preset, label="loop config")
        assert "\n" not in str(exc.value)


def test_train_stage_logs_a_command_that_rebuilds_its_config(captured_train, caplog):
    import logging
    import shlex

    from atool.core.config import config_dict
    from atool.workflows.stage import train_stage

    with caplog.at_level(logging.INFO, logger="atool.workflows"):
        train_stage("demo stage", {"iters": 4, "crop": [64, 32], "flip": False}, {"seed": 3, "progress": False}, {"iters": 5},
                    method="adapt", source="data/source dir", target=None, out="out.pt")
    staged = captured_train[-1]
    assert (staged.iters, staged.crop, staged.flip, staged.seed, staged.target) == (5, (64, 32), False, 3, None)
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("[demo stage] "))
    words = shlex.split(line.split("] ", 1)[1])
    assert words[:3] == ["atool", "train", "adapt"]
    assert run_cli(*words[1:]).exit_code == 0
    assert config_dict(captured_train[-1]) == config_dict(staged)
