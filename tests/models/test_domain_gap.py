"""Source prototypes, the ``gap`` output (torch, ONNX, parity) and the ``domain_gap`` strategy."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from atool.active.strategies import image_rng, make_strategy
from atool.active.strategies.domain_gap import spread_points
from atool.core.errors import BadInput, Failure
from atool.core.metadata import build_metadata, parse_metadata
from atool.core.schemas import validate
from atool.data.adapters.folder import FolderDataset
from atool.models.checkpoint import load_checkpoint, model_from_checkpoint
from atool.models.features import gap_map
from atool.models.prototypes import cell_labels, compute_prototypes, prototypes_of
from atool.runtime.backends import load_backend
from atool.runtime.parity import check_parity, compare_backends, format_report
from conftest import assert_one_line_error, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SAMPLE = "64x48"


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("domain_gap")


@pytest.fixture(scope="module")
def gap_ckpt(work, tiny_checkpoint, synth_pair) -> tuple[Path, object]:
    out = work / "with_prototypes.pt"
    r = run_cli("prototypes", "--checkpoint", tiny_checkpoint, "--source", synth_pair / "source", "--out", out)
    assert r.exit_code == 0, r.output
    assert f"wrote {out}" in r.output
    return out, r


@pytest.fixture(scope="module")
def gap_onnx(work, gap_ckpt) -> tuple[Path, object]:
    out = work / "with_prototypes.onnx"
    r = run_cli("export", "--checkpoint", gap_ckpt[0], "--out", out, "--sample-size", SAMPLE)
    assert r.exit_code == 0, r.output
    return out, r


@pytest.fixture(scope="module")
def plain_onnx(work, tiny_checkpoint) -> Path:
    from atool.export.onnx import export_onnx

    out = work / "plain.onnx"
    export_onnx(tiny_checkpoint, out, sample_size=(64, 48))
    return out


# --- prototypes ----------------------------------------------------------------------------------


def test_cell_labels_majority_and_purity():
    lab = np.full((4, 4), 255, np.uint8)
    lab[:2, :2] = 1  # a pure cell
    lab[:2, 2:] = 2
    lab[0, 3] = 255  # 3/4 class 2, 1/4 ignored
    lab[2:, :2] = [[0, 0], [3, 3]]  # a 50/50 cell; the tie goes to the lower class
    got = cell_labels(lab, (2, 2), num_classes=4, min_purity=0.5)
    assert got.tolist() == [[1, 2], [0, -1]]  # the all-ignore cell has no class
    strict = cell_labels(lab, (2, 2), num_classes=4, min_purity=0.9)
    assert strict.tolist() == [[1, -1], [-1, -1]]


def _direct_prototypes(ckpt_path: Path, source: Path, indices: list[int], c: int) -> np.ndarray:
    """The definition, computed another way: the selector's trunk for features, loops over cells for labels."""
    ck = load_checkpoint(ckpt_path)
    trunk = copy.deepcopy(model_from_checkpoint(ck))
    trunk.classifier = nn.Identity()  # its `out` is then the classifier's input (a dict for LR-ASPP)
    data = FolderDataset(source)
    mean = np.array(ck["mean"], np.float32)
    std = np.array(ck["std"], np.float32)
    sums = np.zeros((c, 0))
    counts = np.zeros(c)
    for i in indices:
        s = data.load(i)
        x = torch.from_numpy(((s.image / 255.0 - mean) / std).astype(np.float32)).permute(2, 0, 1)[None]
        with torch.no_grad():
            f = trunk(x)["out"]["high"][0].double().numpy()  # D x h x w
        d, h, w = f.shape
        if sums.shape[1] == 0:
            sums = np.zeros((c, d))
        big_h, big_w = s.label.shape
        for cy in range(h):
            for cx in range(w):
                block = s.label[[y for y in range(big_h) if y * h // big_h == cy]][:, [x for x in range(big_w) if x * w // big_w == cx]]
                values, n = np.unique(block, return_counts=True)
                best = max((cnt, -v) for v, cnt in zip(values.tolist(), n.tolist()) if v != 255) if (values != 255).any() else None
                if best is None or best[0] / block.size < 0.5:
                    continue
                vec = f[:, cy, cx]
                sums[-best[1]] += vec / np.linalg.norm(vec)
                counts[-best[1]] += 1
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return np.where(counts[:, None] > 0, sums / np.maximum(norms, 1e-30), 0.0)


def test_prototypes_shape_norm_and_definition(tiny_checkpoint, synth_pair):
    source = synth_pair / "source"
    protos = compute_prototypes(tiny_checkpoint, source, max_images=2)
    c = len(protos.classes)
    assert protos.images == 2
    assert protos.vectors.dtype == torch.float32 and protos.vectors.shape == (c, 576)
    norms = protos.vectors.norm(dim=1)
    present = protos.pixels > 0
    assert int(present.sum()) >= 2, "the source must show at least two classes for this test to mean anything"
    assert torch.allclose(norms[present], torch.ones(int(present.sum())), atol=1e-5)
    assert (norms[~present] == 0).all()
    assert protos.absent == [n for n, p in zip(protos.classes, present.tolist()) if not p]
    # Evenly spaced over the 6 source images: the first and the last.
    want = _direct_prototypes(tiny_checkpoint, source, [0, len(FolderDataset(source)) - 1], c)
    np.testing.assert_allclose(protos.vectors.numpy(), want, atol=1e-5)


def test_stored_in_the_checkpoint_and_read_with_weights_only(gap_ckpt, tiny_checkpoint, synth_pair):
    path, result = gap_ckpt
    raw = torch.load(path, map_location="cpu", weights_only=True)
    entry = raw["prototypes"]
    assert set(entry) >= {"vectors", "pixels", "images", "classes", "source"}
    assert entry["images"] == len(FolderDataset(synth_pair / "source"))
    assert "prototypes" not in torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    loaded = prototypes_of(load_checkpoint(path))
    assert torch.equal(loaded.vectors, entry["vectors"]) and loaded.classes == raw["classes"]
    assert prototypes_of(load_checkpoint(tiny_checkpoint)) is None
    # Everything else is the checkpoint as it was.
    before = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    assert all(torch.equal(before["state_dict"][k], raw["state_dict"][k]) for k in before["state_dict"])
    bad = dict(raw, prototypes=dict(entry, vectors=entry["vectors"][:-1]))
    with pytest.raises(BadInput, match="atool prototypes"):
        prototypes_of(bad)


@pytest.mark.parametrize("case", ["no_labels", "other_classes", "no_classes", "max_images", "missing"])
def test_prototypes_cli_errors_are_one_line(case, tmp_path, tiny_checkpoint, synth_pair):
    import shutil

    source = synth_pair / "source"
    ckpt = tiny_checkpoint
    extra: list[str] = []
    if case == "no_labels":
        source = tmp_path / "src"
        shutil.copytree(synth_pair / "source", source, ignore=shutil.ignore_patterns("labels"))
    elif case == "other_classes":
        source = tmp_path / "src"
        shutil.copytree(synth_pair / "source", source)
        names = (source / "classes.txt").read_text().splitlines()
        (source / "classes.txt").write_text("\n".join(reversed(names)) + "\n")
    elif case == "no_classes":
        raw = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
        del raw["classes"]
        ckpt = tmp_path / "no_classes.pt"
        torch.save(raw, ckpt)
    elif case == "max_images":
        extra = ["--max-images", "0"]
    else:
        ckpt = tmp_path / "nowhere.pt"
    out = tmp_path / "out.pt"
    r = run_cli("prototypes", "--checkpoint", ckpt, "--source", source, "--out", out, *extra)
    assert_one_line_error(r, 2)
    assert not out.exists()


# --- the gap output ------------------------------------------------------------------------------


def test_gap_map_is_one_minus_cosine_to_the_predicted_class():
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 5, 3, 4, generator=gen)
    protos = F.normalize(torch.randn(4, 5, generator=gen), dim=1)
    protos[3] = 0.0  # a class the source never showed
    prob = torch.softmax(3 * torch.randn(2, 4, 3, 4, generator=gen), dim=1)
    got = gap_map(feats, prob, protos).numpy()  # same resolution: no interpolation in play
    f, p, pr = feats.numpy(), protos.numpy(), prob.numpy()
    for n in range(2):
        for y in range(3):
            for x in range(4):
                k = pr[n, :, y, x].argmax()
                v = f[n, :, y, x]
                cos = 0.0 if k == 3 else float(v @ p[k] / np.linalg.norm(v))
                assert got[n, y, x] == pytest.approx(1.0 - cos, abs=1e-5)
    assert (pr.argmax(axis=1) == 3).any(), "the zero prototype must be exercised"
    with pytest.raises(BadInput, match="atool prototypes"):
        gap_map(feats[:, :4], prob, protos)


def test_torch_backend_outputs_gap(gap_ckpt):
    backend = load_backend(gap_ckpt[0])
    assert backend.prototypes is True and backend.output_names == ["prob", "entropy", "gap"]
    out = backend.infer(np.random.default_rng(1).integers(0, 256, (2, 37, 70, 3), dtype=np.uint8))
    assert set(out) == {"prob", "entropy", "gap"}
    gap = out["gap"]
    assert gap.shape == (2, 37, 70) and gap.dtype == np.float32
    assert (gap >= -1e-5).all() and (gap <= 2 + 1e-5).all() and gap.std() > 0


def test_export_with_prototypes_has_gap_and_metadata(gap_onnx, gap_ckpt):
    path, result = gap_onnx
    assert "max |dgap| = " in result.output, result.output
    proto = onnx.load(path)
    assert [o.name for o in proto.graph.output] == ["prob", "entropy", "gap"]
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["atool.outputs"]) == ["prob", "entropy", "gap"]
    assert props["atool.prototypes"] == "true"
    info = json.loads(props["atool.prototype_source"])
    expected = prototypes_of(load_checkpoint(gap_ckpt[0]))
    assert info == {"dataset": "source", "images": expected.images, "dim": 576, "absent": expected.absent}
    meta = parse_metadata(props, str(path))
    assert meta["prototypes"] is True and meta["prototype_source"] == info


