"""Per-frame signals and the standardised score, on hand-made model outputs."""

from __future__ import annotations

import numpy as np

from atool.monitor.signals import (
    Standardiser, class_histograms, concat_features, fit_spec, frame_features, image_stats, pooled_layout,
    signals_from_features,
)


def _outputs(rng, n, shift=0.0):
    logits = rng.normal(size=(n, 3, 16, 32)).astype(np.float32)
    logits[:, 0] += shift  # a shift makes class 0 dominate and the model surer
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    ent = -(prob * np.log(prob)).sum(axis=1) / np.log(3)
    images = rng.integers(0, 255, (n, 16, 32, 3), dtype=np.uint8)
    return {"prob": prob, "entropy": ent.astype(np.float32)}, images


def test_class_histograms_count_argmax_shares():
    prob = np.zeros((2, 3, 2, 2), np.float32)
    prob[0, 1] = 1
    prob[1, 2, 0] = 1
    prob[1, 0, 1] = 1
    np.testing.assert_allclose(class_histograms(prob), [[0, 1, 0], [0.5, 0, 0.5]])


def test_reference_score_is_standard_normal_and_a_shift_scores_high():
    rng = np.random.default_rng(0)
    parts = [frame_features(*_outputs(rng, 50)[:1], 1, (2, 2), _outputs(rng, 50)[1]) for _ in range(8)]
    feats = concat_features(parts)
    spec = fit_spec(feats, 3, stride=1, grid=(2, 2))
    assert spec.names == ["entropy", "high_entropy", "class_hist", "layout", "image"]
    st = Standardiser.fit(signals_from_features(feats, spec))
    ref = st.score(signals_from_features(feats, spec))
    assert abs(ref.mean()) < 0.1 and 0.85 < ref.std() < 1.15
    out, images = _outputs(rng, 40, shift=2.0)
    shifted = st.score(signals_from_features(frame_features(out, 1, (2, 2), images), spec))
    assert np.median(shifted) > 3.0


def test_image_stats_see_blur():
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 255, (1, 32, 64, 3), dtype=np.uint8)
    import cv2

    blurred = cv2.GaussianBlur(sharp[0], (0, 0), 2.0)[None]
    assert image_stats(blurred, 1)[0, 5] < 0.5 * image_stats(sharp, 1)[0, 5]


def test_fast_paths_match_their_plain_definitions():
    # The per-frame code avoids argmax, np.mean and float64 copies for speed; it must compute the same thing.
    rng = np.random.default_rng(3)
    prob = rng.random((3, 4, 13, 22)).astype(np.float32)
    prob[0, :2, 0, 0] = 2.0  # a tie: argmax takes the first class
    prob[1, :, 1, 1] = np.nan
    for stride in (1, 3):
        p = prob[:, :, ::stride, ::stride]
        cls = p.argmax(axis=1).reshape(3, -1)
        want = np.stack([np.bincount(c, minlength=4) / c.size for c in cls])
        np.testing.assert_array_equal(class_histograms(prob, stride), want)
        p = np.nan_to_num(p)  # a NaN spoils the whole layout vector (not only its cell): the signal is NaN either way
        n, c, h, w = p.shape
        crop = p[:, :, : h // 3 * 3, : w // 4 * 4].reshape(n, c, 3, h // 3, 4, w // 4)
        np.testing.assert_allclose(pooled_layout(np.nan_to_num(prob), stride, (3, 4)),
                                   crop.mean(axis=(3, 5), dtype=np.float64).reshape(n, -1), rtol=1e-5)
    images = rng.integers(0, 256, (2, 20, 30, 3), dtype=np.uint8)
    for stride in (1, 4):
        rows = images[:, ::stride].astype(np.float64)
        sub = rows[:, :, ::stride].reshape(2, -1, 3)
        want = np.column_stack([sub.mean(axis=1), sub[..., 1].std(axis=1), np.ptp(sub, axis=2).mean(axis=1),
                                np.abs(np.diff(rows[..., 1], axis=2)).reshape(2, -1).mean(axis=1)]) / 255
        np.testing.assert_allclose(image_stats(images, stride), want, rtol=1e-9)
