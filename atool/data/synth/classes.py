"""The synthetic pair's classes: names (label value = index) and their ids."""

from __future__ import annotations

SYNTH_CLASSES: list[str] = [
    "road", "sidewalk", "building", "pole", "traffic sign",
    "vegetation", "terrain", "sky", "person", "car",
]
ROAD, SIDEWALK, BUILDING, POLE, SIGN, VEGETATION, TERRAIN, SKY, PERSON, CAR = range(10)
