"""GTA5, SYNTHIA and Cityscapes adapters, the 19/16/13 class sets, open_dataset, and
equality of atool's mIoU with the official cityscapesscripts evaluation.

Every fixture is written at test time in the datasets' real layouts (tiny images).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from atool.data.adapters.cityscapes import CityscapesDataset
from atool.data.adapters.cityscapes_classes import CLASSES_13, CLASSES_16, CLASSES_19, class_index_to_labelid, class_set_of, cityscapes_id_lut
from atool.data.adapters.registry import DATASETS, detect_kind, open_dataset
from atool.data.adapters.folder import FolderDataset
from atool.data.adapters.gta5 import GTA5Dataset
from atool.data.adapters.synthia import SynthiaDataset, synthia_trainid_lut
from atool.core.errors import BadInput, Mismatch, UnknownName
from atool.eval.evaluate import SegMetrics, evaluate
from conftest import assert_one_line_error, run_cli

W, H = 32, 16
# Cityscapes ids and trainIds (official table), a few for hand checks
ROAD, SIDEWALK, WALL, TERRAIN, SKY, TRUCK, TRAIN, BICYCLE, UNLABELED, LICENSE_AREA = 7, 8, 12, 22, 23, 27, 31, 33, 0, 6


def _rgb(rng: np.random.Generator, w: int = W, h: int = H) -> np.ndarray:
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write_png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", arr)
    assert ok
    path.write_bytes(buf.tobytes())


def _ids_image(rng: np.random.Generator, w: int = W, h: int = H) -> np.ndarray:
    """Cityscapes label ids 0..33: every train class and some void ids."""
    return rng.integers(0, 34, (h, w), dtype=np.uint8)


@pytest.fixture()
def gta5_root(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "GTA5"
    for i in range(3):
        _write_png(root / "images" / f"{i:05d}.png", _rgb(rng))
        ids = _ids_image(rng)
        if i == 1:  # GTA5 ships palette PNGs: their indices are the ids
            (root / "labels").mkdir(parents=True, exist_ok=True)
            im = Image.fromarray(ids, mode="P")
            im.putpalette([v for k in range(256) for v in (k, 255 - k, (7 * k) % 256)])
            im.save(root / "labels" / f"{i:05d}.png")
        else:
            _write_png(root / "labels" / f"{i:05d}.png", ids)
    return root


def _synthia_label(ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """16-bit BGR as OpenCV writes it: class id in R (channel 2), an instance id in G."""
    out = np.zeros(ids.shape + (3,), np.uint16)
    out[:, :, 2] = ids
    out[:, :, 1] = rng.integers(0, 3000, ids.shape)
    return out


@pytest.fixture()
def synthia_root(tmp_path) -> Path:
    rng = np.random.default_rng(1)
    root = tmp_path / "RAND_CITYSCAPES"
    for i in range(3):
        _write_png(root / "RGB" / f"{i:07d}.png", _rgb(rng))
        _write_png(root / "GT" / "LABELS" / f"{i:07d}.png", _synthia_label(rng.integers(0, 23, (H, W)).astype(np.uint16), rng))
    return root


def _write_cityscapes(root: Path, split: str, rng: np.random.Generator, n: int = 4, size=(W, H)) -> list[Path]:
    """Cityscapes layout; returns the gtFine label files written."""
    gts = []
    for i in range(n):
        city = ("aachen", "bremen")[i % 2]
        name = f"{city}_{i:06d}_000019"
        _write_png(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", _rgb(rng, *size))
        gt = root / "gtFine" / split / city / f"{name}_gtFine_labelIds.png"
        _write_png(gt, _ids_image(rng, *size))
        gts.append(gt)
    return gts


@pytest.fixture()
def cityscapes_root(tmp_path) -> Path:
    root = tmp_path / "cityscapes"
    _write_cityscapes(root, "val", np.random.default_rng(2))
    _write_cityscapes(root, "train", np.random.default_rng(3), n=2)
    return root


# ---------------------------------------------------------------- class sets


def test_class_sets_come_from_cityscapesscripts():
    from cityscapesscripts.helpers.labels import trainId2label

    assert CLASSES_19 == [trainId2label[t].name for t in range(19)]
    assert len(CLASSES_16) == 16 and not {"terrain", "truck", "train"} & set(CLASSES_16)
    assert len(CLASSES_13) == 13 and not {"wall", "fence", "pole"} & set(CLASSES_13)
    assert [c for c in CLASSES_19 if c in CLASSES_13] == CLASSES_13  # order kept
    assert class_set_of(CLASSES_16) == 16 and class_set_of(["a"]) is None


def test_cityscapes_id_tables():
    lut19, lut16, lut13 = (cityscapes_id_lut(n) for n in (19, 16, 13))
    assert all(t.dtype == np.uint8 and t.shape == (256,) for t in (lut19, lut16, lut13))
    assert lut19[ROAD] == 0 and lut19[BICYCLE] == 18 and lut19[TERRAIN] == 9 and lut19[UNLABELED] == 255
    assert lut19[LICENSE_AREA] == 255 and lut19[200] == 255
    assert lut16[TERRAIN] == 255 and lut16[TRUCK] == 255 and lut16[TRAIN] == 255
    assert lut16[SKY] == CLASSES_16.index("sky") and lut16[BICYCLE] == 15
    assert lut13[WALL] == 255 and lut13[SKY] == CLASSES_13.index("sky") and lut13[BICYCLE] == 12
    assert sorted(set(lut19.tolist()) - {255}) == list(range(19))
    # writing predictions as label ids inverts the table
    back = class_index_to_labelid(19)
    assert all(lut19[back[t]] == t for t in range(19))


def test_synthia_table():
    lut = synthia_trainid_lut()
    assert lut[3] == CLASSES_19.index("road") and lut[1] == CLASSES_19.index("sky")
    assert lut[10] == CLASSES_19.index("person") and lut[21] == CLASSES_19.index("wall")
    assert lut[0] == lut[13] == lut[14] == lut[22] == 255
    assert sorted(set(lut.tolist()) - {255}) == list(range(19))


# ---------------------------------------------------------------- adapters


def test_gta5_maps_ids_and_palette(gta5_root):
    ds = GTA5Dataset(gta5_root, require_labels=True)
    assert ds.classes == CLASSES_19 and ds.num_classes == 19 and len(ds) == 3 and ds.labeled_count() == 3
    assert [sid for sid, _, _ in ds.items] == ["00000", "00001", "00002"]
    for i in range(3):
        s = ds.load(i)
        raw = np.array(Image.open(ds.items[i][2]))
        assert s.image.shape == (H, W, 3) and s.image.dtype == np.uint8
        assert s.label.dtype == np.uint8 and np.array_equal(s.label, cityscapes_id_lut(19)[raw])
    assert ds.check_all() == []
    s16 = GTA5Dataset(gta5_root, class_set=16).load(1)
    raw = np.array(Image.open(ds.items[1][2]))
    assert np.array_equal(s16.label, cityscapes_id_lut(16)[raw]) and s16.label[raw == TERRAIN].tolist() == [255] * int((raw == TERRAIN).sum())
    assert GTA5Dataset(gta5_root, class_set=13).classes == CLASSES_13


def test_synthia_maps_r_channel(synthia_root):
    ds = SynthiaDataset(synthia_root, class_set=16, require_labels=True)
    assert ds.classes == CLASSES_16 and len(ds) == 3
    s = ds.load(0)
    raw = cv2.imread(str(ds.items[0][2]), cv2.IMREAD_UNCHANGED)[:, :, 2]
    expect = np.array([CLASSES_16.index(CLASSES_19[t]) if t != 255 and CLASSES_19[t] in CLASSES_16 else 255
                       for t in synthia_trainid_lut()[raw.ravel()]], np.uint8).reshape(raw.shape)
    assert np.array_equal(s.label, expect)
    assert (s.label[raw == 3] == CLASSES_16.index("road")).all() and (s.label[raw == 16] == 255).all()  # terrain not in 16


def test_synthia_8bit_label_is_bad_input(synthia_root):
    first = sorted((synthia_root / "GT" / "LABELS").iterdir())[0]
    _write_png(first, np.full((H, W), 3, np.uint8))
    ds = SynthiaDataset(synthia_root)
    with pytest.raises(BadInput, match="SYNTHIA labels are 16-bit"):
        ds.load(0)
    assert [sid for sid, _ in ds.check_all()] == [first.stem]


def test_cityscapes_split_and_mapping(cityscapes_root):
    ds = CityscapesDataset(cityscapes_root, split="val", require_labels=True)
    assert len(ds) == 4 and ds.items[0][0] == "aachen/aachen_000000_000019_leftImg8bit"
    assert ds.items[0][2].name == "aachen_000000_000019_gtFine_labelIds.png"
    s = ds.load(0)
    raw = cv2.imread(str(ds.items[0][2]), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(s.label, cityscapes_id_lut(19)[raw])
    assert len(CityscapesDataset(cityscapes_root, split="train")) == 2
    with pytest.raises(BadInput, match="no split 'test'; found: train, val"):
        CityscapesDataset(cityscapes_root, split="test")


def test_missing_pairs_are_bad_input(gta5_root, cityscapes_root):
    (gta5_root / "labels" / "00001.png").unlink()
    with pytest.raises(BadInput, match=r"1 of 3 images .* no label .*first: 00001\.png"):
        GTA5Dataset(gta5_root, require_labels=True)
    assert GTA5Dataset(gta5_root).labeled_count() == 2  # a pool may lack labels
    next((cityscapes_root / "gtFine" / "val" / "bremen").iterdir()).unlink()
    with pytest.raises(BadInput, match=r"1 of 4 images .*first: bremen/bremen_\d+_000019_gtFine_labelIds\.png"):
        open_dataset(f"cityscapes:{cityscapes_root}", require_labels=True)


def test_size_mismatch(gta5_root, synthia_root):
    _write_png(gta5_root / "labels" / "00002.png", np.zeros((H, W + 2), np.uint8))
    with pytest.raises(Mismatch, match="must match"):
        GTA5Dataset(gta5_root).load(2)
    _write_png(synthia_root / "GT" / "LABELS" / "0000000.png", np.zeros((H + 1, W, 3), np.uint16))
    with pytest.raises(Mismatch):
        SynthiaDataset(synthia_root).load(0)


def test_external_labels_are_class_indices(gta5_root, tmp_path):
    ext = tmp_path / "sparse"
    _write_png(ext / "00000.png", np.full((H, W), 4, np.uint8))
    ds = GTA5Dataset(gta5_root, labels=ext, class_set=16)
    assert ds.labeled_count() == 1 and (ds.load(0).label == 4).all()
    _write_png(ext / "00000.png", np.full((H, W), 17, np.uint8))
    with pytest.raises(BadInput, match="outside the 16 classes of the 16-class set"):
        ds.load(0)


def test_class_set_checks(gta5_root):
    with pytest.raises(BadInput, match="not one of 19, 16, 13"):
        GTA5Dataset(gta5_root, class_set=17)
    assert GTA5Dataset(gta5_root, classes=CLASSES_13).class_set == 13
    with pytest.raises(Mismatch):
        GTA5Dataset(gta5_root, classes=CLASSES_13, class_set=19)
    with pytest.raises(Mismatch, match="none of the Cityscapes class sets"):
        GTA5Dataset(gta5_root, classes=["a", "b"])


# ---------------------------------------------------------------- open_dataset


def test_detect_and_prefix(gta5_root, synthia_root, cityscapes_root, synth_pair):
    assert set(DATASETS.names()) == {"folder", "gta5", "synthia", "cityscapes"}
    assert detect_kind(gta5_root) == "gta5" and detect_kind(synthia_root) == "synthia"
    assert detect_kind(cityscapes_root) == "cityscapes" and detect_kind(synth_pair / "source") == "folder"
    assert type(open_dataset(gta5_root, class_set=16)) is GTA5Dataset
    assert type(open_dataset(str(synthia_root))) is SynthiaDataset
    cs = open_dataset(f"cityscapes:{cityscapes_root}", require_labels=True)
    assert type(cs) is CityscapesDataset and cs.split == "val"
    assert open_dataset(f"cityscapes:{cityscapes_root}").split == "train"  # a pool
    assert type(open_dataset(f"folder:{synth_pair / 'source'}")) is FolderDataset
    # GTA5 files read as a generic folder when asked to
    (gta5_root / "classes.txt").write_text("\n".join(CLASSES_19) + "\n")
    assert detect_kind(gta5_root) == "folder" and type(open_dataset(f"gta5:{gta5_root}")) is GTA5Dataset
    with pytest.raises(UnknownName, match="cityscapes, folder, gta5, synthia"):
        open_dataset(f"kitti:{gta5_root}")


def test_loop_style_target_without_classes_txt(tmp_path):
    """A target pool of images/ only, with the class list from the caller, stays a folder dataset."""
    rng = np.random.default_rng(4)
    _write_png(tmp_path / "pool" / "images" / "a.png", _rgb(rng))
    ds = open_dataset(tmp_path / "pool", classes=["x", "y"])
    assert type(ds) is FolderDataset and ds.classes == ["x", "y"] and ds.labeled_count() == 0


def test_unknown_and_ambiguous_layouts(tmp_path, synthia_root):
    (tmp_path / "odd" / "stuff").mkdir(parents=True)
    with pytest.raises(BadInput, match="matches no known layout; prefix the path with its kind") as exc:
        open_dataset(tmp_path / "odd")
    assert "\n" not in str(exc.value) and "synthia (RGB/, GT/LABELS/)" in str(exc.value)
    (synthia_root / "leftImg8bit").mkdir()
    with pytest.raises(BadInput, match=r"several layouts \(synthia, cityscapes\)"):
        open_dataset(synthia_root)
    with pytest.raises(BadInput, match="does not exist"):
        open_dataset(tmp_path / "nope")


# ---------------------------------------------------------------- metrics


def test_subset_mious():
    rng = np.random.default_rng(5)
    m = rng.integers(0, 50, (19, 19))
    s = SegMetrics(list(CLASSES_19), m)
    iou = dict(zip(CLASSES_19, s.iou))
    assert np.isclose(s.subset_mious()["miou_16"], np.mean([iou[c] for c in CLASSES_16]))
    assert np.isclose(s.subset_mious()["miou_13"], np.mean([iou[c] for c in CLASSES_13]))
    d = s.as_dict()
    assert d["miou_13"] == round(s.miou_over(CLASSES_13) * 100, 2) and "mIoU-13" in s.table()
    s16 = SegMetrics(list(CLASSES_16), rng.integers(0, 50, (16, 16)))
    assert set(s16.subset_mious()) == {"miou_16", "miou_13"} and np.isclose(s16.subset_mious()["miou_16"], s16.miou)
    assert SegMetrics(["a", "b"], np.eye(2, dtype=int)).subset_mious() == {}
    # a class predicted but absent from the labels counts as 0; absent from both, left out
    s = SegMetrics(["a", "b", "c"], np.array([[2, 2, 0], [0, 0, 0], [0, 0, 0]]))
    assert np.isclose(s.miou, 0.25)


def _official_miou(pred_files: list[Path], gt_files: list[Path]) -> dict:
    import cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling as official

    args = official.args
    args.evalInstLevelScore = False
    args.evalPixelAccuracy = False
    args.JSONOutput = False
    args.quiet = True
    return official.evaluateImgLists([str(p) for p in pred_files], [str(p) for p in gt_files], args)


def test_miou_equals_official_cityscapes_evaluation(tmp_path):
    rng = np.random.default_rng(6)
    root = tmp_path / "cs"
    gts = _write_cityscapes(root, "val", rng, n=4)
    ds = CityscapesDataset(root, split="val", require_labels=True)
    # predictions in trainIds: never 'train' (absent from both when the labels lack it too),
    # 'truck' where the ground truth has none of it (predicted, absent: IoU 0), else noisy copies
    to_id = class_index_to_labelid(19)
    preds, pred_files = {}, []
    for i, (sid, _, gt_path) in enumerate(ds.items):
        s = ds.load(i)
        pred = np.where(s.label == 255, rng.integers(0, 19, s.label.shape), s.label).astype(np.uint8)
        noise = rng.random(pred.shape) < 0.4
        pred[noise] = rng.integers(0, 19, int(noise.sum()))
        pred[pred == CLASSES_19.index("train")] = CLASSES_19.index("road")
        preds[hashlib.sha1(s.image.tobytes()).hexdigest()] = pred
        out = tmp_path / "pred" / f"{Path(sid).name.replace('_leftImg8bit', '')}_pred_labelIds.png"
        _write_png(out, to_id[pred])
        pred_files.append(out)
    # make 'train' absent from the ground truth and 'truck' absent but predicted
    for gt in gts:
        ids = cv2.imread(str(gt), cv2.IMREAD_UNCHANGED)
        ids[(ids == TRAIN) | (ids == TRUCK)] = ROAD
        _write_png(gt, ids)

    metrics = evaluate(lambda batch: np.stack([preds[hashlib.sha1(b.tobytes()).hexdigest()] for b in batch]), ds, 3)
    official = _official_miou(pred_files, [p for _, _, p in ds.items])
    ours = dict(zip(CLASSES_19, metrics.iou))
    assert np.isnan(ours["train"]) and ours["truck"] == 0.0  # both conventions exercised
    for name in CLASSES_19:
        a, b = ours[name], official["classScores"][name]
        assert (np.isnan(a) and np.isnan(b)) or a == pytest.approx(b, abs=1e-12), name
    assert metrics.miou == pytest.approx(official["averageScoreClasses"], abs=1e-12)
    (tmp_path / "equality.json").write_text(json.dumps({"atool": metrics.miou, "official": official["averageScoreClasses"]}))


# ---------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def cs19_checkpoint(tmp_path_factory) -> Path:
    import torch

    from atool.models import build_model
    from atool.core.checkpoint import save_checkpoint

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt19") / "cs19.pt"
    model = build_model("lraspp_mobilenet_v3_small", num_classes=19)
    save_checkpoint(path, model=model, model_name="lraspp_mobilenet_v3_small", model_args={}, classes=CLASSES_19, step=0)
    return path


def test_eval_cli_on_cityscapes(tmp_path, cs19_checkpoint):
    root = tmp_path / "cs"
    _write_cityscapes(root, "val", np.random.default_rng(7), n=2, size=(64, 32))
    r = run_cli("eval", "--checkpoint", cs19_checkpoint, "--data", f"cityscapes:{root}", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["images"] == 2 and set(out["iou"]) == set(CLASSES_19)
    assert {"miou", "miou_16", "miou_13"} <= set(out)
    r = run_cli("eval", "--checkpoint", cs19_checkpoint, "--data", root)  # auto-detected
    assert r.exit_code == 0, r.output
    assert "mIoU-16" in r.output and "mIoU-13" in r.output
    assert_one_line_error(
        run_cli("eval", "--checkpoint", cs19_checkpoint, "--data", f"cityscapes:{root}", "--class-set", "16"), 2, "class lists differ"
    )
    assert_one_line_error(run_cli("eval", "--checkpoint", cs19_checkpoint, "--data", tmp_path), 2, "no known layout")


def test_eval_cli_8bit_synthia_labels_exit_2(synthia_root, cs19_checkpoint):
    for path in (synthia_root / "GT" / "LABELS").iterdir():
        _write_png(path, np.full((H, W), 3, np.uint8))
    r = run_cli("eval", "--checkpoint", cs19_checkpoint, "--data", synthia_root)
    assert_one_line_error(r, 2, "SYNTHIA labels are 16-bit")


def test_train_cli_reads_gta5_source_and_cityscapes_target(tmp_path, gta5_root):
    cs = tmp_path / "cs"
    _write_cityscapes(cs, "train", np.random.default_rng(3), n=2)
    out = tmp_path / "advent.pt"
    args = ("--source", f"gta5:{gta5_root}", "--target", f"cityscapes:{cs}", "--out", out, "--iters", "2", "--batch-size", "2", "--crop", "32x16")
    r = run_cli("train", "minent", *args)
    assert r.exit_code == 0, r.output
    import torch

    ckpt = torch.load(out, weights_only=True, map_location="cpu")
    assert list(ckpt["classes"]) == CLASSES_19
    # 32x16 images are too small for ADVENT's discriminator: one line, not a conv error.
    assert_one_line_error(run_cli("train", "advent", *args[:-2], "--crop", "32x16"), 2, "at least 32x32")
