"""Decoding odd images and the folder dataset's checks."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from atool.data.adapters.folder import FolderDataset, read_classes
from atool.data.images import BadImage, list_images, read_image, read_label, write_label
from atool.core.errors import BadInput, Mismatch


def test_read_image_converts_gray_rgba_and_16bit(tmp_path):
    gray = (np.arange(32 * 16) % 256).astype(np.uint8).reshape(16, 32)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    rgba = np.zeros((16, 32, 4), np.uint8)
    rgba[..., 0] = 10  # B
    rgba[..., 2] = 200  # R
    rgba[..., 3] = 7
    cv2.imwrite(str(tmp_path / "a.png"), rgba)
    deep = np.full((16, 32, 3), 40000, np.uint16)
    cv2.imwrite(str(tmp_path / "d.png"), deep)

    g = read_image(tmp_path / "g.png")
    assert g.shape == (16, 32, 3) and g.dtype == np.uint8 and (g[..., 0] == gray).all()
    a = read_image(tmp_path / "a.png")
    assert a.shape == (16, 32, 3) and a[0, 0].tolist() == [200, 0, 10]  # RGB order, alpha dropped
    d = read_image(tmp_path / "d.png")
    assert d.dtype == np.uint8 and d[0, 0, 0] == 40000 >> 8


@pytest.mark.parametrize("content", [b"", b"not an image at all", None])
def test_read_image_rejects_bad_files(tmp_path, content):
    path = tmp_path / "bad.png"
    if content is None:  # truncated PNG
        cv2.imwrite(str(path), np.zeros((64, 64, 3), np.uint8) + 77)
        path.write_bytes(path.read_bytes()[:40])
    else:
        path.write_bytes(content)
    with pytest.raises(BadImage):
        read_image(path)


def test_read_label_must_be_8bit_single_channel(tmp_path):
    cv2.imwrite(str(tmp_path / "l16.png"), np.zeros((8, 8), np.uint16))
    cv2.imwrite(str(tmp_path / "rgb.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(BadImage, match="8-bit"):
        read_label(tmp_path / "l16.png")
    with pytest.raises(BadImage, match="single-channel"):
        read_label(tmp_path / "rgb.png")


def test_list_images_is_recursive_sorted_and_skips_hidden(tmp_path):
    for rel in ["b/2.jpg", "a/1.png", "c.tif", ".hidden/x.png", "notes.txt", "d.BMP"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    names = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert names == ["a/1.png", "b/2.jpg", "c.tif", "d.BMP"]


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(BadInput, match="does not exist"):
        list_images(tmp_path / "nope")
    with pytest.raises(BadInput, match="does not exist"):
        FolderDataset(tmp_path / "nope")
    (tmp_path / "ds" / "images").mkdir(parents=True)
    (tmp_path / "ds" / "classes.txt").write_text("a\nb\n")
    with pytest.raises(BadInput, match="holds no images"):
        FolderDataset(tmp_path / "ds")


def test_classes_file_checks(tmp_path):
    (tmp_path / "c.txt").write_text("road\nroad\n")
    with pytest.raises(BadInput, match="repeat"):
        read_classes(tmp_path / "c.txt")
    (tmp_path / "c.txt").write_text("\n\n")
    with pytest.raises(BadInput, match="no classes"):
        read_classes(tmp_path / "c.txt")
    (tmp_path / "c.txt").write_text("road\nsky\n\n")
    assert read_classes(tmp_path / "c.txt") == ["road", "sky"]


def _copy_pair(synth_pair, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(synth_pair / "source", root)
    return root


def test_label_size_mismatch_and_out_of_range_values(synth_pair, tmp_path):
    root = _copy_pair(synth_pair, tmp_path)
    ds = FolderDataset(root, require_labels=True)
    first = ds.items[0][2]
    write_label(first, np.zeros((10, 10), np.uint8))
    with pytest.raises(Mismatch, match="must match"):
        ds.load(0)
    second = ds.items[1][2]
    lab = read_label(second)
    lab[0, 0] = 42
    write_label(second, lab)
    with pytest.raises(BadInput, match="outside"):
        ds.load(1)
    bad = dict(ds.check_all())
    assert set(bad) == {ds.items[0][0], ds.items[1][0]}


def test_missing_labels_are_reported(synth_pair, tmp_path):
    root = _copy_pair(synth_pair, tmp_path)
    next((root / "labels").iterdir()).unlink()
    with pytest.raises(BadInput, match="have no label"):
        FolderDataset(root, require_labels=True)
    assert FolderDataset(root).labeled_count() == len(FolderDataset(root)) - 1


def test_custom_class_lists_are_read(tmp_path):
    root = tmp_path / "custom"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("lane\nbarrier\ncone\n")
    cv2.imwrite(str(root / "images" / "x.jpg"), np.zeros((16, 32, 3), np.uint8))
    write_label(root / "labels" / "x.png", np.array([[0, 1, 2, 255] * 8] * 16, np.uint8))
    ds = FolderDataset(root, require_labels=True)
    assert ds.classes == ["lane", "barrier", "cone"]
    s = ds.load(0)
    assert s.id == "x" and s.label.max() == 255 and s.image.shape == (16, 32, 3)
