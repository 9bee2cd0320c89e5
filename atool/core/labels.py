"""Label-map constants every stage shares."""

from __future__ import annotations

IGNORE = 255  # label value for "unlabeled / ignore" in every label PNG and training target
