"""Label Studio's brush RLE (atool/annotate/labelstudio/brush.py), without a server."""

from __future__ import annotations

import numpy as np
import pytest

from atool.annotate.labelstudio import brush
from atool.core.errors import BadInput

# (mask, label_studio_sdk.converter.brush.mask2rle(mask * 255)) from label-studio-sdk 2.1.2.
SDK_VECTORS = [
    ([[0, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 0, 0, 1]], [0, 0, 0, 60, 57, 27, 252, 96, 19, 255, 219, 0, 183, 255, 132, 192, 35, 255, 0]),
    ([[1, 1, 1], [1, 1, 1]], [0, 0, 0, 24, 57, 27, 254, 23, 255, 0]),
    ([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
     [0, 0, 0, 64, 57, 27, 252, 127, 247, 192, 35, 255, 190, 1, 31, 253, 240, 8, 255, 192]),
]


@pytest.mark.parametrize("mask, sdk", SDK_VECTORS)
def test_matches_the_sdk_encoder_and_decodes_its_output(mask, sdk):
    m = np.array(mask, dtype=bool)
    assert brush.encode(m) == sdk
    assert np.array_equal(brush.decode(sdk, m.shape[1], m.shape[0]), m)


def test_round_trip_random_masks_and_runs_longer_than_a_length_field():
    rng = np.random.default_rng(0)
    masks = [rng.random((h, w)) < p for h, w, p in [(1, 1, 0.5), (7, 13, 0.3), (32, 64, 0.9), (17, 5, 0.0)]]
    masks.append(np.ones((200, 100), dtype=bool))  # 80,000 equal bytes: more than one 16-bit run
    big = np.zeros((300, 300), dtype=bool)
    big[100:, :] = True
    masks.append(big)
    for m in masks:
        h, w = m.shape
        assert np.array_equal(brush.decode(brush.encode(m), w, h), m)


def test_decodes_literal_chunks_as_the_front_end_writes_them():
    # header: 4 values, 8-bit words, widths 3/4/8/16; one literal chunk of 4 values (0, 0, 0, 200).
    bits = format(4, "032b") + format(7, "05b") + "".join(format(w - 1, "04b") for w in (3, 4, 8, 16))
    bits += "0" + "00" + format(3, "03b") + "".join(format(v, "08b") for v in (0, 0, 0, 200))
    bits += "0" * (-len(bits) % 8)
    data = list(int(bits, 2).to_bytes(len(bits) // 8, "big"))
    assert brush.decode_values(data).tolist() == [0, 0, 0, 200]
    assert brush.decode(data, 1, 1).tolist() == [[True]]


def test_bad_rle_is_bad_input():
    good = brush.encode(np.ones((3, 4), dtype=bool))
    with pytest.raises(BadInput, match="truncated"):
        brush.decode(good[:-3], 4, 3)
    with pytest.raises(BadInput, match="RGBA canvas"):
        brush.decode(good, 3, 3)
    with pytest.raises(BadInput, match="byte values"):
        brush.decode([1, 300], 1, 1)
    with pytest.raises(BadInput, match="byte values"):
        brush.decode("abc", 1, 1)
    with pytest.raises(BadInput, match="2-D"):
        brush.encode(np.zeros((2, 2, 2)))
