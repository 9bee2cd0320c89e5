"""Contract tests over every registry: a new entry is tested without editing this file.

Parametrized over ``REG.names()`` at collection time:
  * models: build, forward a tiny batch, the output dict contract, backward;
  * training methods: hooks declared on ``Method``, constructible, 2 iterations through ``atool train``;
  * selection strategies: ``atool query`` on the torch and the onnxruntime backend, list checked against
    the query-list schema (a selector model for strategies that need heads, and the extra outputs a
    strategy declares in ``needs_maps``, made by ``MAP_MAKERS``);
  * runtime backends: suffixes, ``load_backend`` dispatch, a one-line error for unusable files.
Query-list formats have their own round-trip contract test.
"""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from atool.active.strategies import STRATEGIES
from atool.core.errors import BadInput
from atool.core.schemas import validate
from atool.models import MODELS, build_model
from atool.runtime.backends import BACKENDS, Backend, backend_for_suffix, load_backend
from atool.train.methods import METHODS, Method
from conftest import assert_one_line_error, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NUM_CLASSES = 3
TRAIN_SIZE = (33, 45)  # odd and unequal sides: H/W mix-ups and rounding show up
EVAL_SIZE = (40, 24)
FAST = ["--iters", "2", "--batch-size", "2", "--crop", "32x32"]


# ------------------------------------------------------------------------------------ models


def _check_logits(name: str, what: str, t: torch.Tensor, n: int, size: tuple[int, int]) -> None:
    assert isinstance(t, torch.Tensor) and t.ndim == 4 and t.is_floating_point(), f"{name} {what}: {type(t)}"
    assert tuple(t.shape[:2]) == (n, NUM_CLASSES), f"{name} {what}: shape {tuple(t.shape)}, want {n} x {NUM_CLASSES} x h x w"
    h, w = t.shape[-2:]
    strides = [s for s in (1, 2, 4, 8, 16, 32) if (h, w) == (math.ceil(size[0] / s), math.ceil(size[1] / s))]
    assert strides, f"{name} {what}: {h} x {w} is not one stride of a {size[0]} x {size[1]} input"
    assert torch.isfinite(t).all(), f"{name} {what}: non-finite logits"


def _check_output(name: str, out: dict, n: int, size: tuple[int, int]) -> list[torch.Tensor]:
    """The model-output contract (atool.models docstring); returns every logits tensor."""
    assert isinstance(out, dict) and "out" in out, f"{name} must return a dict with 'out', got {type(out).__name__}"
    assert set(out) <= {"out", "aux", "heads"}, f"{name} returned unknown keys {sorted(set(out) - {'out', 'aux', 'heads'})}"
    _check_logits(name, "out", out["out"], n, size)
    tensors = [out["out"]]
    if "aux" in out:
        assert isinstance(out["aux"], (list, tuple)) and out["aux"], f"{name}: aux must be a non-empty list"
        tensors += list(out["aux"])
    if "heads" in out:
        assert isinstance(out["heads"], (list, tuple)) and len(out["heads"]) == 2, f"{name}: heads must be a pair"
        tensors += list(out["heads"])
    for i, t in enumerate(tensors[1:]):
        _check_logits(name, f"extra output {i}", t, n, size)
    return tensors


@pytest.mark.parametrize("name", MODELS.names())
def test_model_contract(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=NUM_CLASSES).train()
    tensors = _check_output(name, model(torch.randn(2, 3, *TRAIN_SIZE)), 2, TRAIN_SIZE)
    sum(t.float().square().mean() for t in tensors).backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable, f"{name}: no trainable parameters"
    grads = [p.grad for p in trainable if p.grad is not None]
    assert grads and any(bool(g.abs().sum() > 0) for g in grads), f"{name}: backward reached no parameter"
    assert all(bool(torch.isfinite(g).all()) for g in grads), f"{name}: non-finite gradients"

    model.eval()
    with torch.no_grad():
        _check_output(name, model(torch.randn(1, 3, *EVAL_SIZE)), 1, EVAL_SIZE)


# ------------------------------------------------------------------------------------ training methods

