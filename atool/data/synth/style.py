"""What makes the two synthetic domains differ: palettes, texture, lighting, sensor and camera pose.

The "source" style is a flat game look (``SOURCE_PALETTE``, no texture, a
level camera); the "target" style is a real-camera look (``TARGET_PALETTE``,
material textures, roll, vignetting, exposure, blur and noise). The
target-only confusions (dusk sky, asphalt sidewalks, lush terrain) are picked
per image in ``atool.data.synth.scene`` and coloured here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import cv2
import numpy as np

from atool.data.synth.classes import ROAD, SIDEWALK, SKY, TERRAIN, VEGETATION

if TYPE_CHECKING:
    from atool.data.synth.draw import Camera, Canvas

STYLES = ("source", "target")


# Material ids: which texture the target style applies where (labels alone
# cannot tell a window from a wall, both are "building").
M_PLAIN, M_BRICK, M_STRIPE, M_WINDOW, M_LANE, M_LEAF, M_GLASS = range(7)

Colour = tuple[float, float, float]


# --------------------------------------------------------------------------- palettes

SOURCE_PALETTE = {
    "road": (78, 78, 86),
    "lane": [(235, 235, 235), (232, 192, 40)],
    "walk": [(212, 182, 186)],
    "curb": (172, 160, 162),
    "building": [(196, 110, 72), (214, 184, 128), (150, 152, 172), (180, 92, 88), (226, 214, 196)],
    "window": [(92, 150, 210)],
    "pole": (105, 105, 118),
    "sign": [(240, 200, 20), (220, 35, 35), (35, 90, 210), (245, 245, 245)],
    "veg": (48, 150, 42),
    "trunk": (105, 72, 40),
    "terrain": [(165, 205, 80)],
    "sky": [((80, 145, 235), (165, 205, 248))],
    "skin": [(235, 190, 160), (180, 130, 95), (120, 80, 55)],
    "shirt": [(220, 40, 40), (40, 90, 220), (240, 200, 40), (40, 170, 80), (240, 240, 240), (230, 110, 30)],
    "pants": [(40, 45, 90), (30, 30, 30), (120, 100, 70)],
    "hair": [(40, 28, 20), (90, 60, 30), (20, 20, 20)],
    "car": [(210, 30, 30), (30, 70, 200), (240, 200, 30), (240, 240, 240), (25, 25, 28), (40, 160, 60), (250, 120, 20)],
    "glass": (40, 55, 80),
    "wheel": (22, 22, 22),
    "tail": (255, 40, 40),
}

TARGET_PALETTE = {
    "road": (128, 122, 112),
    "lane": [(185, 185, 175)],
    # index 0 is ordinary paving; index 1 is the asphalt look of source road
    "walk": [(158, 156, 150), (84, 84, 90)],
    "curb": (132, 130, 126),
    "building": [(142, 132, 120), (112, 106, 100), (165, 155, 140), (125, 95, 85), (95, 100, 105)],
    "window": [(52, 58, 64), (230, 190, 120)],
    "pole": (72, 72, 74),
    "sign": [(190, 165, 60), (160, 55, 50), (55, 75, 135), (200, 200, 195)],
    "veg": (72, 84, 44),
    "trunk": (70, 60, 50),
    # index 0 is dry grass; index 1 is lush grass, coloured like source vegetation
    "terrain": [(140, 134, 92), (56, 145, 48)],
    # (top, horizon) gradients: overcast, then dusk (coloured like source buildings)
    "sky": [((198, 204, 212), (226, 227, 229)), ((105, 72, 98), (232, 128, 80))],
    "skin": [(215, 175, 150), (165, 120, 90), (105, 75, 55)],
    "shirt": [(60, 60, 65), (90, 80, 70), (40, 45, 60), (120, 115, 110), (140, 60, 55), (70, 90, 110)],
    "pants": [(35, 35, 40), (60, 70, 90), (90, 85, 80)],
    "hair": [(35, 28, 22), (80, 60, 40), (25, 25, 25), (150, 150, 150)],
    "car": [(150, 150, 155), (200, 200, 200), (40, 40, 45), (60, 70, 95), (110, 40, 40), (180, 175, 165)],
    "glass": (30, 35, 40),
    "wheel": (18, 18, 18),
    "tail": (170, 40, 40),
}


def jit(rng: np.random.Generator, colour, amount: float) -> Colour:
    d = rng.uniform(-amount, amount, 3).tolist()
    return tuple(min(255.0, max(0.0, c + e)) for c, e in zip(colour, d))


def scale(colour, k: float) -> Colour:
    return tuple(float(min(255.0, v * k)) for v in colour)


def pick(rng: np.random.Generator, options: list):
    return options[int(rng.integers(len(options)))]


# --------------------------------------------------------------------------- texture & camera


def noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Smooth zero-mean unit-ish noise with features about ``cell`` px wide."""
    small = rng.standard_normal((h // cell + 2, w // cell + 2)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def texture(cv: Canvas, cam: Camera, rng, cond: dict) -> None:
    h, w = cv.h, cv.w
    gain = np.ones((h, w), np.float32)
    fine = rng.standard_normal((h, w)).astype(np.float32)
    lab, mat = cv.label, cv.mat

    road = (lab == ROAD) & (mat != M_LANE)
    gain[road] += (0.07 * fine + 0.035 * noise(rng, h, w, 12))[road]

    # Paving joints in ground coordinates so tiles shrink with distance.
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    dy = np.maximum(ys - cam.hy, 0.5)
    zg = cam.f * cam.hc / dy
    xg = (xs - cam.cx) * zg / cam.f
    walk = lab == SIDEWALK
    if cond["asphalt_sidewalk"]:
        gain[walk] += 0.06 * fine[walk]
    else:
        tile = rng.uniform(0.4, 0.7)
        joint = ((xg / tile) % 1.0 < 0.1) | ((zg / tile) % 1.0 < 0.1)
        gain[walk & joint] -= 0.15
        gain[walk] += 0.04 * fine[walk]

    veg = lab == VEGETATION
    leaf = cv2.GaussianBlur(fine, (3, 3), 0.6)
    gain[veg] += (0.28 * leaf + 0.12 * noise(rng, h, w, 4))[veg]
    terr = lab == TERRAIN
    gain[terr] += (0.08 * fine + 0.08 * noise(rng, h, w, 6))[terr]

    period = int(rng.integers(3, 5))
    brick = mat == M_BRICK
    mortar = (ys % period < 1) | (((xs + (ys // period % 2) * period) % (2 * period)) < 1)
    gain[brick & mortar] -= 0.18
    stripe = mat == M_STRIPE
    gain[stripe] += (0.09 * np.sin(ys * (2 * np.pi / rng.uniform(3.5, 6.0))))[stripe]
    wall = brick | stripe
    gain[wall] += 0.04 * fine[wall]

    sky = lab == SKY
    gain[sky] += (0.03 * noise(rng, h, w, 24))[sky]
    cv.rgb *= gain[:, :, None]


def roll_zoom(angle_deg: float, width: int, height: int) -> float:
    """Zoom that makes a rotated frame cover the whole output (no empty corners)."""
    a = math.radians(abs(angle_deg))
    return math.cos(a) + max(width / height, height / width) * math.sin(a)


def camera_finish(img: np.ndarray, label: np.ndarray, rng, roll: float, zoom: float, cond: dict
                   ) -> tuple[np.ndarray, np.ndarray]:
    h, w = label.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), roll, zoom)
    img = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    label = cv2.warpAffine(label, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT_101)

    x = img / 255.0
    if cond["dusk"]:
        bright, cast = rng.uniform(0.55, 0.8), np.array([1.1, 0.95, 0.82]) * rng.uniform(0.95, 1.05, 3)
    else:
        bright, cast = rng.uniform(0.75, 1.15), rng.uniform(0.9, 1.1, 3)
    rows = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None, None]
    x = x * (bright * cast.astype(np.float32)) * (1.0 + rng.uniform(-0.35, 0.35) * rows)
    yy, xx = np.ogrid[-1:1:complex(0, h), -1:1:complex(0, w)]
    x = x * (1.0 - rng.uniform(0.0, 0.18) * (xx * xx + yy * yy) / 2).astype(np.float32)[:, :, None]
    x = (x - 0.5) * rng.uniform(0.8, 1.1) + 0.5
    x = np.clip(x, 0.0, 1.0) ** rng.uniform(0.8, 1.25)
    x = cv2.GaussianBlur(x.astype(np.float32), (0, 0), rng.uniform(0.4, 0.9))
    x = x * 255.0 + rng.normal(0.0, rng.uniform(1.5, 5.0), x.shape).astype(np.float32)
    return np.clip(x + 0.5, 0, 255).astype(np.uint8), label

