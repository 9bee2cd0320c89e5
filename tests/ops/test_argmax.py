"""``atool.ops.uncertainty.argmax`` must equal numpy's argmax over the class axis, ties included."""

import numpy as np
import pytest

from atool.ops.uncertainty import argmax


@pytest.mark.parametrize("classes", [1, 2, 10, 19])
def test_equals_numpy_argmax(classes):
    rng = np.random.default_rng(classes)
    prob = rng.random((classes, 37, 53), dtype=np.float32)
    got = argmax(prob)
    assert got.dtype == np.int16 and got.shape == (37, 53)
    np.testing.assert_array_equal(got, prob.argmax(axis=0))


def test_ties_go_to_the_first_class_as_in_numpy():
    prob = np.zeros((4, 3, 3), np.float32)
    prob[1] = prob[3] = 0.5  # classes 1 and 3 tie everywhere
    prob[2, 0, 0] = 0.5  # a three-way tie at one pixel
    np.testing.assert_array_equal(argmax(prob), prob.argmax(axis=0))
    assert (argmax(prob) == 1).all()


def test_strided_views():
    prob = np.random.default_rng(0).random((5, 40, 60), dtype=np.float32)[:, ::3, 1::2]
    np.testing.assert_array_equal(argmax(prob), prob.argmax(axis=0))
