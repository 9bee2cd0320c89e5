"""Per-frame signals and the standardised score, on hand-made model outputs."""

from __future__ import annotations

import numpy as np

from atool.monitor.signals import (
    Standardiser, class_histograms, concat_features, fit_spec, frame_features, image_stats, signals_from_features,
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
