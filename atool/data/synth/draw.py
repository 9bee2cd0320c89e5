"""Drawing on a labelled canvas through a pinhole camera: the scene's objects."""

from __future__ import annotations

import math

import cv2
import numpy as np

from atool.data.synth.classes import BUILDING, CAR, PERSON, POLE, SIGN, VEGETATION
from atool.data.synth.style import M_GLASS, M_LEAF, M_PLAIN, M_WINDOW, Colour, jit, pick, scale

# Sub-pixel vertices: without them far, thin objects snap to whole pixels and
# jitter from image to image in a way no camera produces.
_SHIFT = 3
_SUB = float(1 << _SHIFT)


class Camera:
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


class Canvas:
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

    def polys(self, polys, cls: int, colour: Colour, mat: int = M_PLAIN) -> None:
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

    def ellipse(self, centre, axes, cls: int, colour: Colour, mat: int = M_PLAIN) -> None:
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
        self.mat[ya:yb, xa:xb] = M_PLAIN


# --------------------------------------------------------------------------- scene objects


def draw_building(cv: Canvas, cam: Camera, rng, b: dict, z_clip: float) -> None:
    side, xb, z1, z2, hb, depth = b["side"], b["x"], b["z1"], b["z2"], b["h"], b["depth"]
    if z2 <= z_clip:
        return
    # Sunlight from the left: flat per-face shading, as a game engine would do.
    facade = scale(b["colour"], 1.0 if side < 0 else 0.86)
    front = scale(b["colour"], 0.74)
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
        cv.polys(quads, BUILDING, colour, M_WINDOW)


def draw_tree(cv: Canvas, cam: Camera, rng, x: float, z: float, pal: dict, size: float, target: bool) -> None:
    crown_y = rng.uniform(3.2, 5.5) * size
    radius = rng.uniform(1.4, 2.6) * size
    tw = 0.32 * size
    trunk = jit(rng, pal["trunk"], 8)
    cv.polys(cam.project([x - tw / 2, x + tw / 2, x + tw / 2, x - tw / 2], [0, 0, crown_y, crown_y], z),
             VEGETATION, trunk, M_PLAIN)
    base = jit(rng, pal["veg"], 10)
    for _ in range(int(rng.integers(3, 7))):
        dx, dy = rng.uniform(-0.7, 0.7, 2) * radius
        r = radius * rng.uniform(0.55, 0.9)
        centre = cam.project(x + dx, crown_y + dy * 0.6, z)
        k = rng.uniform(0.85, 1.12) if target else rng.uniform(0.95, 1.05)
        cv.ellipse(centre, (cam.px(r, z), cam.px(r * rng.uniform(0.8, 1.05), z)), VEGETATION,
                   scale(base, k), M_LEAF)


def draw_hedge(cv: Canvas, cam: Camera, rng, x: float, z1: float, z2: float, pal: dict) -> None:
    h = rng.uniform(0.8, 1.6)
    cv.polys(cam.project(x, [0, 0, h, h], [z1, z2, z2, z1]), VEGETATION, jit(rng, pal["veg"], 10), M_LEAF)


def draw_pole(cv: Canvas, cam: Camera, rng, x: float, z: float, road_dir: float, pal: dict,
               sign: bool, lamp: bool) -> None:
    top = rng.uniform(4.0, 7.5) if not sign or lamp else rng.uniform(2.8, 4.2)
    colour = jit(rng, pal["pole"], 6)
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
        colour = jit(rng, pick(rng, pal["sign"]), 10)
        shape = int(rng.integers(3))
        if shape == 0:
            cv.polys(cam.project([x - s / 2, x + s / 2, x + s / 2, x - s / 2],
                                 [ys - s / 2, ys - s / 2, ys + s / 2, ys + s / 2], z), SIGN, colour)
        elif shape == 1:
            cv.polys(cam.project([x - s / 2, x + s / 2, x], [ys - s / 2.5, ys - s / 2.5, ys + s / 2], z),
                     SIGN, colour)
        else:
            cv.ellipse(cam.project(x, ys, z), (cam.px(s / 2, z), cam.px(s / 2, z)), SIGN, colour)


