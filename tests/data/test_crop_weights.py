"""Loss weights of sparse target labels: clicks, pseudo labels and grown regions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atool.core.labels import ORIGIN_EXPANDED, ORIGIN_ORACLE
from atool.data.crops import _click_share
from atool.train.losses import seg_ce


def _two_regions() -> tuple[np.ndarray, np.ndarray]:
    """Class 1: one click grown over 9 more pixels. Class 2: two clicks whose 6-pixel regions touch."""
    label = np.full((8, 12), 255, np.uint8)
    origin = np.zeros((8, 12), np.uint8)
    label[0:2, 0:5], origin[0:2, 0:5] = 1, ORIGIN_EXPANDED
    origin[0, 0] = ORIGIN_ORACLE
    label[5:7, 4:11], origin[5:7, 4:11] = 2, ORIGIN_EXPANDED
    origin[5, 4] = origin[6, 10] = ORIGIN_ORACLE
    return label, origin


def test_click_share_gives_each_grown_region_the_mass_of_its_clicks():
    label, origin = _two_regions()
    share = _click_share(label, origin)
    grown = origin == ORIGIN_EXPANDED
    assert np.isclose(share[grown & (label == 1)].sum(), 1.0)
    assert np.isclose(share[grown & (label == 2)].sum(), 2.0)  # two clicks share one connected region
    assert (share[~grown] == 0).all()
    assert np.allclose(share[grown & (label == 1)], 1.0 / 9)


def test_click_share_splits_touching_regions_of_different_classes():
    label, origin = _two_regions()
    label[2, 0:5], origin[2, 0:5] = 2, ORIGIN_EXPANDED  # class 2 pixels touching the class 1 region, no click
    share = _click_share(label, origin)
    assert np.isclose(share[(origin == ORIGIN_EXPANDED) & (label == 1)].sum(), 1.0)
    # A grown region without a click of its own still weighs like one click, not like one per pixel.
    assert np.isclose(share[2, 0:5].sum(), 1.0)


def test_seg_ce_is_the_weighted_mean():
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 4, 4)
    label = torch.randint(0, 3, (1, 4, 4))
    per_pixel = torch.nn.functional.cross_entropy(logits, label, reduction="none")
    weight = torch.zeros(1, 4, 4)
    weight[0, 0, 0] = 1.0
    weight[0, 1, :] = 0.25  # four grown pixels worth one click in all
    expected = (per_pixel[0, 0, 0] + per_pixel[0, 1, :].sum() * 0.25) / 2.0
    assert torch.isclose(seg_ce(logits, label, weight), expected)
    uniform = torch.ones(1, 4, 4)
    assert torch.isclose(seg_ce(logits, label, uniform), per_pixel.mean())


def test_window_on_labels_holds_a_labelled_pixel():
    from atool.data.crops import _window_on_labels

    weight = np.zeros((64, 96), np.float32)
    weight[3, 90] = 1.0
    weight[60, 2] = 1.0
    rng = np.random.default_rng(0)
    for _ in range(50):
        y0, x0 = _window_on_labels(weight, (16, 24), rng, (0, 0))
        assert 0 <= y0 <= 64 - 16 and 0 <= x0 <= 96 - 24
        assert weight[y0:y0 + 16, x0:x0 + 24].any()
    assert _window_on_labels(np.zeros((8, 8), np.float32), (4, 4), rng, (1, 2)) == (1, 2)


@pytest.mark.parametrize("option,value", [("--grown-weight", "-1"), ("--oracle-weight", "nan"), ("--pseudo-weight", "-0.5")])
def test_negative_or_nan_loss_weights_are_one_line_errors(synth_pair, tmp_path, option, value):
    from conftest import assert_one_line_error, run_cli

    r = run_cli("train", "source", "--source", synth_pair / "source", "--out", tmp_path / "m.pt", option, value,
                "--iters", "1", "--batch-size", "1", "--crop", "64x32")
    assert_one_line_error(r, contains=option.strip("-").replace("-", "_") + " must be >= 0")
    assert not (tmp_path / "m.pt").exists()


def _sparse_folder(root, labels: list[np.ndarray]):
    """A folder dataset of blank images whose label maps are ``labels``."""
    from atool.data.adapters.folder import FolderDataset
    from atool.data.images import write_image, write_label

    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("a\nb\nc\n")
    for i, label in enumerate(labels):
        write_image(root / "images" / f"{i}.png", np.zeros(label.shape + (3,), np.uint8))
        write_label(root / "labels" / f"{i}.png", label)
    return FolderDataset(root)


def test_class_balance_gives_each_class_the_same_total_weight(tmp_path):
    from atool.data.crops import CropDataset

    # 30 labelled pixels of class 0, 6 of class 1, none of class 2.
    first = np.full((16, 16), 255, np.uint8)
    first[0, :10] = 0
    first[5, :6] = 1
    second = np.full((16, 16), 255, np.uint8)
    second[8, :16], second[9, :4] = 0, 0
    folder = _sparse_folder(tmp_path / "t", [first, second])
    plain = CropDataset(folder, (16, 16), flip=False)
    assert plain.class_factors is None
    assert plain.class_counts()[:3].tolist() == [30, 6, 0]
    balanced = CropDataset(folder, (16, 16), flip=False, class_balance=1.0)
    f = balanced.class_factors
    assert f[2] == 0 and f[255] == 0
    assert np.isclose(f[0] * 30, f[1] * 6)  # the same total per class present
    assert np.isclose(f[0] * 30 + f[1] * 6, 36)  # mean weight over labelled pixels stays 1
    half = CropDataset(folder, (16, 16), flip=False, class_balance=0.5).class_factors
    assert np.isclose(half[1] / half[0], np.sqrt(5))
    item = balanced[(0, 0)]
    weight, label = item["weight"].numpy(), item["label"].numpy()
    assert np.allclose(weight[label == 0], f[0]) and np.allclose(weight[label == 1], f[1])
    assert (weight[label == 255] == 0).all()


@pytest.mark.parametrize("value", ["-0.5", "1.5", "nan"])
def test_click_balance_out_of_range_is_a_one_line_error(synth_pair, tmp_path, value):
    from conftest import assert_one_line_error, run_cli

    r = run_cli("train", "source", "--source", synth_pair / "source", "--out", tmp_path / "m.pt", "--click-balance", value,
                "--iters", "1", "--batch-size", "1", "--crop", "64x32")
    assert_one_line_error(r, contains="click_balance must be in [0, 1]")
