"""Label-map constants every stage shares."""

from __future__ import annotations

IGNORE = 255  # label value for "unlabeled / ignore" in every label PNG and training target

# Where a pixel of a sparse target label came from (the ``origin/*.png`` maps written by ingest):
# nothing, an annotator's click or region, the model's pseudo label, or a click grown to its superpixel.
ORIGIN_NONE, ORIGIN_ORACLE, ORIGIN_PSEUDO, ORIGIN_EXPANDED = 0, 1, 2, 3