def draw_car(cv: Canvas, cam: Camera, rng, x: float, z: float, pal: dict) -> None:
    w, length = rng.uniform(1.65, 1.95), rng.uniform(3.9, 4.7)
    y0, y1, y2 = 0.28, rng.uniform(0.9, 1.05), rng.uniform(1.38, 1.55)
    body = jit(rng, pick(rng, pal["car"]), 12)
    glass, wheel = pal["glass"], pal["wheel"]
    xl, xr = x - w / 2, x + w / 2
    side_x = xl if xl > 0.1 else (xr if xr < -0.1 else None)
    if side_x is not None:
        side = scale(body, 0.82)
        zf = z + length
        cv.polys(cam.project(side_x, [0.12, 0.12, y1, y1], [z, zf, zf, z]), CAR, side)
        cv.polys(cam.project(side_x, [y1, y1, y2, y2], [z + 0.22 * length, z + 0.85 * length,
                                                         z + 0.72 * length, z + 0.32 * length]),
                 CAR, glass, M_GLASS)
        for zw in (z + 0.18 * length, z + 0.8 * length):
            r = cam.px(0.33, zw)
            cv.ellipse(cam.project(side_x, 0.33, zw), (r * 0.45, r), CAR, wheel)
    inset = 0.14
    cv.polys(cam.project([xl + 0.06, xl + 0.34, xl + 0.34, xl + 0.06], [0, 0, y0 + 0.1, y0 + 0.1], z), CAR, wheel)
    cv.polys(cam.project([xr - 0.34, xr - 0.06, xr - 0.06, xr - 0.34], [0, 0, y0 + 0.1, y0 + 0.1], z), CAR, wheel)
    cv.polys(cam.project([xl, xr, xr, xl], [y0, y0, y1, y1], z), CAR, body)
    cv.polys(cam.project([xl, xr, xr, xl], [y0, y0, y0 + 0.14, y0 + 0.14], z), CAR, scale(body, 0.55))
    cv.polys(cam.project([xl + inset, xr - inset, xr - 2.2 * inset, xl + 2.2 * inset], [y1, y1, y2, y2], z + 0.6),
             CAR, scale(body, 0.93))
    cv.polys(cam.project([xl + 2 * inset, xr - 2 * inset, xr - 3 * inset, xl + 3 * inset],
                         [y1 + 0.06, y1 + 0.06, y2 - 0.07, y2 - 0.07], z + 0.6), CAR, glass, M_GLASS)
    for xa in (xl + 0.08, xr - 0.3):
        cv.polys(cam.project([xa, xa + 0.22, xa + 0.22, xa], [y1 - 0.2, y1 - 0.2, y1 - 0.07, y1 - 0.07], z),
                 CAR, pal["tail"])


def draw_person(cv: Canvas, cam: Camera, rng, x: float, z: float, pal: dict) -> None:
    h = rng.uniform(1.5, 1.92)
    pants = jit(rng, pick(rng, pal["pants"]), 10)
    shirt = jit(rng, pick(rng, pal["shirt"]), 12)
    skin = jit(rng, pick(rng, pal["skin"]), 6)
    stride = rng.uniform(0.0, 0.12)
    for dx in (-1, 1):
        cv.polys(cam.project([x + dx * 0.03, x + dx * 0.16, x + dx * (0.16 + stride), x + dx * (0.03 + stride)],
                             [0.47 * h, 0.47 * h, 0, 0], z), PERSON, pants)
    cv.polys(cam.project([x - 0.2, x + 0.2, x + 0.2, x - 0.2], [0.45 * h, 0.45 * h, 0.82 * h, 0.82 * h], z),
             PERSON, shirt)
    for dx in (-1, 1):
        cv.polys(cam.project([x + dx * 0.2, x + dx * 0.27, x + dx * 0.27, x + dx * 0.2],
                             [0.8 * h, 0.8 * h, 0.5 * h, 0.5 * h], z), PERSON, scale(shirt, 0.88))
    r = 0.068 * h
    cv.ellipse(cam.project(x, 0.9 * h, z), (cam.px(r * 0.85, z), cam.px(r, z)), PERSON, skin)
    cv.ellipse(cam.project(x, 0.93 * h, z), (cam.px(r * 0.88, z), cam.px(r * 0.6, z)), PERSON,
               pick(rng, pal["hair"]))
