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

from __future__ import annotations

import json
import math
import re
import sys
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from atool.data.images import write_image, write_label
from atool.core.errors import BadInput
from atool.core.io import atomic_write_text

SYNTH_CLASSES: list[str] = [
    "road", "sidewalk", "building", "pole", "traffic sign",
    "vegetation", "terrain", "sky", "person", "car",
]
ROAD, SIDEWALK, BUILDING, POLE, SIGN, VEGETATION, TERRAIN, SKY, PERSON, CAR = range(10)

STYLES = ("source", "target")

# (folder, split index for the RNG, file prefix, label folder, style)
_SPLITS = (
    ("source", 0, "s", "labels", "source"),
    ("target_train", 1, "t", "oracle_labels", "target"),
    ("target_val", 2, "v", "labels", "target"),
)

# Sub-pixel vertices: without them far, thin objects snap to whole pixels and
# jitter from image to image in a way no camera produces.
_SHIFT = 3
_SUB = float(1 << _SHIFT)

# Material ids: which texture the target style applies where (labels alone
# cannot tell a window from a wall, both are "building").
_M_PLAIN, _M_BRICK, _M_STRIPE, _M_WINDOW, _M_LANE, _M_LEAF, _M_GLASS = range(7)

_Z_FAR = 1000.0  # metres; projects to within a fraction of a pixel of the horizon

Colour = tuple[float, float, float]


# --------------------------------------------------------------------------- palettes

