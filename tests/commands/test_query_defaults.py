"""``atool query`` without ``--model``: the model from ``./atool.yaml`` or ``ATOOL_MODEL``, and the precedence of defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import assert_one_line_error, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def project(tmp_path, monkeypatch, tiny_checkpoint, synth_pair) -> Path:
    """An empty working directory (no atool.yaml yet) and no ATOOL_MODEL."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ATOOL_MODEL", raising=False)
    return tmp_path


def _images(synth_pair: Path) -> str:
    return str(synth_pair / "target_train" / "images")


def _query(synth_pair: Path, *extra: str):
    return run_cli("query", "--images", _images(synth_pair), "--workers", "0", "--out", "q.json", *extra)


def test_model_and_budget_from_atool_yaml(project, tiny_checkpoint, synth_pair):
    (project / "atool.yaml").write_text(f"query:\n  model: {tiny_checkpoint}\n  budget: 7\n  strategy: entropy\n")
    r = _query(synth_pair)
    assert r.exit_code == 0, r.output
    q = json.loads((project / "q.json").read_text())
    assert q["model"]["path"] == str(tiny_checkpoint)
    assert q["budget"]["points"] == 7 and q["strategy"]["name"] == "entropy"


def test_model_from_atool_model_env(project, tiny_checkpoint, synth_pair, monkeypatch):
    monkeypatch.setenv("ATOOL_MODEL", str(tiny_checkpoint))
    r = _query(synth_pair, "--budget", "5")
    assert r.exit_code == 0, r.output
    assert json.loads((project / "q.json").read_text())["model"]["path"] == str(tiny_checkpoint)


def test_no_model_names_both_ways(project, synth_pair):
    r = _query(synth_pair, "--budget", "5")
    assert_one_line_error(r, 2, "ATOOL_MODEL")
    assert "atool.yaml" in r.output and "--model" in r.output


def test_precedence_cli_over_config_over_atool_yaml(project, tiny_checkpoint, synth_pair):
    (project / "atool.yaml").write_text(f"query: {{model: {tiny_checkpoint}, budget: 9, seed: 4, strategy: entropy}}\n")
    (project / "preset.yaml").write_text("budget: 6\n")
    r = _query(synth_pair, "--config", "preset.yaml")
    assert r.exit_code == 0, r.output
    q = json.loads((project / "q.json").read_text())
    assert q["budget"]["points"] == 6 and q["strategy"]["seed"] == 4  # --config over atool.yaml; the rest from atool.yaml
    r = _query(synth_pair, "--config", "preset.yaml", "--budget", "3")
    assert r.exit_code == 0, r.output
    assert json.loads((project / "q.json").read_text())["budget"]["points"] == 3  # the command line over both


@pytest.mark.parametrize("text, message", [
    ("query: {budgett: 5}\n", "budgett (did you mean budget?)"),
    ("qurey: {budget: 5}\n", "qurey (did you mean query?)"),
    ("query: 5\n", "must be a mapping"),
])
def test_bad_atool_yaml_is_one_line(project, synth_pair, text, message):
    (project / "atool.yaml").write_text(text)
    assert_one_line_error(_query(synth_pair, "--budget", "5"), 2, message)
