"""Decompression bombs: an image's size comes from its header and is checked before any decoding.

The field case: a 20000x20000 PNG among the images of `atool query` ran two
minutes and ended in an onnxruntime traceback. Now it is skipped at once and
listed in the query list's ``skipped``.
"""

from __future__ import annotations

import io
import json
import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from atool.core.errors import BadInput
from atool.data import images as img
from atool.data.images import ImageTooLarge, header_size, max_image_pixels, read_image, read_label
from conftest import run_cli


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A valid 1-bit grey PNG of width x height: about 50 kB on disk, width*height pixels once decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\0" * (1 + (width + 7) // 8)
    z = zlib.compressobj(9)
    body = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "huge.png"
    path.write_bytes(png_bomb())
    return path


@pytest.fixture(autouse=True)
def _default_limit(monkeypatch):
    monkeypatch.delenv(img.MAX_PIXELS_ENV, raising=False)
    img.set_max_image_pixels(None)
    yield
    img.set_max_image_pixels(None)


def _encoded(suffix: str, w: int, h: int) -> bytes:
    ok, buf = cv2.imencode(suffix, np.zeros((h, w, 3), np.uint8))
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".tif"])
def test_header_size_without_decoding(suffix):
    assert header_size(_encoded(suffix, 37, 11)) == (37, 11)


def test_jpeg_size_found_after_large_app_segments():
    buf = io.BytesIO()
    Image.new("RGB", (45, 23)).save(buf, "JPEG", exif=b"Exif\0\0" + b"\0" * 60000)
    assert header_size(buf.getvalue()) == (45, 23)
    assert header_size(b"\xff\xd8\xff\xda\x00\x02") is None  # scan before any frame header
    assert header_size(b"not an image at all") is None


def test_bomb_is_refused_before_decoding(bomb):
    start = time.perf_counter()
    with pytest.raises(ImageTooLarge, match=r"20000x20000 is 400 megapixels, over the limit of 100 megapixels"):
        read_image(bomb)
    with pytest.raises(ImageTooLarge):
        read_label(bomb)
    assert time.perf_counter() - start < 0.5  # decoding would allocate 400 MB and take seconds


def test_limit_from_env_and_override(bomb, monkeypatch, tmp_path):
    assert max_image_pixels() == 100_000_000
    small = tmp_path / "s.png"
    small.write_bytes(_encoded(".png", 20, 10))
    monkeypatch.setenv(img.MAX_PIXELS_ENV, "199")
    with pytest.raises(ImageTooLarge, match="ATOOL_MAX_IMAGE_PIXELS"):
        read_image(small)
    monkeypatch.setenv(img.MAX_PIXELS_ENV, "2e2")
    assert read_image(small).shape == (10, 20, 3)
    for bad in ("lots", "-5", "0", "1.5"):
        monkeypatch.setenv(img.MAX_PIXELS_ENV, bad)
        with pytest.raises(BadInput, match="is not a pixel count"):
            max_image_pixels()
    img.set_max_image_pixels(150)
    assert max_image_pixels() == 150
    with pytest.raises(BadInput):
        img.set_max_image_pixels(0)


def test_palette_label_bomb_refused(tmp_path):
    from atool.data.adapters.gta5 import read_id_label

    data = bytearray(png_bomb(12000, 12000))
    data[25] = 3  # colour type 3 (palette): the PIL path of the GTA5 reader; the header check comes first
    path = tmp_path / "p.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageTooLarge):
        read_id_label(path, "GTA5")


def test_query_cli_skips_the_bomb_quickly(tmp_path, bomb, tiny_checkpoint):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(images / name), rng.integers(0, 256, (32, 64, 3), dtype=np.uint8))
    (images / "huge.png").write_bytes(bomb.read_bytes())
    out = tmp_path / "q.json"
    start = time.perf_counter()
    r = run_cli("query", "--model", tiny_checkpoint, "--images", images, "--budget", 4, "--out", out, "--workers", 0)
    elapsed = time.perf_counter() - start
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output and elapsed < 20
    q = json.loads(out.read_text())
    assert [s["image"] for s in q["skipped"]] == ["huge.png"]
    assert "megapixels, over the limit" in q["skipped"][0]["reason"]
    assert sorted(e["image"] for e in q["images"]) == ["a.png", "b.png"]


def test_global_flag_sets_the_limit(tmp_path, tiny_checkpoint, monkeypatch):
    """`atool --max-image-pixels N` refuses an ordinary image over N pixels and names the flag."""
    monkeypatch.setenv("ATOOL_MAX_IMAGE_PIXELS", "100000000")  # recorded, so the flag's setting is undone after
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(1)
    cv2.imwrite(str(images / "small.png"), rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    cv2.imwrite(str(images / "big.png"), rng.integers(0, 256, (32, 64, 3), dtype=np.uint8))
    out = tmp_path / "q.json"
    r = run_cli("--max-image-pixels", 1000, "query", "--model", tiny_checkpoint, "--images", images,
                "--budget", 2, "--out", out, "--workers", 0)
    assert r.exit_code == 0, r.output
    q = json.loads(out.read_text())
    assert [s["image"] for s in q["skipped"]] == ["big.png"]
    assert "--max-image-pixels" in q["skipped"][0]["reason"]
    bad = run_cli("--max-image-pixels", 0, "query", "--model", tiny_checkpoint, "--images", images)
    assert bad.exit_code == 2 and "Traceback" not in bad.output