# Every hook the trainer calls; each must be declared on the base class (nothing found by getattr).
METHOD_HOOKS = ("prepare", "setup", "step", "supports_amp", "uses_source", "uses_target", "needs_target_labels")
METHOD_FLAGS = ("supports_amp", "uses_source", "uses_target", "needs_target_labels")


def _params(fn) -> list[str]:
    return [p.name for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("name", METHODS.names())
def test_method_declares_its_hooks(name):
    from atool.core.config import TrainConfig, build_config

    cls = METHODS.get(name)
    assert isinstance(cls, type) and issubclass(cls, Method), f"{name} is not a Method subclass"
    assert cls.name == name
    for hook in METHOD_HOOKS:
        assert hook in vars(Method), f"hook {hook} is not declared on the Method base class"
    for flag in METHOD_FLAGS:
        assert isinstance(getattr(cls, flag), bool), f"{name}.{flag} must be a bool"
    assert isinstance(inspect.getattr_static(cls, "prepare"), classmethod), f"{name}.prepare must stay a classmethod"
    assert cls.step is not Method.step, f"{name} does not implement step"
    for hook in ("prepare", "setup", "step", "wrap_model"):
        assert _params(getattr(cls, hook)) == _params(getattr(Method, hook)), f"{name}.{hook} changed the hook's signature"
    assert cls.uses_source or cls.uses_target, f"{name} uses neither source nor target data"
    assert not cls.needs_target_labels or cls.uses_target, f"{name} needs target labels but no target"

    method = cls(build_config(TrainConfig, {}, {"method": name}), NUM_CLASSES, torch.device("cpu"))
    assert method.num_classes == NUM_CLASSES and method.model is None


@pytest.fixture(scope="module")
def sparse_target_labels(synth_pair, tmp_path_factory) -> Path:
    """An ``atool ingest``-style folder: two labeled pixels per target image, 255 elsewhere."""
    from atool.data.images import read_image, write_label

    root = tmp_path_factory.mktemp("sparse")
    for img in sorted((synth_pair / "target_train" / "images").iterdir()):
        h, w = read_image(img).shape[:2]
        lab = np.full((h, w), 255, np.uint8)
        lab[h // 4, w // 4] = 0
        lab[h // 2, w // 2] = 1
        write_label(root / "labels" / img.with_suffix(".png").name, lab)
    return root


@pytest.mark.parametrize("name", METHODS.names())
def test_method_trains_two_iterations(name, synth_pair, tiny_checkpoint, sparse_target_labels, tmp_path):
    """Every method, from the tiny checkpoint, with exactly the data its flags ask for."""
    from atool.models.checkpoint import load_checkpoint

    cls = METHODS.get(name)
    out = tmp_path / f"{name}.pt"
    args = ["train", name, "--init", tiny_checkpoint, "--out", out, *FAST]
    if cls.uses_source:
        args += ["--source", synth_pair / "source"]
    if cls.uses_target:
        args += ["--target", synth_pair / "target_train"]
    if cls.needs_target_labels:
        args += ["--target-labels", sparse_target_labels]
    r = run_cli(*args)
    assert r.exit_code == 0, r.output
    ck = load_checkpoint(out)
    assert ck["step"] == 2 and ck["config"]["method"] == name
    assert ck["model"]["name"] in MODELS
    init = load_checkpoint(tiny_checkpoint)
    if ck["model"]["name"] == init["model"]["name"]:
        before = init["state_dict"]
        changed = [k for k, v in ck["state_dict"].items()
                   if k in before and v.is_floating_point() and not torch.equal(v, before[k])]
        assert changed, f"{name}: two steps changed no weight"


# ------------------------------------------------------------------------------------ model files

# Suffixes this module can make a real model file for; a backend with none of them is "absent here".
MAKEABLE = (".pt", ".onnx")


def _suffix_for(backend: str) -> str | None:
    return next((s for s in BACKENDS.get(backend).suffixes if s in MAKEABLE), None)


def _add_prototypes(ckpt: Path, out: Path, synth_pair: Path) -> None:
    r = run_cli("prototypes", "--checkpoint", ckpt, "--source", synth_pair / "source", "--out", out)
    assert r.exit_code == 0, r.output


# Backend outputs beyond prob/entropy/heads that a strategy may declare in ``needs_maps``, and how to
# give the tiny model each one: (checkpoint in, checkpoint out, synthetic pair) -> None.
MAP_MAKERS = {"gap": _add_prototypes}


@pytest.fixture(scope="module")
def model_file(tiny_checkpoint, synth_pair, tmp_path_factory):
    """``get(heads, maps, suffix)``: the tiny model (or a selector around it), given the extra ``maps``
    outputs, as a checkpoint or its ONNX export; each made once per module."""
    root = tmp_path_factory.mktemp("contract_models")
    cache: dict[tuple[bool, tuple[str, ...], str], Path] = {}

    def selector() -> Path:
        from atool.core.checkpoint import save_checkpoint
        from atool.models.checkpoint import load_checkpoint, model_from_checkpoint
        from atool.models.selector import SelectorModel

        ck = load_checkpoint(tiny_checkpoint)
        torch.manual_seed(0)
        # head 2 perturbed hard so the heads disagree somewhere
        sel = SelectorModel(model_from_checkpoint(ck), shared_backbone=True, head_noise=2.0)
        path = root / "selector.pt"
        save_checkpoint(path, model=sel, model_name="selector", classes=ck["classes"], step=0,
                        model_args={"base": ck["model"]["name"], "base_args": {}, "shared_backbone": True})
        return path

    def get(heads: bool, maps: tuple[str, ...], suffix: str) -> Path:
        key = (heads, tuple(sorted(maps)), suffix)
        stem = "-".join(["selector" if heads else "plain", *key[1]])
        if key in cache:
            return cache[key]
        if suffix == ".onnx":
            pytest.importorskip("onnxruntime")
            from atool.export.onnx import export_onnx

            out = root / f"{stem}.onnx"
            export_onnx(get(heads, maps, ".pt"), out, sample_size=(64, 32))
        elif suffix != ".pt":
            raise ValueError(f"no way to make a {suffix} model here")
        elif key[1]:
            extra = key[1][-1]
            assert extra in MAP_MAKERS, f"no way to give a model the {extra!r} output: add a maker to MAP_MAKERS"
            out = root / f"{stem}.pt"
            MAP_MAKERS[extra](get(heads, key[1][:-1], ".pt"), out, synth_pair)
        else:
            out = selector() if heads else tiny_checkpoint
        cache[key] = out
        return out

    return get


# ------------------------------------------------------------------------------------ strategies


def _check_query_list(q: dict, name: str, images: Path, budget: int) -> None:
    validate(q, "query-list", f"{name} query list")
    b = q["budget"]
    assert 0 < b["used"] <= b["points"] == budget, b
    queries = [p for e in q["images"] for p in e["queries"]]
    assert len(queries) == b["used"] and len({p["id"] for p in queries}) == len(queries)
    kind = STRATEGIES.get(name).kind
    for e in q["images"]:
        assert (images / e["image"]).is_file(), e["image"]
        pts = [(p["x"], p["y"]) for p in e["queries"]]
        assert len(set(pts)) == len(pts), f"{name}: repeated points in {e['image']}"
        for p in e["queries"]:
            assert p["kind"] == kind
            assert 0 <= p["x"] < e["width"] and 0 <= p["y"] < e["height"]
            assert p["predicted"] in q["classes"]


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
@pytest.mark.parametrize("name", STRATEGIES.names())
def test_strategy_query_follows_the_schema(name, backend, model_file, synth_pair, tmp_path):
    cls = STRATEGIES.get(name)
    model = model_file(cls.needs_heads, cls.needs_maps, _suffix_for(backend))
    images = synth_pair / "target_train" / "images"
    out = tmp_path / "queries.json"
    r = run_cli("query", "--model", model, "--images", images, "--budget", "5", "--strategy", name, "--out", out)
    assert r.exit_code == 0, r.output
    _check_query_list(json.loads(out.read_text()), name, images, 5)


@pytest.mark.parametrize("name", [n for n, cls in STRATEGIES.items() if cls.needs_heads or cls.needs_maps])
def test_strategy_needing_more_outputs_refuses_a_plain_model(name, model_file, synth_pair, tmp_path):
    """A model without the heads or maps a strategy reads is a one-line BadInput, before anything is written."""
    r = run_cli("query", "--model", model_file(False, (), ".pt"), "--images", synth_pair / "target_train" / "images",
                "--budget", "5", "--strategy", name, "--out", tmp_path / "q.json")
    assert_one_line_error(r, 2)
    assert not (tmp_path / "q.json").exists()


# ------------------------------------------------------------------------------------ backends


@pytest.mark.parametrize("name", BACKENDS.names())
def test_backend_declares_suffixes(name):
    cls = BACKENDS.get(name)
    assert isinstance(cls, type) and issubclass(cls, Backend) and cls.name == name
    assert cls.suffixes and isinstance(cls.suffixes, tuple), f"backend {name} declares no suffixes"
    for s in cls.suffixes:
        assert s.startswith(".") and s == s.lower(), f"backend {name}: suffix {s!r} must be '.lower'"
        assert backend_for_suffix(s) == name, f"suffix {s} of {name} is claimed by {backend_for_suffix(s)}"
    assert cls.infer is not Backend.infer, f"backend {name} does not implement infer"


@pytest.mark.parametrize("name", BACKENDS.names())
def test_load_backend_picks_by_suffix(name, monkeypatch, tmp_path):
    cls = BACKENDS.get(name)
    seen: list[Path] = []

    def record(self, path, device="cpu", **kwargs):
        seen.append(Path(path))

    monkeypatch.setattr(cls, "__init__", record)
    for s in cls.suffixes:
        path = tmp_path / f"model{s.upper()}"  # the suffix decides, whatever its case
        path.write_bytes(b"\0")
        assert type(load_backend(path)) is cls
    assert seen == [tmp_path / f"model{s.upper()}" for s in cls.suffixes]


@pytest.mark.parametrize("name", BACKENDS.names())
def test_unusable_model_file_is_one_line_bad_input(name, tmp_path):
    """A corrupt file, or a runtime that is not installed here (tensorrt), is BadInput in one line."""
    for s in BACKENDS.get(name).suffixes:
        path = tmp_path / f"corrupt{s}"
        path.write_bytes(b"this is not a model file\n" * 8)
        with pytest.raises(BadInput) as e:  # MissingDependency is a BadInput
            load_backend(path)
        msg = str(e.value)
        assert msg and "\n" not in msg, f"{name}: {msg!r}"


@pytest.mark.parametrize("heads", [False, True], ids=["plain", "heads"])
@pytest.mark.parametrize("name", [n for n in BACKENDS.names() if _suffix_for(n)])
def test_backend_infer_contract(name, heads, model_file):
    backend = load_backend(model_file(heads, (), _suffix_for(name)))
    assert isinstance(backend, BACKENDS.get(name))
    assert backend.heads is heads and len(backend.classes) >= 2 and isinstance(backend.metadata, dict)
    batch = np.random.default_rng(0).integers(0, 256, (2, 20, 36, 3), dtype=np.uint8)
    maps = backend.infer(batch)
    c = len(backend.classes)
    assert maps["prob"].shape == (2, c, 20, 36) and maps["prob"].dtype == np.float32
    np.testing.assert_allclose(maps["prob"].sum(axis=1), 1.0, atol=1e-4)
    assert maps["entropy"].shape == (2, 20, 36) and maps["entropy"].dtype == np.float32
    assert (maps["entropy"] >= -1e-5).all() and (maps["entropy"] <= 1 + 1e-5).all()
    assert ({"heads_disagree", "heads_discrepancy"} <= set(maps)) is heads
    for key in ("heads_disagree", "heads_discrepancy") if heads else ():
        assert maps[key].shape == (2, 20, 36) and maps[key].dtype == np.float32
    if heads:
        assert set(np.unique(maps["heads_disagree"])) <= {0.0, 1.0}
        assert (maps["heads_discrepancy"] >= 0).all() and (maps["heads_discrepancy"] <= 2 + 1e-5).all()