_SOURCE = {
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

_TARGET = {
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


def _jit(rng: np.random.Generator, colour, amount: float) -> Colour:
    d = rng.uniform(-amount, amount, 3).tolist()
    return tuple(min(255.0, max(0.0, c + e)) for c, e in zip(colour, d))


def _scale(colour, k: float) -> Colour:
    return tuple(float(min(255.0, v * k)) for v in colour)


def _pick(rng: np.random.Generator, options: list):
    return options[int(rng.integers(len(options)))]


# --------------------------------------------------------------------------- drawing


class _Camera:
    """Pinhole camera at height ``hc`` over a flat ground; X right, Y up, Z forward."""

    def __init__(self, f: float, cx: float, hy: float, hc: float):
        self.f, self.cx, self.hy, self.hc = f, cx, hy, hc

    def project(self, x, y, z) -> np.ndarray:
        x, y, z = np.asarray(x, np.float64), np.asarray(y, np.float64), np.asarray(z, np.float64)
        out = np.empty(np.broadcast_shapes(x.shape, y.shape, z.shape) + (2,))
        out[..., 0] = self.cx + self.f * x / z
        out[..., 1] = self.hy + self.f * (self.hc - y) / z
        return out

    def px(self, metres: float, z: float) -> float:
        return self.f * metres / z


class _Canvas:
    def __init__(self, width: int, height: int):
        self.w, self.h = width, height
        self.rgb = np.zeros((height, width, 3), np.float32)
        self.label = np.zeros((height, width), np.uint8)
        self.mat = np.zeros((height, width), np.uint8)

    @staticmethod
    def _fixed(points) -> np.ndarray:
        # Clipping keeps int32 fixed point safe; the camera's near plane keeps
        # real geometry far inside this range, so shapes are not distorted.
        a = np.asarray(points, np.float64) * _SUB
        np.minimum(np.maximum(a, -1e5 * _SUB, out=a), 1e5 * _SUB, out=a)
        return np.rint(a).astype(np.int32)

    def polys(self, polys, cls: int, colour: Colour, mat: int = _M_PLAIN) -> None:
        """Fill polygons; one call XORs overlaps, so only pass disjoint ones."""
        arr = self._fixed(polys)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.shape[0] == 0:
            return
        p = list(arr)
        cv2.fillPoly(self.rgb, p, colour, cv2.LINE_8, _SHIFT)
        cv2.fillPoly(self.label, p, cls, cv2.LINE_8, _SHIFT)
        cv2.fillPoly(self.mat, p, mat, cv2.LINE_8, _SHIFT)

    def ellipse(self, centre, axes, cls: int, colour: Colour, mat: int = _M_PLAIN) -> None:
        c = tuple(int(v) for v in self._fixed(centre))
        a = tuple(max(0, int(v)) for v in self._fixed(axes))
        cv2.ellipse(self.rgb, c, a, 0, 0, 360, colour, -1, cv2.LINE_8, _SHIFT)
        cv2.ellipse(self.label, c, a, 0, 0, 360, cls, -1, cv2.LINE_8, _SHIFT)
        cv2.ellipse(self.mat, c, a, 0, 0, 360, mat, -1, cv2.LINE_8, _SHIFT)

    def column(self, x_centre: float, width_px: int, y0: float, y1: float, cls: int, colour: Colour) -> None:
        # Poles are drawn on whole pixels so they stay 1-3 px wide, never 0.
        x0 = int(math.floor(x_centre - width_px / 2 + 0.5))
        xa, xb = max(0, x0), min(self.w, x0 + width_px)
        ya, yb = max(0, int(round(y0))), min(self.h, int(round(y1)) + 1)
        if xa >= xb or ya >= yb:
            return
        self.rgb[ya:yb, xa:xb] = colour
        self.label[ya:yb, xa:xb] = cls
        self.mat[ya:yb, xa:xb] = _M_PLAIN


# --------------------------------------------------------------------------- scene objects


def _draw_building(cv: _Canvas, cam: _Camera, rng, b: dict, z_clip: float) -> None:
    side, xb, z1, z2, hb, depth = b["side"], b["x"], b["z1"], b["z2"], b["h"], b["depth"]
    if z2 <= z_clip:
        return
    # Sunlight from the left: flat per-face shading, as a game engine would do.
    facade = _scale(b["colour"], 1.0 if side < 0 else 0.86)
    front = _scale(b["colour"], 0.74)
    if z1 > z_clip:
        xo = xb + side * depth
        cv.polys(cam.project([xb, xo, xo, xb], [0, 0, hb, hb], z1), BUILDING, front, b["mat"])
    za = max(z1, z_clip)
    cv.polys(cam.project(xb, [0, 0, hb, hb], [za, z2, z2, za]), BUILDING, facade, b["mat"])

    # Windows below ~1 px wide would only alias, so the grid stops there.
    sp, ww, wh = b["win_spacing"], b["win_w"], 1.5
    z_end = min(z2 - 0.6, cam.f * ww)  # f * ww / z >= 1 px
    zs = np.arange(za + 0.8, z_end - ww, sp)
    ys = np.arange(1.1, hb - wh - 0.6, 3.0)
    if zs.size == 0 or ys.size == 0:
        return
    zg, yg = np.meshgrid(zs, ys)
    zg, yg = zg.ravel(), yg.ravel()
    lit = rng.random(zg.size) < b["lit_share"]
    for mask, colour in ((~lit, b["window"]), (lit, b["window_lit"])):
        if not mask.any():
            continue
        z0, y0 = zg[mask][:, None], yg[mask][:, None]
        quads = cam.project(xb, y0 + np.array([0, 0, wh, wh]), z0 + np.array([0, ww, ww, 0]))
        cv.polys(quads, BUILDING, colour, _M_WINDOW)


def _draw_tree(cv: _Canvas, cam: _Camera, rng, x: float, z: float, pal: dict, size: float, target: bool) -> None:
    crown_y = rng.uniform(3.2, 5.5) * size
    radius = rng.uniform(1.4, 2.6) * size
    tw = 0.32 * size
    trunk = _jit(rng, pal["trunk"], 8)
    cv.polys(cam.project([x - tw / 2, x + tw / 2, x + tw / 2, x - tw / 2], [0, 0, crown_y, crown_y], z),
             VEGETATION, trunk, _M_PLAIN)
    base = _jit(rng, pal["veg"], 10)
    for _ in range(int(rng.integers(3, 7))):
        dx, dy = rng.uniform(-0.7, 0.7, 2) * radius
        r = radius * rng.uniform(0.55, 0.9)
        centre = cam.project(x + dx, crown_y + dy * 0.6, z)
        k = rng.uniform(0.85, 1.12) if target else rng.uniform(0.95, 1.05)
        cv.ellipse(centre, (cam.px(r, z), cam.px(r * rng.uniform(0.8, 1.05), z)), VEGETATION,
                   _scale(base, k), _M_LEAF)


def _draw_hedge(cv: _Canvas, cam: _Camera, rng, x: float, z1: float, z2: float, pal: dict) -> None:
    h = rng.uniform(0.8, 1.6)
    cv.polys(cam.project(x, [0, 0, h, h], [z1, z2, z2, z1]), VEGETATION, _jit(rng, pal["veg"], 10), _M_LEAF)


def _draw_pole(cv: _Canvas, cam: _Camera, rng, x: float, z: float, road_dir: float, pal: dict,
               sign: bool, lamp: bool) -> None:
    top = rng.uniform(4.0, 7.5) if not sign or lamp else rng.uniform(2.8, 4.2)
    colour = _jit(rng, pal["pole"], 6)
    wpx = int(np.clip(round(cam.px(0.16, z)), 1, 3))
    (xc, ybot), (_, ytop) = cam.project(x, [0.0, top], z)
    cv.column(xc, wpx, ytop, ybot, POLE, colour)
    if lamp:
        arm = rng.uniform(1.2, 2.2)
        t = 0.16
        cv.polys(cam.project([x, x + road_dir * arm, x + road_dir * arm, x], [top, top, top - t, top - t], z),
                 POLE, colour)
        head = x + road_dir * arm
        cv.polys(cam.project([head - 0.25, head + 0.25, head + 0.25, head - 0.25],
                             [top, top, top - 0.22, top - 0.22], z), POLE, colour)
    if sign:
        s = rng.uniform(0.6, 0.9)
        ys = top - s / 2 - 0.05 if not lamp else rng.uniform(2.4, 3.2)
        colour = _jit(rng, _pick(rng, pal["sign"]), 10)
        shape = int(rng.integers(3))
        if shape == 0:
            cv.polys(cam.project([x - s / 2, x + s / 2, x + s / 2, x - s / 2],
                                 [ys - s / 2, ys - s / 2, ys + s / 2, ys + s / 2], z), SIGN, colour)
        elif shape == 1:
            cv.polys(cam.project([x - s / 2, x + s / 2, x], [ys - s / 2.5, ys - s / 2.5, ys + s / 2], z),
                     SIGN, colour)
        else:
            cv.ellipse(cam.project(x, ys, z), (cam.px(s / 2, z), cam.px(s / 2, z)), SIGN, colour)


def _draw_car(cv: _Canvas, cam: _Camera, rng, x: float, z: float, pal: dict) -> None:
    w, length = rng.uniform(1.65, 1.95), rng.uniform(3.9, 4.7)
    y0, y1, y2 = 0.28, rng.uniform(0.9, 1.05), rng.uniform(1.38, 1.55)
    body = _jit(rng, _pick(rng, pal["car"]), 12)
    glass, wheel = pal["glass"], pal["wheel"]
    xl, xr = x - w / 2, x + w / 2
    side_x = xl if xl > 0.1 else (xr if xr < -0.1 else None)
    if side_x is not None:
        side = _scale(body, 0.82)
        zf = z + length
        cv.polys(cam.project(side_x, [0.12, 0.12, y1, y1], [z, zf, zf, z]), CAR, side)
        cv.polys(cam.project(side_x, [y1, y1, y2, y2], [z + 0.22 * length, z + 0.85 * length,
                                                         z + 0.72 * length, z + 0.32 * length]),
                 CAR, glass, _M_GLASS)
        for zw in (z + 0.18 * length, z + 0.8 * length):
            r = cam.px(0.33, zw)
            cv.ellipse(cam.project(side_x, 0.33, zw), (r * 0.45, r), CAR, wheel)
    inset = 0.14
    cv.polys(cam.project([xl + 0.06, xl + 0.34, xl + 0.34, xl + 0.06], [0, 0, y0 + 0.1, y0 + 0.1], z), CAR, wheel)
    cv.polys(cam.project([xr - 0.34, xr - 0.06, xr - 0.06, xr - 0.34], [0, 0, y0 + 0.1, y0 + 0.1], z), CAR, wheel)
    cv.polys(cam.project([xl, xr, xr, xl], [y0, y0, y1, y1], z), CAR, body)
    cv.polys(cam.project([xl, xr, xr, xl], [y0, y0, y0 + 0.14, y0 + 0.14], z), CAR, _scale(body, 0.55))
    cv.polys(cam.project([xl + inset, xr - inset, xr - 2.2 * inset, xl + 2.2 * inset], [y1, y1, y2, y2], z + 0.6),
             CAR, _scale(body, 0.93))
    cv.polys(cam.project([xl + 2 * inset, xr - 2 * inset, xr - 3 * inset, xl + 3 * inset],
                         [y1 + 0.06, y1 + 0.06, y2 - 0.07, y2 - 0.07], z + 0.6), CAR, glass, _M_GLASS)
    for xa in (xl + 0.08, xr - 0.3):
        cv.polys(cam.project([xa, xa + 0.22, xa + 0.22, xa], [y1 - 0.2, y1 - 0.2, y1 - 0.07, y1 - 0.07], z),
                 CAR, pal["tail"])


def _draw_person(cv: _Canvas, cam: _Camera, rng, x: float, z: float, pal: dict) -> None:
    h = rng.uniform(1.5, 1.92)
    pants = _jit(rng, _pick(rng, pal["pants"]), 10)
    shirt = _jit(rng, _pick(rng, pal["shirt"]), 12)
    skin = _jit(rng, _pick(rng, pal["skin"]), 6)
    stride = rng.uniform(0.0, 0.12)
    for dx in (-1, 1):
        cv.polys(cam.project([x + dx * 0.03, x + dx * 0.16, x + dx * (0.16 + stride), x + dx * (0.03 + stride)],
                             [0.47 * h, 0.47 * h, 0, 0], z), PERSON, pants)
    cv.polys(cam.project([x - 0.2, x + 0.2, x + 0.2, x - 0.2], [0.45 * h, 0.45 * h, 0.82 * h, 0.82 * h], z),
             PERSON, shirt)
    for dx in (-1, 1):
        cv.polys(cam.project([x + dx * 0.2, x + dx * 0.27, x + dx * 0.27, x + dx * 0.2],
                             [0.8 * h, 0.8 * h, 0.5 * h, 0.5 * h], z), PERSON, _scale(shirt, 0.88))
    r = 0.068 * h
    cv.ellipse(cam.project(x, 0.9 * h, z), (cam.px(r * 0.85, z), cam.px(r, z)), PERSON, skin)
    cv.ellipse(cam.project(x, 0.93 * h, z), (cam.px(r * 0.88, z), cam.px(r * 0.6, z)), PERSON,
               _pick(rng, pal["hair"]))


# --------------------------------------------------------------------------- texture & camera


def _noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Smooth zero-mean unit-ish noise with features about ``cell`` px wide."""
    small = rng.standard_normal((h // cell + 2, w // cell + 2)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _texture(cv: _Canvas, cam: _Camera, rng, cond: dict) -> None:
    h, w = cv.h, cv.w
    gain = np.ones((h, w), np.float32)
    fine = rng.standard_normal((h, w)).astype(np.float32)
    lab, mat = cv.label, cv.mat

    road = (lab == ROAD) & (mat != _M_LANE)
    gain[road] += (0.07 * fine + 0.035 * _noise(rng, h, w, 12))[road]

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
    gain[veg] += (0.28 * leaf + 0.12 * _noise(rng, h, w, 4))[veg]
    terr = lab == TERRAIN
    gain[terr] += (0.08 * fine + 0.08 * _noise(rng, h, w, 6))[terr]

    period = int(rng.integers(3, 5))
    brick = mat == _M_BRICK
    mortar = (ys % period < 1) | (((xs + (ys // period % 2) * period) % (2 * period)) < 1)
    gain[brick & mortar] -= 0.18
    stripe = mat == _M_STRIPE
    gain[stripe] += (0.09 * np.sin(ys * (2 * np.pi / rng.uniform(3.5, 6.0))))[stripe]
    wall = brick | stripe
    gain[wall] += 0.04 * fine[wall]

    sky = lab == SKY
    gain[sky] += (0.03 * _noise(rng, h, w, 24))[sky]
    cv.rgb *= gain[:, :, None]


def _roll_zoom(angle_deg: float, width: int, height: int) -> float:
    """Zoom that makes a rotated frame cover the whole output (no empty corners)."""
    a = math.radians(abs(angle_deg))
    return math.cos(a) + max(width / height, height / width) * math.sin(a)


def _camera_finish(img: np.ndarray, label: np.ndarray, rng, roll: float, zoom: float, cond: dict
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


# --------------------------------------------------------------------------- the scene


def _render(rng: np.random.Generator, width: int, height: int, style: str
            ) -> tuple[np.ndarray, np.ndarray, dict]:
    target = style == "target"
    pal = _TARGET if target else _SOURCE
    w, h = width, height
    cond = {
        "dusk": target and rng.random() < 0.3,
        "asphalt_sidewalk": target and rng.random() < 0.5,
        "lush_terrain": target and rng.random() < 0.5,
    }

    if target:
        roll = float(rng.uniform(-4.0, 4.0))
        zoom = _roll_zoom(roll, w, h)
        # Pick where the horizon should land after the zoom, then undo the zoom.
        hy = h * (0.5 + (rng.uniform(0.35, 0.6) - 0.5) / zoom)
        cam = _Camera(w * rng.uniform(0.5, 0.62), w * (0.5 + rng.uniform(-0.06, 0.06)), hy, rng.uniform(1.3, 1.8))
    else:
        roll, zoom = 0.0, 1.0
        cam = _Camera(w * 0.55, w * (0.5 + rng.uniform(-0.06, 0.06)), h * 0.45, 1.5)
    z_bottom = cam.f * cam.hc / (h - cam.hy)  # ground depth seen by the last row
    z_clip = 0.5 * z_bottom

    cv = _Canvas(w, h)

    # Sky: vertical gradient, then everything below the horizon starts as terrain.
    top, low = pal["sky"][1 if cond["dusk"] else 0]
    top, low = _jit(rng, top, 8), _jit(rng, low, 8)
    t = np.clip(np.arange(h, dtype=np.float32) / max(cam.hy, 1.0), 0, 1)[:, None]
    cv.rgb[:] = (np.asarray(top, np.float32) * (1 - t) + np.asarray(low, np.float32) * t)[:, None, :]
    cv.label[:] = SKY
    terrain = _jit(rng, pal["terrain"][1 if cond["lush_terrain"] else 0], 8)
    hy0 = int(math.floor(cam.hy))
    if hy0 < h:
        cv.rgb[max(hy0, 0):] = terrain
        cv.label[max(hy0, 0):] = TERRAIN

    # Cross-section of the street from the road edge outwards on each side.
    road_col = _jit(rng, pal["road"], 5)
    walk_col = _jit(rng, pal["walk"][1 if cond["asphalt_sidewalk"] else 0], 6)
    curb_col = _jit(rng, pal["curb"], 5)
    half = {-1: rng.uniform(3.5, 7.0), 1: rng.uniform(3.5, 7.0)}
    p_grass = 0.5 if target else 0.3
    sides = {}
    for s in (-1, 1):
        edge = half[s]
        grass = rng.uniform(1.0, 2.5) if rng.random() < p_grass else 0.0
        walk = rng.uniform(3.0, 5.5)
        setback = rng.uniform(1.0, 4.0) if rng.random() < p_grass else 0.0
        sides[s] = {"edge": edge, "grass": grass, "walk": walk, "setback": setback,
                    "walk0": edge + 0.3 + grass, "facade": edge + 0.3 + grass + walk + setback}

    def strip(a: float, b: float, cls: int, colour: Colour, mat: int = _M_PLAIN) -> None:
        cv.polys(cam.project([a, b, b, a], 0.0, [z_clip, z_clip, _Z_FAR, _Z_FAR]), cls, colour, mat)

    strip(-half[-1], half[1], ROAD, road_col)
    for s in (-1, 1):
        sd = sides[s]
        e = sd["edge"]
        strip(s * e, s * (e + 0.3), SIDEWALK, curb_col)
        if sd["grass"]:
            strip(s * (e + 0.3), s * sd["walk0"], TERRAIN, _jit(rng, terrain, 4))
        strip(s * sd["walk0"], s * (sd["walk0"] + sd["walk"]), SIDEWALK, walk_col)

    # Lane markings: dashes stop where they would be thinner than ~0.4 px.
    lane_col = _jit(rng, _pick(rng, pal["lane"]), 5)
    z_lane = cam.f * 0.14 / 0.4
    for xl, dashed in (((half[1] - half[-1]) / 2, True), (-half[-1] + 0.35, False), (half[1] - 0.35, False)):
        if not dashed and rng.random() < 0.5:
            continue
        if dashed:
            z0 = np.arange(z_clip + rng.uniform(0, 9), z_lane, 9.0)[:, None]
            zz = z0 + np.array([0, 0, 3.0, 3.0])
        else:
            zz = np.array([[z_clip, z_clip, z_lane, z_lane]])
        if zz.size:
            cv.polys(cam.project(xl + np.array([-0.07, 0.07, 0.07, -0.07]), 0.0, zz), ROAD, lane_col, _M_LANE)

    # Far layer: buildings (and trees in the gaps between them), far to near.
    far: list[tuple[float, Callable[[], None]]] = []
    p_gap = 0.3 if target else 0.18
    for s in (-1, 1):
        xb = s * sides[s]["facade"]
        z = rng.uniform(z_clip, z_bottom + 6)
        while z < 160:
            if rng.random() < p_gap:
                gap = rng.uniform(4, 12)
                if rng.random() < (0.8 if target else 0.5):
                    zt = z + gap / 2
                    xt = xb + s * rng.uniform(1.0, 4.0)
                    far.append((zt, lambda xt=xt, zt=zt: _draw_tree(cv, cam, rng, xt, zt, pal, 1.3, target)))
                z += gap
                continue
            length = rng.uniform(8, 28)
            b = {
                "side": s, "x": xb, "z1": z, "z2": z + length, "h": rng.uniform(5, 20),
                "depth": rng.uniform(8, 20), "colour": _jit(rng, _pick(rng, pal["building"]), 12),
                "mat": (_M_BRICK, _M_STRIPE, _M_PLAIN)[int(rng.integers(3))] if target else _M_PLAIN,
                "win_spacing": rng.uniform(2.4, 3.6), "win_w": rng.uniform(1.0, 1.6),
                "window": _jit(rng, pal["window"][0], 8),
                "window_lit": _jit(rng, pal["window"][-1], 8),
                "lit_share": 0.35 if cond["dusk"] else 0.0,
            }
            far.append((z, lambda b=b: _draw_building(cv, cam, rng, b, z_clip)))
            z += length + rng.uniform(0, 1.0)
    if rng.random() < 0.7:
        # A skyline across the end of the street so the vanishing point is not bare.
        zb = rng.uniform(110, 200)
        x = -70.0
        while x < 70:
            bw, bh = rng.uniform(6, 20), rng.uniform(5, 35)
            col = _scale(_jit(rng, _pick(rng, pal["building"]), 12), 0.8)
            quad = cam.project([x, x + bw, x + bw, x], [0, 0, bh, bh], zb)
            far.append((zb, lambda q=quad, c=col: cv.polys(q, BUILDING, c)))
            x += bw
    for _, draw in sorted(far, key=lambda t: -t[0]):
        draw()

    # Hedges line the facades; they sit in front of every building face.
    p_hedge = 0.6 if target else 0.2
    for s in (-1, 1):
        if rng.random() < p_hedge:
            x = s * (sides[s]["facade"] - 0.4)
            z = rng.uniform(z_clip, 20)
            for _ in range(int(rng.integers(1, 4))):
                ln = rng.uniform(5, 25)
                _draw_hedge(cv, cam, rng, x, z, z + ln, pal)
                z += ln + rng.uniform(3, 15)

    # Near layer: street furniture, cars and people, far to near.
    near: list[tuple[float, Callable[[], None]]] = []

    def on_walk(s: int, lo: float, hi: float) -> float:
        sd = sides[s]
        return s * (sd["walk0"] + sd["walk"] * rng.uniform(lo, hi))

    n_trees = int(rng.integers(4, 11) if target else rng.integers(2, 6))
    for _ in range(n_trees):
        s = int(rng.choice([-1, 1]))
        sd = sides[s]
        if sd["grass"] and rng.random() < 0.5:
            x = s * (sd["edge"] + 0.3 + sd["grass"] / 2)
        else:
            x = on_walk(s, 0.55, 0.95)
        z = rng.uniform(z_bottom + 2, 80)
        size = rng.uniform(0.8, 1.2)
        near.append((z, lambda x=x, z=z, size=size: _draw_tree(cv, cam, rng, x, z, pal, size, target)))

    n_poles = int(rng.integers(2, 6) if target else rng.integers(2, 5))
    has_sign = rng.random(n_poles) < 0.6
    has_sign[0] = True
    for i in range(n_poles):
        s = int(rng.choice([-1, 1]))
        x = s * (sides[s]["edge"] + 0.3 + rng.uniform(0.3, 0.7))
        z = rng.uniform(z_bottom + 1, 60)
        lamp = bool(rng.random() < 0.35)
        sign = bool(has_sign[i])
        near.append((z, lambda x=x, z=z, s=s, sign=sign, lamp=lamp:
                     _draw_pole(cv, cam, rng, x, z, -s, pal, sign, lamp)))

    n_cars = int(rng.integers(1, 5) if target else rng.integers(4, 10))
    for _ in range(n_cars):
        if rng.random() < 0.4:
            s = int(rng.choice([-1, 1]))
            x = s * (half[s] - 1.15)  # parked at the curb
        else:
            x = rng.uniform(-half[-1] + 1.2, half[1] - 1.2)
        z = rng.uniform(z_bottom + 1, 70)
        near.append((z, lambda x=x, z=z: _draw_car(cv, cam, rng, x, z, pal)))

    n_people = int(rng.integers(3, 10)) if target else int(rng.choice([0, 1, 2], p=[0.15, 0.5, 0.35]))
    for _ in range(n_people):
        if target and rng.random() < 0.15:
            x = rng.uniform(-half[-1] + 0.5, half[1] - 0.5)  # crossing the road
        else:
            x = on_walk(int(rng.choice([-1, 1])), 0.1, 0.9)
        z = rng.uniform(z_bottom + 0.5, 45)
        near.append((z, lambda x=x, z=z: _draw_person(cv, cam, rng, x, z, pal)))

    for _, draw in sorted(near, key=lambda t: -t[0]):
        draw()

    if not target:
        return np.clip(cv.rgb + 0.5, 0, 255).astype(np.uint8), cv.label, cond
    _texture(cv, cam, rng, cond)
    rgb, label = _camera_finish(cv.rgb, cv.label, rng, roll, zoom, cond)
    return rgb, label, cond


def render_scene(rng: np.random.Generator, width: int, height: int, style: str) -> tuple[np.ndarray, np.ndarray]:
    """Draw one street scene; returns (uint8 HxWx3 RGB, uint8 HxW labels 0..9).

    ``style`` is "source" (flat game look) or "target" (real-camera look).
    """
    if style not in STYLES:
        raise BadInput(f"style must be one of {', '.join(STYLES)}, got {style!r}")
    rgb, label, _ = _render(rng, int(width), int(height), style)
    return rgb, label


# --------------------------------------------------------------------------- dataset


def _check_args(n_source, n_target, n_val, size, seed) -> tuple[int, int]:
    def is_int(v) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    for name, v in (("n_source", n_source), ("n_target", n_target), ("n_val", n_val)):
        if not is_int(v) or v < 1:
            raise BadInput(f"{name} must be a whole number of images >= 1, got {v!r}")
    if not is_int(seed) or seed < 0:
        raise BadInput(f"seed must be a non-negative integer, got {seed!r}")
    try:
        width, height = size
    except (TypeError, ValueError):
        raise BadInput(f"size must be (width, height), got {size!r}") from None
    if not (is_int(width) and is_int(height)):
        raise BadInput(f"size must be two integers (width, height), got {size!r}")
    if width < 32 or height < 16 or width % 16 or height % 16:
        raise BadInput(f"size must be at least 32x16 with both sides multiples of 16 "
                       f"(models downsample by 16), got {width}x{height}")
    return int(width), int(height)


def _clear_stale(folder: Path, prefix: str, keep: int) -> None:
    # A rerun with fewer images must not leave the old tail behind as data.
    if not folder.is_dir():
        return
    pattern = re.compile(rf"{prefix}_(\d+)\.png")
    for p in folder.iterdir():
        m = pattern.fullmatch(p.name)
        if m and int(m.group(1)) >= keep:
            p.unlink()


def _write_split(pool: ThreadPoolExecutor, pending: deque, out: Path, split: tuple, n: int,
                 width: int, height: int, seed: int, progress: bool) -> dict:
    folder, split_index, prefix, label_dir, style = split
    root = out / folder
    atomic_write_text(root / "classes.txt", "\n".join(SYNTH_CLASSES) + "\n")
    pixels = np.zeros(256, np.int64)
    conditions = {"dusk": 0, "asphalt_sidewalk": 0, "lush_terrain": 0}
    for i in range(n):
        rgb, label, cond = _render(np.random.default_rng([seed, split_index, i]), width, height, style)
        name = f"{prefix}_{i:05d}.png"
        pending.append(pool.submit(write_image, root / "images" / name, rgb))
        pending.append(pool.submit(write_label, root / label_dir / name, label))
        while len(pending) > 16:
            pending.popleft().result()
        pixels += np.bincount(label.ravel(), minlength=256)
        for k, v in cond.items():
            conditions[k] += int(v)
        if progress and ((i + 1) % 50 == 0 or i + 1 == n):
            print(f"synth: {folder} {i + 1}/{n}", file=sys.stderr, flush=True)
    _clear_stale(root / "images", prefix, n)
    _clear_stale(root / label_dir, prefix, n)
    total = int(pixels.sum())
    n_cls = len(SYNTH_CLASSES)
    return {
        "style": style,
        "count": n,
        "images": "images",
        "labels": label_dir,
        "class_frequency": {c: round(float(pixels[k]) / total, 6) for k, c in enumerate(SYNTH_CLASSES)},
        "ignore_frequency": round(float(pixels[n_cls:].sum()) / total, 6),
        "conditions": conditions,
    }


def write_synth_pair(out: str | Path, n_source: int = 200, n_target: int = 200, n_val: int | None = None,
                     size: tuple[int, int] = (256, 128), seed: int = 0, progress: bool = False) -> dict:
    """Write the source / target_train / target_val folders and synth.json under ``out``.

    ``size`` is (width, height). ``n_val`` defaults to max(1, n_target // 2).
    target_train keeps its ground truth in oracle_labels/ (the pool is meant
    to be unlabeled); synth.json is written last, so its presence means the
    set is complete. Returns the synth.json content.
    """
    if n_val is None:
        n_val = max(1, n_target // 2) if isinstance(n_target, (int, np.integer)) else n_target
    width, height = _check_args(n_source, n_target, n_val, size, seed)
    out = Path(out)
    counts = {"source": int(n_source), "target_train": int(n_target), "target_val": int(n_val)}

    splits: dict[str, dict] = {}
    # PNG encoding and fsync release the GIL, so a writer thread overlaps them
    # with drawing; the bounded backlog keeps memory flat for big sets.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: deque[Future] = deque()
        try:
            for split in _SPLITS:
                splits[split[0]] = _write_split(pool, pending, out, split, counts[split[0]],
                                                width, height, int(seed), progress)
            while pending:
                pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()

    meta = {
        "generator": "atool.data.synth",
        "version": 1,
        "seed": int(seed),
        "size": [width, height],
        "counts": counts,
        "classes": list(SYNTH_CLASSES),
        "splits": splits,
    }
    atomic_write_text(out / "synth.json", json.dumps(meta, indent=2) + "\n")
    return meta
