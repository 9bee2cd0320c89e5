"""Procedural street layouts: one scene per call, from one random generator."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from atool.core.errors import BadInput
from atool.data.synth.classes import BUILDING, ROAD, SIDEWALK, SKY, TERRAIN
from atool.data.synth.draw import (
    Camera, Canvas, draw_building, draw_car, draw_hedge, draw_person, draw_pole, draw_tree,
)
from atool.data.synth.style import (
    M_BRICK, M_LANE, M_PLAIN, M_STRIPE, SOURCE_PALETTE, STYLES, TARGET_PALETTE, Colour, camera_finish, jit, pick,
    roll_zoom, scale, texture,
)

_Z_FAR = 1000.0  # metres; projects to within a fraction of a pixel of the horizon


def render(rng: np.random.Generator, width: int, height: int, style: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """Draw one scene; returns (uint8 HxWx3 RGB, uint8 HxW labels 0..9, the target conditions drawn).

    The conditions dict has bool ``dusk``, ``asphalt_sidewalk`` and
    ``lush_terrain`` (all False for the source style). ``style`` is not checked here.
    """
    target = style == "target"
    pal = TARGET_PALETTE if target else SOURCE_PALETTE
    w, h = width, height
    cond = {
        "dusk": target and rng.random() < 0.3,
        "asphalt_sidewalk": target and rng.random() < 0.5,
        "lush_terrain": target and rng.random() < 0.5,
    }

    if target:
        roll = float(rng.uniform(-4.0, 4.0))
        zoom = roll_zoom(roll, w, h)
        # Pick where the horizon should land after the zoom, then undo the zoom.
        hy = h * (0.5 + (rng.uniform(0.35, 0.6) - 0.5) / zoom)
        cam = Camera(w * rng.uniform(0.5, 0.62), w * (0.5 + rng.uniform(-0.06, 0.06)), hy, rng.uniform(1.3, 1.8))
    else:
        roll, zoom = 0.0, 1.0
        cam = Camera(w * 0.55, w * (0.5 + rng.uniform(-0.06, 0.06)), h * 0.45, 1.5)
    z_bottom = cam.f * cam.hc / (h - cam.hy)  # ground depth seen by the last row
    z_clip = 0.5 * z_bottom

    cv = Canvas(w, h)

    # Sky: vertical gradient, then everything below the horizon starts as terrain.
    top, low = pal["sky"][1 if cond["dusk"] else 0]
    top, low = jit(rng, top, 8), jit(rng, low, 8)
    t = np.clip(np.arange(h, dtype=np.float32) / max(cam.hy, 1.0), 0, 1)[:, None]
    cv.rgb[:] = (np.asarray(top, np.float32) * (1 - t) + np.asarray(low, np.float32) * t)[:, None, :]
    cv.label[:] = SKY
    terrain = jit(rng, pal["terrain"][1 if cond["lush_terrain"] else 0], 8)
    hy0 = int(math.floor(cam.hy))
    if hy0 < h:
        cv.rgb[max(hy0, 0):] = terrain
        cv.label[max(hy0, 0):] = TERRAIN

    # Cross-section of the street from the road edge outwards on each side.
    road_col = jit(rng, pal["road"], 5)
    walk_col = jit(rng, pal["walk"][1 if cond["asphalt_sidewalk"] else 0], 6)
    curb_col = jit(rng, pal["curb"], 5)
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

    def strip(a: float, b: float, cls: int, colour: Colour, mat: int = M_PLAIN) -> None:
        cv.polys(cam.project([a, b, b, a], 0.0, [z_clip, z_clip, _Z_FAR, _Z_FAR]), cls, colour, mat)

    strip(-half[-1], half[1], ROAD, road_col)
    for s in (-1, 1):
        sd = sides[s]
        e = sd["edge"]
        strip(s * e, s * (e + 0.3), SIDEWALK, curb_col)
        if sd["grass"]:
            strip(s * (e + 0.3), s * sd["walk0"], TERRAIN, jit(rng, terrain, 4))
        strip(s * sd["walk0"], s * (sd["walk0"] + sd["walk"]), SIDEWALK, walk_col)

    # Lane markings: dashes stop where they would be thinner than ~0.4 px.
    lane_col = jit(rng, pick(rng, pal["lane"]), 5)
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
            cv.polys(cam.project(xl + np.array([-0.07, 0.07, 0.07, -0.07]), 0.0, zz), ROAD, lane_col, M_LANE)

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
                    far.append((zt, lambda xt=xt, zt=zt: draw_tree(cv, cam, rng, xt, zt, pal, 1.3, target)))
                z += gap
                continue
            length = rng.uniform(8, 28)
            b = {
                "side": s, "x": xb, "z1": z, "z2": z + length, "h": rng.uniform(5, 20),
                "depth": rng.uniform(8, 20), "colour": jit(rng, pick(rng, pal["building"]), 12),
                "mat": (M_BRICK, M_STRIPE, M_PLAIN)[int(rng.integers(3))] if target else M_PLAIN,
                "win_spacing": rng.uniform(2.4, 3.6), "win_w": rng.uniform(1.0, 1.6),
                "window": jit(rng, pal["window"][0], 8),
                "window_lit": jit(rng, pal["window"][-1], 8),
                "lit_share": 0.35 if cond["dusk"] else 0.0,
            }
            far.append((z, lambda b=b: draw_building(cv, cam, rng, b, z_clip)))
            z += length + rng.uniform(0, 1.0)
    if rng.random() < 0.7:
        # A skyline across the end of the street so the vanishing point is not bare.
        zb = rng.uniform(110, 200)
        x = -70.0
        while x < 70:
            bw, bh = rng.uniform(6, 20), rng.uniform(5, 35)
            col = scale(jit(rng, pick(rng, pal["building"]), 12), 0.8)
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
                draw_hedge(cv, cam, rng, x, z, z + ln, pal)
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
        near.append((z, lambda x=x, z=z, size=size: draw_tree(cv, cam, rng, x, z, pal, size, target)))

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
                     draw_pole(cv, cam, rng, x, z, -s, pal, sign, lamp)))

    n_cars = int(rng.integers(1, 5) if target else rng.integers(4, 10))
    for _ in range(n_cars):
        if rng.random() < 0.4:
            s = int(rng.choice([-1, 1]))
            x = s * (half[s] - 1.15)  # parked at the curb
        else:
            x = rng.uniform(-half[-1] + 1.2, half[1] - 1.2)
        z = rng.uniform(z_bottom + 1, 70)
        near.append((z, lambda x=x, z=z: draw_car(cv, cam, rng, x, z, pal)))

    n_people = int(rng.integers(3, 10)) if target else int(rng.choice([0, 1, 2], p=[0.15, 0.5, 0.35]))
    for _ in range(n_people):
        if target and rng.random() < 0.15:
            x = rng.uniform(-half[-1] + 0.5, half[1] - 0.5)  # crossing the road
        else:
            x = on_walk(int(rng.choice([-1, 1])), 0.1, 0.9)
        z = rng.uniform(z_bottom + 0.5, 45)
        near.append((z, lambda x=x, z=z: draw_person(cv, cam, rng, x, z, pal)))

    for _, draw in sorted(near, key=lambda t: -t[0]):
        draw()

    if not target:
        return np.clip(cv.rgb + 0.5, 0, 255).astype(np.uint8), cv.label, cond
    texture(cv, cam, rng, cond)
    rgb, label = camera_finish(cv.rgb, cv.label, rng, roll, zoom, cond)
    return rgb, label, cond


def render_scene(rng: np.random.Generator, width: int, height: int, style: str) -> tuple[np.ndarray, np.ndarray]:
    """Draw one street scene; returns (uint8 HxWx3 RGB, uint8 HxW labels 0..9).

    ``style`` is "source" (flat game look) or "target" (real-camera look).
    """
    if style not in STYLES:
        raise BadInput(f"style must be one of {', '.join(STYLES)}, got {style!r}")
    rgb, label, _ = render(rng, int(width), int(height), style)
    return rgb, label
