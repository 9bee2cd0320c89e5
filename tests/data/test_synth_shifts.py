"""Shifted variants and the stream builder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from atool.core.errors import BadInput
from atool.data.synth.shifts import SHIFTS, apply_shift, draw_params
from atool.data.synth.stream import change_points, parse_segments, rendered_bases, stream_frames


def _frame() -> np.ndarray:
    return rendered_bases(0, (64, 32))(0)


@pytest.mark.parametrize("name", sorted(SHIFTS))
def test_each_shift_changes_the_frame_and_keeps_its_shape(name):
    rgb = _frame()
    out = apply_shift(rgb, name, draw_params(name, np.random.default_rng(0)), np.random.default_rng(1))
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - rgb.astype(int)).mean() > 5


def test_night_is_darker_and_fog_is_flatter():
    rgb = _frame()
    night = apply_shift(rgb, "night", draw_params("night", np.random.default_rng(0)), np.random.default_rng(1))
    fog = apply_shift(rgb, "fog", draw_params("fog", np.random.default_rng(0)), np.random.default_rng(1))
    assert night.mean() < 0.6 * rgb.mean()
    assert fog.std() < rgb.std()


def test_segments_and_change_points():
    segs = parse_segments("in:5,night:3,night:2,camera:4")
    assert change_points(segs) == [5, 10]
    frames = list(stream_frames(rendered_bases(0, (64, 32)), segs, seed=3))
    assert [i for i, _, _ in frames] == list(range(14))
    # Same seed, same stream.
    again = list(stream_frames(rendered_bases(0, (64, 32)), parse_segments("in:5,night:3,night:2,camera:4"), seed=3))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(frames, again))
    # Consecutive in-domain frames are correlated (one clip), unlike frames of different scenes.
    d_next = np.abs(frames[0][1].astype(int) - frames[1][1].astype(int)).mean()
    d_other = np.abs(frames[0][1].astype(int) - rendered_bases(0, (64, 32))(999).astype(int)).mean()
    assert d_next < d_other


@pytest.mark.parametrize("text", ["", "dusk:4", "night", "in:0"])
def test_bad_segments(text):
    with pytest.raises(BadInput):
        parse_segments(text)


def test_data_stream_cli(tmp_path):
    from conftest import assert_one_line_error, run_cli

    r = run_cli("data", "stream", "--out", tmp_path / "s", "--segments", "in:3,fog:2", "--size", "64x32")
    assert r.exit_code == 0, r.output
    info = json.loads((tmp_path / "s" / "stream.json").read_text())
    assert info["change_points"] == [3] and len(list((tmp_path / "s" / "frames").glob("*.png"))) == 5
    assert_one_line_error(run_cli("data", "stream", "--out", tmp_path / "t", "--segments", "snow:3"), 2, "snow")
