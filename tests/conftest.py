"""Shared fixtures: a tiny synthetic domain pair and tiny checkpoints, made once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Keep the 2-core CI machine from oversubscribing: torch + OpenCV threads per test process.
os.environ.setdefault("OMP_NUM_THREADS", "2")

import torch  # noqa: E402

torch.set_num_threads(2)

SHARED_SCHEMAS = Path(__file__).resolve().parents[2] / "shared" / "schemas"


@pytest.fixture(scope="session")
def synth_pair(tmp_path_factory) -> Path:
    from atool.data.synth import write_synth_pair

    root = tmp_path_factory.mktemp("synth")
    write_synth_pair(root, n_source=6, n_target=6, n_val=4, size=(64, 32), seed=0)
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, synth_pair) -> Path:
    """A random-init model with the synthetic classes, saved as an atool checkpoint."""
    from atool.data.synth import SYNTH_CLASSES
    from atool.models import build_model
    from atool.core.checkpoint import save_checkpoint

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    model = build_model("lraspp_mobilenet_v3_small", num_classes=len(SYNTH_CLASSES))
    save_checkpoint(path, model=model, model_name="lraspp_mobilenet_v3_small", model_args={}, classes=SYNTH_CLASSES, step=0)
    return path


def run_cli(*args: str):
    """Invoke the real `atool` click group in-process; returns click's Result."""
    from click.testing import CliRunner

    from atool.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def assert_one_line_error(result, code: int = 2, contains: str | None = None) -> None:
    text = result.stderr if hasattr(result, "stderr") else result.output
    assert result.exit_code == code, f"exit {result.exit_code}: {result.output}"
    assert "Traceback" not in result.output
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith(("atool: error:", "Error:")), text
    err_lines = [line for line in lines if line.startswith("atool: error:")]
    assert len(err_lines) <= 1
    if contains:
        assert contains.lower() in text.lower(), text


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module: CI has 2 cores shared with other jobs, and extra threads
    only add contention on these small models."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
