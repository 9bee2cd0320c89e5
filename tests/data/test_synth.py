import json
from pathlib import Path

import numpy as np
import pytest

from atool.data.images import read_image, read_label
from atool.data.synth import ROAD, SIDEWALK, SKY, SYNTH_CLASSES, render, render_scene, write_synth_pair
from atool.core.errors import BadInput

SIZE = (64, 32)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _scenes(style: str, n: int, size=(256, 128), split: int = 0):
    return [render_scene(np.random.default_rng([7, split, i]), size[0], size[1], style) for i in range(n)]


def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path):
    a = write_synth_pair(tmp_path / "a", 3, 3, 2, size=SIZE, seed=1)
    b = write_synth_pair(tmp_path / "b", 3, 3, 2, size=SIZE, seed=1)
    assert a == b
    fa, fb = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert fa == fb
    write_synth_pair(tmp_path / "c", 3, 3, 2, size=SIZE, seed=2)
    fc = _files(tmp_path / "c")
    assert fc.keys() == fa.keys()
    images = [k for k in fa if "/images/" in k]
    assert all(fa[k] != fc[k] for k in images)


def test_one_image_regenerates_alone(tmp_path):
    write_synth_pair(tmp_path, 2, 3, 1, size=SIZE, seed=5)
    rgb, label = render_scene(np.random.default_rng([5, 1, 2]), SIZE[0], SIZE[1], "target")
    assert np.array_equal(read_image(tmp_path / "target_train/images/t_00002.png"), rgb)
    assert np.array_equal(read_label(tmp_path / "target_train/oracle_labels/t_00002.png"), label)


def test_layout_dtypes_and_metadata(tmp_path):
    meta = write_synth_pair(tmp_path, n_source=3, n_target=4, size=(96, 48), seed=3)
    expected = {
        "source": ("s", "labels", 3),
        "target_train": ("t", "oracle_labels", 4),
        "target_val": ("v", "labels", 2),  # n_val defaults to n_target // 2
    }
    for split, (prefix, label_dir, n) in expected.items():
        root = tmp_path / split
        assert (root / "classes.txt").read_text().splitlines() == SYNTH_CLASSES
        images = sorted((root / "images").iterdir())
        labels = sorted((root / label_dir).iterdir())
        assert [p.name for p in images] == [f"{prefix}_{i:05d}.png" for i in range(n)]
        assert [p.name for p in labels] == [p.name for p in images]
        for ip, lp in zip(images, labels):
            rgb, label = read_image(ip), read_label(lp)
            assert rgb.shape == (48, 96, 3) and rgb.dtype == np.uint8
            assert label.shape == (48, 96) and label.dtype == np.uint8
            assert label.max() < len(SYNTH_CLASSES)
    assert not (tmp_path / "target_train" / "labels").exists()

    on_disk = json.loads((tmp_path / "synth.json").read_text())
    assert on_disk == meta
    assert meta["seed"] == 3 and meta["size"] == [96, 48]
    assert meta["counts"] == {"source": 3, "target_train": 4, "target_val": 2}
    assert meta["classes"] == SYNTH_CLASSES
    for split in expected:
        freq = meta["splits"][split]["class_frequency"]
        assert list(freq) == SYNTH_CLASSES
        assert sum(freq.values()) == pytest.approx(1.0, abs=1e-4)


def test_rerun_with_fewer_images_drops_the_old_tail(tmp_path):
    write_synth_pair(tmp_path, 3, 2, 1, size=SIZE)
    write_synth_pair(tmp_path, 1, 2, 1, size=SIZE)
    assert sorted(p.name for p in (tmp_path / "source/images").iterdir()) == ["s_00000.png"]
    assert sorted(p.name for p in (tmp_path / "source/labels").iterdir()) == ["s_00000.png"]


def test_render_scene_contract():
    rng = np.random.default_rng(0)
    for style in ("source", "target"):
        rgb, label = render_scene(rng, 128, 64, style)
        assert rgb.shape == (64, 128, 3) and rgb.dtype == np.uint8
        assert label.shape == (64, 128) and label.dtype == np.uint8
        assert label.max() < len(SYNTH_CLASSES)
    with pytest.raises(BadInput):
        render_scene(rng, 128, 64, "cartoon")


def _mean_colour(scenes, cls):
    pix = np.concatenate([rgb[label == cls] for rgb, label in scenes])
    return pix.astype(np.float64).mean(0)


def test_styles_differ():
    src, tgt = _scenes("source", 8), _scenes("target", 8, split=1)
    for cls in (SKY, ROAD):
        gap = np.linalg.norm(_mean_colour(src, cls) - _mean_colour(tgt, cls))
        assert gap > 30, (SYNTH_CLASSES[cls], gap)
    # Source is flat shaded (neighbours on the road mostly identical); target
    # carries texture and sensor noise.
    def flat_share(scenes):
        same = []
        for rgb, label in scenes:
            both = (label[:, 1:] == ROAD) & (label[:, :-1] == ROAD)
            eq = (rgb[:, 1:] == rgb[:, :-1]).all(-1)
            same.append(eq[both].mean())
        return float(np.mean(same))

    assert flat_share(src) > 0.9
    assert flat_share(tgt) < 0.3


@pytest.mark.parametrize("style", ["source", "target"])
def test_every_class_appears(style):
    seen = np.zeros(len(SYNTH_CLASSES), bool)
    for _, label in _scenes(style, 6, split=0 if style == "source" else 1):
        seen[np.unique(label)] = True
    missing = [c for c, s in zip(SYNTH_CLASSES, seen) if not s]
    assert not missing, missing


def test_asphalt_sidewalk_confusion():
    # The designed trap: some target sidewalks look like source road.
    src_road = _mean_colour(_scenes("source", 4), ROAD)
    src_walk = _mean_colour(_scenes("source", 4), SIDEWALK)
    hits = 0
    for i in range(12):
        rgb, label, cond = render(np.random.default_rng([7, 1, i]), 128, 64, "target")
        if cond["asphalt_sidewalk"] and (label == SIDEWALK).any():
            walk = rgb[label == SIDEWALK].astype(np.float64).mean(0)
            hits += np.linalg.norm(walk - src_road) < np.linalg.norm(walk - src_walk)
    assert hits >= 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_source": 0},
        {"n_target": 0},
        {"n_val": 0},
        {"size": (16, 32)},
        {"size": (64, 8)},
        {"size": (72, 32)},
        {"size": (64, 40)},
        {"size": (64,)},
        {"seed": -1},
    ],
)
def test_bad_arguments(tmp_path, kwargs):
    args = {"n_source": 1, "n_target": 1, "size": SIZE}
    args.update(kwargs)
    with pytest.raises(BadInput):
        write_synth_pair(tmp_path / "out", **args)
    assert not (tmp_path / "out").exists()