def test_onnxruntime_matches_torch_on_gap(gap_onnx, gap_ckpt):
    torch_b, ort_b = load_backend(gap_ckpt[0]), load_backend(gap_onnx[0])
    assert ort_b.prototypes is True and ort_b.output_names == ["prob", "entropy", "gap"]
    batch = np.random.default_rng(7).integers(0, 256, (2, 53, 91, 3), dtype=np.uint8)
    report = compare_backends(torch_b, ort_b, [batch])
    assert report["argmax_agreement"] >= 0.999
    assert report["max_abs_gap_diff"] is not None and report["max_abs_gap_diff"] < 1e-4
    check_parity(report)
    assert "max |dgap|" in format_report(report)


def test_export_without_prototypes_is_unchanged(plain_onnx):
    proto = onnx.load(plain_onnx)
    assert [o.name for o in proto.graph.output] == ["prob", "entropy"]
    ops = {n.op_type for n in proto.graph.node}
    assert "GatherElements" not in ops and "ReduceL2" not in ops  # nothing of the gap computation
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["atool.prototypes"] == "false" and "atool.prototype_source" not in props
    backend = load_backend(plain_onnx)
    assert backend.prototypes is False
    out = backend.infer(np.zeros((1, 40, 64, 3), np.uint8))
    assert set(out) == {"prob", "entropy"}


