"""A procedural street-scene domain pair: "game" source -> "real" target.

The pair stands in for GTA5 -> Cityscapes so that the whole active domain
adaptation loop can be exercised in seconds without downloading anything.
Both styles draw the same kind of scene (a perspective street with buildings,
sidewalks, trees, poles with signs, cars and pedestrians) from a pinhole camera
over a ground plane, so object size follows distance and occlusion is
painter's order. They differ in everything a real domain gap is made of:
palette, lighting, texture, sensor noise, camera pose and class frequencies.

Three target-only confusions make a source-only model fail in a way that a
few labeled target pixels repair, which is what active learning must exploit;
each hits only some target images:

* "asphalt sidewalk": target sidewalks coloured like source road;
* "dusk": a dark orange sky coloured like source buildings;
* "lush terrain": target grass coloured like source vegetation.

Every image comes from ``np.random.default_rng([seed, split_index, index])``
so any one can be regenerated alone. Quick look::

    python -c "from atool.data.synth import write_synth_pair as w; print(w('/tmp/s', 4, 4))"
"""

from atool.data.synth.classes import (
    BUILDING, CAR, PERSON, POLE, ROAD, SIDEWALK, SIGN, SKY, SYNTH_CLASSES, TERRAIN, VEGETATION,
)
from atool.data.synth.scene import render, render_scene
from atool.data.synth.style import STYLES
from atool.data.synth.writer import write_synth_pair

__all__ = [
    "SYNTH_CLASSES", "ROAD", "SIDEWALK", "BUILDING", "POLE", "SIGN", "VEGETATION", "TERRAIN", "SKY", "PERSON", "CAR",
    "STYLES", "render", "render_scene", "write_synth_pair",
]
