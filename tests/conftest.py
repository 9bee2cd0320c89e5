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


def load_tool(name: str):
    """Import ``tools/<name>.py`` (scripts are not a package) as a module."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


@pytest.fixture(scope="session")
def selector_ckpt(tiny_checkpoint, tmp_path_factory) -> Path:
    """A shared-backbone selector around the tiny model, head 2 perturbed hard so the heads disagree
    (region / SPL queries are never empty)."""
    from atool.core.checkpoint import save_checkpoint
    from atool.models.checkpoint import load_checkpoint, model_from_checkpoint
    from atool.models.selector import SelectorModel

    ck = load_checkpoint(tiny_checkpoint)
    torch.manual_seed(0)
    sel = SelectorModel(model_from_checkpoint(ck), shared_backbone=True, head_noise=2.0)
    path = tmp_path_factory.mktemp("sel") / "selector.pt"
    save_checkpoint(path, model=sel, model_name="selector", model_args={"base": ck["model"]["name"], "base_args": {}, "shared_backbone": True},
                    classes=ck["classes"], step=0)
    return path


def small_query_list(classes: list[str], width: int, height: int, region) -> dict:
    """A schema-valid ``atool.query/v1`` list: two points on ``a.png`` (one without a prediction) and one
    region query (``region``: bool H x W mask) on ``sub/b.png``; the format round-trip tests edit it."""
    from atool.core.schemas import validate
    from atool.ops import rle

    items = [
        {"image": "a.png", "width": width, "height": height, "score": 0.9, "queries": [
            {"id": "q1", "kind": "point", "x": 1, "y": 2, "score": 0.9, "predicted": "car"},
            {"id": "q2", "kind": "point", "x": 7, "y": 5, "score": 0.8, "predicted": None},
        ]},
        {"image": "sub/b.png", "width": width, "height": height, "score": 0.7, "queries": [
            {"id": "q3", "kind": "region", "x": 2, "y": 1, "score": 0.7, "predicted": "sky", "mask": rle.encode(region)},
        ]},
    ]
    qlist = {
        "format": "atool.query/v1", "atool_version": "0.1.0", "created": "2024-01-01T00:00:00+00:00",
        "model": {"path": "m.pt", "sha256": "0" * 64, "backend": "torch"}, "classes": classes,
        "strategy": {"name": "test", "params": {}, "seed": 0}, "budget": {"points": 3, "scope": "total", "used": 3},
        "images": items, "skipped": [],
    }
    validate(qlist, "query-list", "test list")
    return qlist