def _props(outputs: list[str], prototypes: dict | None) -> dict[str, str]:
    return build_metadata(version="0", classes=["a", "b"], mean=[0, 0, 0], std=[1, 1, 1], input_name="image",
                          outputs=outputs, heads=False, source_sha256="x", prototypes=prototypes)


def test_metadata_prototypes_flag_must_agree_with_outputs():
    assert parse_metadata(_props(["prob", "entropy", "gap"], {"dataset": "s"}), "m")["prototypes"] is True
    older = _props(["prob", "entropy"], None)
    del older["atool.prototypes"]  # files exported before the key existed
    assert parse_metadata(older, "m")["prototypes"] is False
    with pytest.raises(BadInput, match="disagrees"):
        parse_metadata(_props(["prob", "entropy", "gap"], None), "m")
    with pytest.raises(BadInput, match="disagrees"):
        parse_metadata(_props(["prob", "entropy"], {"dataset": "s"}), "m")
    with pytest.raises(BadInput, match="atool.prototypes"):
        parse_metadata(dict(older, **{"atool.prototypes": "yes"}), "m")


class _Fake:
    name = "fake"

    def __init__(self, gap_shift: float, flip: bool = False):
        self.classes, self.gap_shift, self.flip = ["a", "b"], gap_shift, flip

    def infer(self, batch):
        n, h, w, _ = batch.shape
        p1 = batch[..., 0].astype(np.float32) / 255.0
        if self.flip:
            p1[:, 0, 0] = 1.0 - p1[:, 0, 0]  # one pixel whose argmax differs
        gap = batch[..., 1].astype(np.float32) / 255.0
        gap[:, 0, 0] += 5.0 * self.flip  # its gap differs too, but only there
        return {"prob": np.stack([p1, 1 - p1], axis=1), "entropy": np.zeros((n, h, w), np.float32), "gap": gap + self.gap_shift}


def test_parity_compares_gap_where_the_argmax_agrees():
    batches = [np.random.default_rng(0).integers(0, 256, (2, 20, 30, 3), dtype=np.uint8)]
    same = compare_backends(_Fake(0.0), _Fake(0.0, flip=True), batches)
    assert same["max_abs_gap_diff"] == 0.0 and same["argmax_disagreements"] >= 1
    off = compare_backends(_Fake(0.0), _Fake(0.01), batches)
    assert off["max_abs_gap_diff"] == pytest.approx(0.01, abs=1e-6)
    with pytest.raises(Failure, match="dgap"):
        check_parity(off)


