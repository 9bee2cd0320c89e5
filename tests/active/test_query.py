"""``atool query`` end to end on a tiny random model and a folder of awkward images."""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from atool.commands.query import command as query_command
from atool.data.images import read_label
from atool.runtime.backends import Backend
from atool.annotate.formats.labelstudio import config_path
from atool.active.query import QueryConfig, run_query
from atool.active.strategies import STRATEGIES
from atool.core.errors import Failure
from atool.core.io import sha256_file
from atool.models import build_model
from atool.core.schemas import validate
from atool.core.checkpoint import save_checkpoint

CLASSES = ["road", "car & truck", "sky <high>"]
GOOD = ["a.png", "b.jpg", "gray.png", "rgba.png", "sixteen.png", "sub/c.png", "sub/deeper/wide.png"]
BAD = ["corrupt.png", "truncated.png", "text.png"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("query")
    torch.manual_seed(0)
    model = root / "model.pt"
    save_checkpoint(
        model, model=build_model("lraspp_mobilenet_v3_small", num_classes=len(CLASSES)),
        model_name="lraspp_mobilenet_v3_small", model_args={}, classes=CLASSES, step=0,
    )
    images = root / "images"
    (images / "sub" / "deeper").mkdir(parents=True)
    rng = np.random.default_rng(0)

    def rgb(h: int, w: int) -> np.ndarray:
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)

    cv2.imwrite(str(images / "a.png"), rgb(32, 64))
    cv2.imwrite(str(images / "b.jpg"), rgb(32, 64))
    cv2.imwrite(str(images / "gray.png"), rgb(32, 64)[:, :, 0])
    cv2.imwrite(str(images / "rgba.png"), np.dstack([rgb(32, 64), np.full((32, 64), 200, np.uint8)]))
    cv2.imwrite(str(images / "sixteen.png"), rng.integers(0, 65536, (32, 64, 3), dtype=np.uint16))
    cv2.imwrite(str(images / "sub" / "c.png"), rgb(32, 64))
    cv2.imwrite(str(images / "sub" / "deeper" / "wide.png"), rgb(64, 128))
    (images / "corrupt.png").write_bytes(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
    png = cv2.imencode(".png", rgb(32, 64))[1].tobytes()
    (images / "truncated.png").write_bytes(png[: len(png) // 2])
    (images / "text.png").write_text("this is not an image\n")
    (images / "notes.txt").write_text("ignored: not an image suffix\n")
    return {"root": root, "model": model, "images": images}


@pytest.fixture(scope="module")
def backend(setup):
    from atool.runtime.backends import load_backend

    return load_backend(setup["model"])


def invoke(args: list[str]):
    return CliRunner().invoke(query_command, [str(a) for a in args])


def check_list(q: dict, images_root: Path) -> None:
    """Every contract of DESIGN.md §3 on a query list."""
    validate(q, "query-list", "query list")
    ids = [p["id"] for e in q["images"] for p in e["queries"]]
    assert len(ids) == len(set(ids)) == q["budget"]["used"]
    assert q["budget"]["used"] <= q["budget"]["points"]
    keys = [(-e["score"], e["image"]) for e in q["images"]]
    assert keys == sorted(keys)
    for e in q["images"]:
        assert (images_root / e["image"]).is_file() and "\\" not in e["image"]
        pts = [(p["y"], p["x"]) for p in e["queries"]]
        assert len(pts) == len(set(pts))
        assert all(0 <= p["x"] < e["width"] and 0 <= p["y"] < e["height"] for p in e["queries"])
        qk = [(-p["score"], p["y"], p["x"]) for p in e["queries"]]
        assert qk == sorted(qk)
        assert e["score"] == max(p["score"] for p in e["queries"])
        assert all(p["predicted"] in q["classes"] for p in e["queries"])


def test_cli_end_to_end_skips_bad_files(setup, tmp_path):
    out = tmp_path / "q.json"
    r = invoke(["--model", setup["model"], "--images", setup["images"], "--budget", 40, "--out", out, "--workers", 2, "--batch-size", 3])
    assert r.exit_code == 0, r.output
    assert "40/40 queries" in r.output and "3 skipped" in r.output
    q = json.loads(out.read_text())
    check_list(q, setup["images"])
    assert sorted(s["image"] for s in q["skipped"]) == sorted(BAD)
    assert all(s["reason"] for s in q["skipped"])
    assert q["stats"]["images_processed"] == len(GOOD)
    assert q["budget"] == {"points": 40, "scope": "total", "used": 40}
    assert q["model"]["sha256"] == sha256_file(setup["model"]) and q["model"]["backend"] == "torch"
    assert q["classes"] == CLASSES
    assert q["strategy"] == {"name": "stratified", "params": {"alpha": 0.5, "colour_levels": 8, "jitter": True, "min_area": 0.002, "rarity": 1.0, "rarity_share": 1.0}, "seed": 0}  # the default
    assert "timings" not in q  # the file is reproducible; timings go to the log and the return value


def test_same_inputs_same_bytes_whatever_the_workers(setup, tmp_path):
    outs = []
    for i, (workers, batch) in enumerate([(0, 4), (3, 4), (1, 1)]):
        out = tmp_path / f"q{i}.json"
        r = invoke(["--model", setup["model"], "--images", setup["images"], "--budget", 25, "--out", out, "--workers", workers, "--batch-size", batch, "--seed", 7])
        assert r.exit_code == 0, r.output
        q = json.loads(out.read_text())
        q.pop("created")
        outs.append(json.dumps(q, sort_keys=True))
    assert outs[0] == outs[1]
    # Batching can change the last bits of a conv on some CPUs; identical here on the reference boxes.
    assert outs[0] == outs[2]


# Strategies that read selector heads need a selector model: tests/active/test_inconsistency.py runs them;
# those that read other outputs (domain_gap: gap) run in their own tests (tests/models/test_domain_gap.py).
@pytest.mark.parametrize("strategy", [n for n in STRATEGIES.names() if not STRATEGIES.get(n).needs_heads and not STRATEGIES.get(n).needs_maps])
def test_every_strategy_total_and_per_image(backend, setup, strategy):
    for per_image, budget in ((False, 17), (True, 6)):
        q = run_query(backend, setup["images"], QueryConfig(budget=budget, per_image=per_image, strategy=strategy, seed=3, workers=1))
        check_list(q, setup["images"])
        processed = q["stats"]["images_processed"]
        if per_image:
            assert q["budget"]["points"] == budget * processed and q["budget"]["per_image"] == budget
            assert all(len(e["queries"]) <= budget for e in q["images"])
        assert set(q["timings"]) >= {"decode", "infer", "select", "write", "total"}


def test_per_image_top_k_is_the_papers_protocol(setup, tmp_path):
    out = tmp_path / "q.json"
    r = invoke(["--model", setup["model"], "--images", setup["images"], "--strategy", "entropy_patch", "--per-image", "--top-k", 3, "--points-per-patch", 4, "--grid", "8x4", "--out", out])
    assert r.exit_code == 0, r.output
    q = json.loads(out.read_text())
    check_list(q, setup["images"])
    assert q["budget"]["per_image"] == 12 and len(q["images"]) == len(GOOD)
    for e in q["images"]:
        scores = [p["score"] for p in e["queries"]]
        assert len(scores) == 12 and len(set(scores)) <= 3  # K = 3 patches of n = 4 points (equal scores may merge)
    bad = invoke(["--model", setup["model"], "--images", setup["images"], "--strategy", "entropy_patch", "--per-image", "--top-k", 3, "--budget", 10, "--out", out])
    assert bad.exit_code == 2 and "disagree" in bad.output


def test_labelstudio_tasks_and_config(setup, tmp_path):
    out = tmp_path / "ls.json"
    r = invoke(["--model", setup["model"], "--images", setup["images"], "--budget", 30, "--format", "labelstudio", "--out", out])
    assert r.exit_code == 0, r.output
    tasks = json.loads(out.read_text())
    assert isinstance(tasks, list) and tasks
    ids = set()
    for task in tasks:
        rel = task["data"]["atool_image"]
        assert task["data"]["image"] == "/data/local-files/?d=" + rel
        h, w = cv2.imread(str(setup["images"] / rel), cv2.IMREAD_UNCHANGED).shape[:2]
        for res in task["predictions"][0]["result"]:
            assert res["type"] == "keypointlabels" and res["from_name"] == "kp" and res["to_name"] == "image"
            assert (res["original_width"], res["original_height"]) == (w, h)
            assert 0 < res["value"]["x"] < 100 and 0 < res["value"]["y"] < 100
            assert res["value"]["keypointlabels"][0] in CLASSES
            ids.add(res["id"])
    assert len(ids) == 30
    xml = config_path(out)
    assert xml.name == "ls.labelconfig.xml"
    tree = ET.parse(xml).getroot()  # escaping of '&' and '<' must keep it well-formed
    assert tree.find("Image").get("value") == "$image"
    kp = tree.find("KeyPointLabels")
    assert kp.get("name") == "kp" and kp.get("toName") == "image"
    assert [lab.get("value") for lab in kp.findall("Label")] == CLASSES


def test_labelstudio_default_out_and_url_prefix(setup, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = invoke(["--model", setup["model"], "--images", setup["images"], "--budget", 5, "--format", "labelstudio", "--image-root-url", "http://host/img/"])
    assert r.exit_code == 0, r.output
    tasks = json.loads((tmp_path / "queries.labelstudio.json").read_text())
    assert all(t["data"]["image"] == "http://host/img/" + t["data"]["atool_image"] for t in tasks)
    assert (tmp_path / "queries.labelstudio.labelconfig.xml").is_file()


@pytest.mark.parametrize("per_image", [False, True])
def test_pseudo_labels_cover_unselected_candidates(backend, setup, tmp_path, per_image):
    pseudo = tmp_path / "pseudo"
    budget = 4 if per_image else 30
    q = run_query(backend, setup["images"], QueryConfig(strategy="entropy_patch", budget=budget, per_image=per_image, pseudo_out=str(pseudo), workers=2, seed=1))
    chosen = {e["image"]: {(p["y"], p["x"]) for p in e["queries"]} for e in q["images"]}
    total = 0
    for rel in GOOD:
        label = read_label(pseudo / Path(rel).with_suffix(".png"))
        h, w = (64, 128) if "wide" in rel else (32, 64)
        assert label.shape == (h, w)
        ys, xs = np.nonzero(label != 255)
        assert set(np.unique(label[ys, xs]).tolist()) <= {0, 1, 2}
        assert not ({(int(y), int(x)) for y, x in zip(ys, xs)} & chosen.get(rel, set()))
        # 16x8 patches x 5 points are drawn per image; all that were not asked become pseudo labels
        assert len(ys) == 16 * 8 * 5 - len(chosen.get(rel, ()))
        total += len(ys)
    assert q["pseudo"]["points"] == total and q["pseudo"]["images"] == len(GOOD)


def test_pseudo_min_confidence_filters(backend, setup, tmp_path):
    pseudo = tmp_path / "pseudo"
    q_all = run_query(backend, setup["images"], QueryConfig(budget=10, pseudo_out=str(tmp_path / "all"), workers=0))
    q = run_query(backend, setup["images"], QueryConfig(budget=10, pseudo_out=str(pseudo), pseudo_min_confidence=0.6, workers=0))
    assert q["pseudo"]["points"] < q_all["pseudo"]["points"]
    q1 = run_query(backend, setup["images"], QueryConfig(budget=10, pseudo_out=str(tmp_path / "none"), pseudo_min_confidence=1.0, workers=0))
    assert q1["pseudo"]["points"] <= q["pseudo"]["points"]


def test_budget_zero_is_an_empty_valid_list(setup, tmp_path):
    out = tmp_path / "q.json"
    r = invoke(["--model", setup["model"], "--images", setup["images"], "--budget", 0, "--out", out])
    assert r.exit_code == 0, r.output
    q = json.loads(out.read_text())
    validate(q, "query-list", "q")
    assert q["images"] == [] and q["budget"]["used"] == 0 and len(q["skipped"]) == len(BAD)


def test_budget_too_large_uses_all_and_warns(backend, setup, caplog):
    with caplog.at_level(logging.WARNING, logger="atool.active.query"):
        q = run_query(backend, setup["images"], QueryConfig(budget=10**6, strategy="entropy", workers=0))
    check_list(q, setup["images"])
    assert 0 < q["budget"]["used"] < q["budget"]["points"] == 10**6
    assert q["budget"]["used"] == q["stats"]["candidates"]
    assert any("candidate points for a budget" in rec.getMessage() for rec in caplog.records)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--budget", "-1"], "budget must be 0 or more"),
        (["--budget", "x"], "Invalid value for '--budget'"),
        (["--budget", "5", "--strategy", "nope"], "Invalid value for '--strategy'"),
        (["--budget", "5", "--param", "radius"], "KEY=VALUE"),
        (["--budget", "5", "--param", "radius=2"], "no parameter radius"),
        (["--budget", "5", "--strategy", "random", "--grid", "4x4"], "belong to --strategy entropy_patch"),
        (["--budget", "5", "--grid", "4x"], "Invalid value for '--grid'"),
        (["--budget", "5", "--batch-size", "0"], "batch size"),
        (["--budget", "5", "--pseudo-min-confidence", "2"], "[0, 1]"),
        (["--budget", "5", "--format", "cvat9"], "Invalid value for '--format'"),
        ([], "give --budget"),
    ],
)
def test_bad_input_is_exit_2_one_line(setup, tmp_path, args, message):
    r = invoke(["--model", setup["model"], "--images", setup["images"], "--out", tmp_path / "q.json"] + args)
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("atool: error: ") and message in lines[0], r.output
    assert "Traceback" not in r.output


def test_bad_paths_are_exit_2(setup, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.png").write_text("no")
    not_model = tmp_path / "model.txt"
    not_model.write_text("x")
    cases = [
        (["--model", tmp_path / "missing.pt", "--images", setup["images"]], "not found"),
        (["--model", not_model, "--images", setup["images"]], "suffix"),
        (["--model", setup["model"], "--images", tmp_path / "nowhere"], "does not exist"),
        (["--model", setup["model"], "--images", empty], "holds no images"),
        (["--model", setup["model"], "--images", only_bad], "could be read"),
    ]
    for args, message in cases:
        r = invoke(args + ["--budget", 3, "--out", tmp_path / "q.json"])
        lines = r.output.strip().splitlines()
        assert r.exit_code == 2 and len(lines) == 1 and message in lines[0], r.output


class _PickyBackend(Backend):
    """A stand-in backend that fails on one image size, to check a bad batch is skipped, not fatal."""

    name = "picky"
    heads = False

    def __init__(self, path: Path, fail_width: int):
        self.path, self.fail_width, self.classes = path, fail_width, ["a", "b"]

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if batch.shape[2] == self.fail_width:
            raise RuntimeError("input too small for the network\nsecond line")
        n, h, w, _ = batch.shape
        p0 = (batch[..., 0].astype(np.float32) + 1) / 258.0
        prob = np.stack([p0, 1 - p0], axis=1)
        ent = -(prob * np.log(prob)).sum(1) / np.log(2)
        return {"prob": prob, "entropy": ent.astype(np.float32)}


def test_inference_failure_skips_those_images(setup):
    q = run_query(_PickyBackend(setup["model"], 128), setup["images"], QueryConfig(budget=10, workers=1))
    check_list(q, setup["images"])
    failed = [s for s in q["skipped"] if s["reason"].startswith("inference failed")]
    assert [s["image"] for s in failed] == ["sub/deeper/wide.png"]
    assert "\n" not in failed[0]["reason"]
    with pytest.raises(Failure, match="inference failed on every readable image"):
        run_query(_PickyBackend(setup["model"], 128), setup["images"] / "sub" / "deeper", QueryConfig(budget=10, workers=0))


def test_query_runs_on_an_exported_onnx_model(setup, tmp_path):
    """`atool query` needs nothing but the model file: an .onnx export gives the same points."""
    pytest.importorskip("onnxruntime")
    from atool.export.onnx import export_onnx

    onnx_path = tmp_path / "model.onnx"
    export_onnx(setup["model"], onnx_path, sample_size=(64, 32))
    q_onnx = run_query(onnx_path, setup["images"], QueryConfig(budget=20, workers=0))
    q_torch = run_query(setup["model"], setup["images"], QueryConfig(budget=20, workers=0))
    check_list(q_onnx, setup["images"])
    assert q_onnx["model"]["backend"] == "onnxruntime" and q_onnx["classes"] == CLASSES
    # The runtimes agree to ~1e-6 and positions come from the seed, so the same patches win;
    # allow a near-tie at the budget's edge to flip on other CPUs.
    def points(q):
        return {(e["image"], p["x"], p["y"]) for e in q["images"] for p in e["queries"]}

    assert len(points(q_onnx) & points(q_torch)) >= 15


def _without_created(path: Path) -> str:
    q = json.loads(path.read_text())
    q.pop("created")
    return json.dumps(q, sort_keys=True)


def test_config_yaml_gives_the_same_list_as_the_options(setup, tmp_path):
    preset = tmp_path / "q.yaml"
    preset.write_text("strategy: entropy\nparams: {radius: 2}\nbudget: 4\nper_image: true\nseed: 5\nworkers: 0\n")
    by_options = ["--strategy", "entropy", "--param", "radius=2", "--budget", 4, "--per-image", "--seed", 5, "--workers", 0]
    base = ["--model", setup["model"], "--images", setup["images"]]
    assert invoke(base + by_options + ["--out", tmp_path / "a.json"]).exit_code == 0
    r = invoke(base + ["--config", preset, "--out", tmp_path / "b.json"])
    assert r.exit_code == 0, r.output
    assert _without_created(tmp_path / "a.json") == _without_created(tmp_path / "b.json")
    # Options given on the command line win over the YAML; the rest of the YAML still holds.
    c_options = ["--strategy", "entropy", "--param", "radius=3", "--budget", 4, "--per-image", "--seed", 6, "--workers", 0]
    assert invoke(base + c_options + ["--out", tmp_path / "c.json"]).exit_code == 0
    r = invoke(base + ["--config", preset, "--seed", 6, "--param", "radius=3", "--out", tmp_path / "d.json"])
    assert r.exit_code == 0, r.output
    assert _without_created(tmp_path / "c.json") == _without_created(tmp_path / "d.json")
    assert _without_created(tmp_path / "c.json") != _without_created(tmp_path / "a.json")
    q = json.loads((tmp_path / "d.json").read_text())
    assert q["strategy"]["seed"] == 6 and q["strategy"]["params"]["radius"] == 3 and q["budget"]["per_image"] == 4


@pytest.mark.parametrize("text, message", [
    ("budgte: 4\n", "unknown query config key(s) budgte (did you mean budget?)"), ("budget: four\n", "budget must be int"),
    ("params: [1]\n", "params must be a mapping"), ("top_k: 2\nbudget: 3\n", "--top-k counts patches per image"),
    ("strategy: nope\nbudget: 3\n", "unknown selection strategy 'nope'"), ("format: cvat9\nbudget: 3\n", "unknown query-list format 'cvat9'"),
])
def test_config_yaml_bad_keys_are_one_line(setup, tmp_path, text, message):
    preset = tmp_path / "bad.yaml"
    preset.write_text(text)
    r = invoke(["--model", setup["model"], "--images", setup["images"], "--config", preset, "--out", tmp_path / "q.json"])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and message in lines[0], r.output
    assert not (tmp_path / "q.json").exists()


def test_format_checks_fail_before_the_query_runs(tmp_path):
    """A region strategy with a point-only format fails before the model or the images are even opened."""
    from atool.workflows.query import QueryConfig, check_format, query_to_file
    from atool.core.errors import BadInput

    cfg = QueryConfig(strategy="inconsistency_spl", budget=3)
    with pytest.raises(BadInput, match=r"writes region queries, which only the .*json.* carr"):
        query_to_file(tmp_path / "missing.pt", tmp_path / "nowhere", cfg, tmp_path / "q.json", "labelstudio")
    with pytest.raises(BadInput, match="takes no option image_root_url"):
        query_to_file(tmp_path / "missing.pt", tmp_path / "nowhere", QueryConfig(budget=3), tmp_path / "q.json", "json",
                      {"image_root_url": "http://x/"})
    check_format(cfg, "json")
    r = invoke(["--model", tmp_path / "missing.pt", "--images", tmp_path, "--budget", 3, "--strategy", "inconsistency_spl",
                "--format", "labelstudio"])
    assert r.exit_code == 2 and "writes region queries, which only the" in r.output and "json" in r.output, r.output


def test_logged_query_command_writes_what_query_to_file_writes(setup, tmp_path):
    """Workflows log `query_command(...)`; running that line gives the same file."""
    import shlex

    from atool.workflows.query import QueryConfig, query_command, query_to_file

    cfg = QueryConfig(strategy="entropy", params={"radius": 1}, budget=7, per_image=True, seed=2, workers=0,
                      pseudo_out=str(tmp_path / "pseudo a"))
    result = query_to_file(setup["model"], setup["images"], cfg, tmp_path / "a.json")
    assert result["written"] == [str(tmp_path / "a.json")] and result["timings"]["total"] >= result["timings"]["write"]
    assert "timings" not in json.loads((tmp_path / "a.json").read_text())
    words = shlex.split(query_command(setup["model"], setup["images"], cfg, tmp_path / "b.json"))
    assert words[:2] == ["atool", "query"]
    assert invoke(words[2:]).exit_code == 0
    assert _without_created(tmp_path / "a.json") == _without_created(tmp_path / "b.json")


def test_decode_threads_default_to_half_the_cores_within_2_to_8():
    from atool.active.query_config import QueryConfig, default_decode_workers

    assert [default_decode_workers(n) for n in (1, 2, 4, 16, 64)] == [2, 2, 2, 8, 8]
    assert QueryConfig().workers == default_decode_workers()


def test_large_lists_are_checked_on_a_spread_sample(tmp_path):
    """Above SCHEMA_CHECK_QUERIES the self-check covers the header and 32 entries, first and last among them."""
    from atool.active.query_list import SCHEMA_CHECK_QUERIES, budget_block, make_query_list, schema_sample

    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")

    def entry(i: int, bad: bool = False) -> dict:
        queries = [{"id": f"q{i:04d}{k:02d}", "kind": "point", "x": k, "y": 0, "score": 0.5, "predicted": "a"} for k in range(50)]
        if bad:
            queries[0]["x"] = -1
        return {"image": f"img{i:04d}.png", "width": 64, "height": 8, "score": 0.5, "queries": queries}

    n = SCHEMA_CHECK_QUERIES // 50 + 20
    entries = [entry(i) for i in range(n)]
    kwargs = dict(model_path=model, backend_name="torch", classes=["a", "b"], strategy="random", params={}, seed=0,
                  budget=budget_block(50, True, n, entries, None, 0), skipped=[], stats={"images_found": n, "images_processed": n,
                                                                              "candidates": 50 * n, "excluded_pixels": 0})
    q = make_query_list(entries=entries, **kwargs)
    sample = schema_sample(q)["images"]
    assert len(sample) == 32 and sample[0] is entries[0] and sample[-1] is entries[-1] and q["images"] is entries
    small = entries[:3]
    assert schema_sample(dict(q, images=small))["images"] is small
    with pytest.raises(Failure, match="query-list schema"):
        make_query_list(entries=entries[:-1] + [entry(n - 1, bad=True)], **kwargs)
