"""Uncertainty, normalisation and pseudo-label maths, written once (numpy: ``uncertainty``; torch: ``uncertainty_torch``, ``normalize``, ``thresholds``)."""