# --- the domain_gap strategy ---------------------------------------------------------------------


def test_spread_points_apart_and_cover_a_wide_region():
    yy, xx = np.mgrid[0:40, 0:60]
    score = np.exp(-((yy - 20) ** 2 + (xx - 30) ** 2) / 400.0).astype(np.float32)  # one smooth bump
    free = np.ones(score.shape, bool)
    one = spread_points(score, free, 4, 1, np.random.default_rng(0))
    assert one.tolist() == [20 * 60 + 30]  # one round: the peak alone
    many = spread_points(score, free, 4, 4, np.random.default_rng(0))
    assert len(many) > 10 and 20 * 60 + 30 in many.tolist()
    y, x = np.divmod(many, 60)
    cheb = np.maximum(np.abs(y[:, None] - y[None]), np.abs(x[:, None] - x[None]))
    assert (cheb[~np.eye(len(many), dtype=bool)] > 4).all()
    free[18:23, 28:33] = False  # labeled pixels: never taken, never suppress
    held = spread_points(score, free, 4, 1, np.random.default_rng(0))
    assert free.reshape(-1)[held].all() and len(held) >= 1
    hy, hx = np.divmod(held, 60)
    assert (np.maximum(np.abs(hy - 20), np.abs(hx - 30)) <= 4).any()  # the ring next to the labeled block


def test_domain_gap_score_and_params():
    rng = np.random.default_rng(0)
    prob = rng.dirichlet(np.ones(3), size=(16, 24)).transpose(2, 0, 1).astype(np.float32)
    maps = {"prob": prob, "entropy": rng.random((16, 24), dtype=np.float32), "gap": 2 * rng.random((16, 24), dtype=np.float32)}
    for weight in (0.0, 1.0):
        strat = make_strategy("domain_gap", {"radius": 2, "entropy_weight": weight})
        c = strat.candidates(maps, image_rng(0, "a.png"), 20)  # at most 48 points fit 3 px apart in 16 x 24
        want = maps["gap"] * (1 + weight * maps["entropy"])
        np.testing.assert_allclose(c.score, want[c.y, c.x], rtol=1e-6)
        assert len(c) == 20 and np.all(np.diff(c.score) <= 0)
    with pytest.raises(BadInput, match="atool prototypes"):
        make_strategy("domain_gap").candidates({k: maps[k] for k in ("prob", "entropy")}, image_rng(0, "a"), 5)
    for bad in ({"radius": -1}, {"rounds": 0}, {"entropy_weight": -0.5}):
        with pytest.raises(BadInput):
            make_strategy("domain_gap", bad)


@pytest.mark.parametrize("which", ["torch", "onnxruntime"])
def test_query_domain_gap_writes_a_valid_list(which, gap_ckpt, gap_onnx, synth_pair, tmp_path):
    from atool.data.images import read_image

    model = gap_ckpt[0] if which == "torch" else gap_onnx[0]
    images = synth_pair / "target_train" / "images"
    out = tmp_path / "q.json"
    r = run_cli("query", "--model", model, "--images", images, "--budget", "9", "--strategy", "domain_gap",
                "--param", "radius=3", "--out", out)
    assert r.exit_code == 0, r.output
    q = json.loads(out.read_text())
    validate(q, "query-list", "domain_gap list")
    assert q["model"]["backend"] == which and q["budget"]["used"] == 9
    backend = load_backend(model)
    for entry in q["images"]:
        gap = backend.infer(read_image(images / entry["image"])[None])["gap"][0]
        pts = np.array([(p["y"], p["x"]) for p in entry["queries"]])
        for p in entry["queries"]:
            assert p["score"] == pytest.approx(float(gap[p["y"], p["x"]]), abs=1e-5)
        cheb = np.abs(pts[:, None] - pts[None]).max(axis=2)
        assert (cheb[~np.eye(len(pts), dtype=bool)] > 3).all()


@pytest.mark.parametrize("which", ["torch", "onnxruntime"])
def test_query_domain_gap_without_prototypes_says_what_to_run(which, tiny_checkpoint, plain_onnx, synth_pair, tmp_path):
    model = tiny_checkpoint if which == "torch" else plain_onnx
    r = run_cli("query", "--model", model, "--images", synth_pair / "target_train" / "images", "--budget", "5",
                "--strategy", "domain_gap", "--out", tmp_path / "q.json")
    assert_one_line_error(r, 2, contains="atool prototypes")
    assert not (tmp_path / "q.json").exists()
