"""Field domain shifts rendered onto target-domain frames: night, fog, rain, a new camera.

These are what a deployed model meets after adaptation: the same streets under
another light or weather, or through another sensor. Each shift is a pure
function of (frame, parameters); the parameters are drawn once per segment by
``draw_params`` so a video segment keeps one look (a fog bank does not change
density every frame) while per-frame noise (rain streaks, sensor noise) comes
from the frame's own generator. Our own numpy/OpenCV rendering: no corruption
library is needed at these sizes.
"""

from __future__ import annotations

from typing import Any, Callable

import cv2
import numpy as np

from atool.core.errors import BadInput

Params = dict[str, Any]


def _night_params(rng: np.random.Generator, severity: float) -> Params:
    return {"gain": float(rng.uniform(0.18, 0.28) / severity), "gamma": float(rng.uniform(1.3, 1.6)),
            "tint": rng.uniform([0.75, 0.85, 1.05], [0.85, 0.95, 1.2]).tolist(), "noise": float(4.0 * severity),
            "lamp": float(rng.uniform(0.25, 0.45))}


def night(rgb: np.ndarray, p: Params, rng: np.random.Generator) -> np.ndarray:
    """Low light: gamma-darkened, blue-tinted, headlight pool on the road, strong sensor noise."""
    h, w = rgb.shape[:2]
    x = (rgb.astype(np.float32) / 255.0) ** p["gamma"] * p["gain"] * np.float32(p["tint"])
    # Headlights light the road ahead: an elliptic pool at the bottom centre.
    yy, xx = np.ogrid[0:h, 0:w]
    pool = np.exp(-(((xx - w / 2) / (0.35 * w)) ** 2 + ((yy - h) / (0.35 * h)) ** 2)).astype(np.float32)
    x = x * (1.0 + p["lamp"] * 6.0 * pool[:, :, None])
    x = x * 255.0 + rng.normal(0.0, p["noise"], x.shape).astype(np.float32)
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def _fog_params(rng: np.random.Generator, severity: float) -> Params:
    return {"density": float(min(0.95, rng.uniform(0.55, 0.75) * severity)), "airlight": float(rng.uniform(0.75, 0.9)),
            "blur": float(rng.uniform(0.8, 1.5))}


def fog(rgb: np.ndarray, p: Params, rng: np.random.Generator) -> np.ndarray:
    """Haze: blend toward a grey airlight, densest at the horizon (far away), lighter at the bottom (near)."""
    h = rgb.shape[0]
    rows = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    # Distance is largest around the horizon (upper middle of the frame) and shrinks toward the car.
    far = np.clip(1.0 - np.abs(rows - 0.45) * 1.2, 0.3, 1.0)
    t = np.exp(-3.0 * p["density"] * far)  # transmission
    x = rgb.astype(np.float32) / 255.0
    x = x * t + p["airlight"] * (1.0 - t)
    x = cv2.GaussianBlur(x, (0, 0), p["blur"])
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _rain_params(rng: np.random.Generator, severity: float) -> Params:
    return {"drops": float(rng.uniform(0.004, 0.007) * severity), "angle": float(rng.uniform(-20, 20)),
            "length": float(rng.uniform(0.08, 0.15)), "dim": float(rng.uniform(0.7, 0.85)), "blur": float(rng.uniform(0.6, 1.2))}


def rain(rgb: np.ndarray, p: Params, rng: np.random.Generator) -> np.ndarray:
    """Overcast and wet: dimmer, lower contrast, bright slanted streaks, a slightly blurred lens."""
    h, w = rgb.shape[:2]
    x = rgb.astype(np.float32)
    x = (x - x.mean()) * 0.75 + x.mean() * p["dim"]
    streaks = np.zeros((h, w), np.float32)
    n = max(1, int(p["drops"] * h * w))
    length = max(2.0, p["length"] * h)
    ys, xs = rng.uniform(0, h, n), rng.uniform(0, w, n)
    dx, dy = np.sin(np.radians(p["angle"])) * length, np.cos(np.radians(p["angle"])) * length
    for x0, y0 in zip(xs, ys):
        cv2.line(streaks, (int(x0), int(y0)), (int(x0 + dx), int(y0 + dy)), 1.0, 1, cv2.LINE_AA)
    x = x * (1.0 - 0.5 * streaks[:, :, None]) + 200.0 * 0.5 * streaks[:, :, None]
    x = cv2.GaussianBlur(x, (0, 0), p["blur"])
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def _camera_params(rng: np.random.Generator, severity: float) -> Params:
    # A mixing matrix near identity: another sensor's colour response.
    mix = np.eye(3) + rng.uniform(-0.25, 0.25, (3, 3)) * severity
    # Another mount: pitched up or down, so the horizon sits elsewhere in the frame.
    pitch = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.15, 0.25) * severity)
    return {"zoom": float(1.0 + rng.uniform(0.3, 0.5) * severity), "dy": pitch,
            "mix": mix.tolist(), "gains": rng.uniform(0.8, 1.25, 3).tolist(), "scale": float(rng.uniform(0.3, 0.45) / severity)}


def camera(rgb: np.ndarray, p: Params, rng: np.random.Generator) -> np.ndarray:
    """Another camera: narrower field of view (centre crop, zoomed), other mount height, colour response and resolution."""
    h, w = rgb.shape[:2]
    m = np.float32([[p["zoom"], 0, w / 2 * (1 - p["zoom"])], [0, p["zoom"], h / 2 * (1 - p["zoom"]) + p["dy"] * h]])
    x = cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    x = x.astype(np.float32) @ np.float32(p["mix"]).T * np.float32(p["gains"])
    # Lower sensor resolution, shown at the stream's size.
    small = (max(8, int(w * p["scale"])), max(4, int(h * p["scale"])))
    x = cv2.resize(cv2.resize(np.clip(x, 0, 255), small, interpolation=cv2.INTER_AREA), (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


SHIFTS: dict[str, tuple[Callable[[np.random.Generator, float], Params], Callable[..., np.ndarray]]] = {
    "night": (_night_params, night),
    "fog": (_fog_params, fog),
    "rain": (_rain_params, rain),
    "camera": (_camera_params, camera),
}


def check_shift(name: str) -> str:
    if name not in SHIFTS:
        raise BadInput(f"unknown shift {name!r}; valid shifts: {', '.join(SHIFTS)}")
    return name


def draw_params(name: str, rng: np.random.Generator, severity: float = 1.0) -> Params:
    """The look of one segment under shift ``name`` (JSON-serialisable). ``severity`` > 0, 1 = the default strength."""
    check_shift(name)
    if not severity > 0:
        raise BadInput(f"shift severity must be > 0, got {severity}")
    return SHIFTS[name][0](rng, float(severity))


def apply_shift(rgb: np.ndarray, name: str, params: Params, rng: np.random.Generator) -> np.ndarray:
    """Render shift ``name`` onto uint8 HxWx3 RGB; returns a new uint8 HxWx3 RGB of the same size."""
    check_shift(name)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected uint8 HxWx3, got {rgb.dtype} {rgb.shape}")
    return SHIFTS[name][1](rgb, params, rng)
