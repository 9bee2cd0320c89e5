"""Datasets: image decoding, the generic folder layout, the synthetic domain pair."""
