"""Keeping the frames most worth labeling within a byte quota and a frame count, crash-safe.

Each offered frame has a priority key ``(tier, score)``: tier 1 for frames
around an alarm's onset, 0 otherwise; the score is the frame's shift score.
When the folder is over its quota or count, the lowest key goes first (a new
frame that would itself be lowest is never written). The folder holds the PNG
frames and ``queries.json``, an ``atool.query/v1`` list with a few
highest-entropy points per kept frame, so ``atool oracle`` / ``ingest`` and
annotation tools take the folder as it is (``--images DIR``).

Quota: frames plus twice the list's size (the old and the new list exist
together for a moment during its atomic replace) never exceed the quota.
Order of work for a kept frame: drop evicted entries from the list, delete
their files, write the frame, write the list. Every write is atomic (a temp
file renamed into place), so a crash at any point leaves complete files only;
the next start deletes leftover temp files and frames the list does not name.
"""

from __future__ import annotations

import bisect
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np

import atool
from atool.active.query_list import QUERY_FORMAT, score_json
from atool.core.errors import BadInput
from atool.core.io import atomic_write_bytes, atomic_write_text

LIST_NAME = "queries.json"


def top_points(entropy: np.ndarray, n: int, frame_hw: tuple[int, int], grid: tuple[int, int] = (2, 4)) -> list[tuple[int, int, float]]:
    """``n`` distinct (x, y, entropy) points in frame pixels: the most uncertain pixel of each of the top grid cells.

    ``entropy``: float h x w map at the model's input size; coordinates are scaled to ``frame_hw`` (H, W).
    """
    h, w = entropy.shape
    gh, gw = min(grid[0], h), min(grid[1], w)
    cells = []
    for r in range(gh):
        for c in range(gw):
            y0, y1, x0, x1 = r * h // gh, (r + 1) * h // gh, c * w // gw, (c + 1) * w // gw
            cell = entropy[y0:y1, x0:x1]
            j = int(cell.argmax())
            cells.append((float(cell.flat[j]), y0 + j // cell.shape[1], x0 + j % cell.shape[1]))
    cells.sort(key=lambda t: (-t[0], t[1], t[2]))
    sy, sx = frame_hw[0] / h, frame_hw[1] / w
    out, seen = [], set()
    for val, y, x in cells[:n]:
        fx, fy = min(frame_hw[1] - 1, int(x * sx)), min(frame_hw[0] - 1, int(y * sy))
        if (fx, fy) not in seen:
            seen.add((fx, fy))
            out.append((fx, fy, val))
    return out


class FrameCapture:
    def __init__(self, root: str | os.PathLike, quota: int, max_count: int, model: dict[str, Any], classes: list[str],
                 points: int = 5):
        if quota < 1:
            raise BadInput(f"--capture-quota must be a positive size, got {quota}")
        if max_count < 1:
            raise BadInput(f"--capture-max must be >= 1, got {max_count}")
        self.root, self.quota, self.max_count = Path(root), int(quota), int(max_count)
        self.model, self.classes, self.points = model, classes, points
        self.root.mkdir(parents=True, exist_ok=True)
        self.entries: dict[str, dict[str, Any]] = {}  # file name -> image entry (+ "_bytes", "_key")
        self.order: list[tuple[tuple[int, float], str]] = []  # ascending priority
        self.frame_bytes = 0
        self.list_bytes = 0
        self.kept_total = 0
        self.evicted_total = 0
        self._recover()

    # -- start-up --------------------------------------------------------------------------------
    def _recover(self) -> None:
        """Delete temp files of an interrupted run and frames the list does not name; resume the rest."""
        listed: dict[str, Any] = {}
        path = self.root / LIST_NAME
        if path.is_file():
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
                listed = {e["image"]: e for e in doc.get("images", []) if (self.root / e["image"]).is_file()}
                # A calibration for another model would make the old points meaningless.
                if doc.get("model", {}).get("sha256") != self.model.get("sha256"):
                    listed = {}
            except (ValueError, KeyError, TypeError):
                listed = {}
        for p in self.root.iterdir():
            if p.is_file() and (p.name.startswith(".") or (p.suffix == ".png" and p.name not in listed)):
                p.unlink(missing_ok=True)
        for name, entry in listed.items():
            entry["_bytes"] = (self.root / name).stat().st_size
            entry["_key"] = (int(entry.get("tier", 0)), float(entry["score"]))
            self._add(name, entry)
        evicted = self._enforce()
        self._write_list()
        for old, _ in evicted:
            (self.root / old).unlink(missing_ok=True)

    # -- bookkeeping -----------------------------------------------------------------------------
    def _add(self, name: str, entry: dict[str, Any]) -> None:
        self.entries[name] = entry
        bisect.insort(self.order, (entry["_key"], name))
        self.frame_bytes += entry["_bytes"]

    def _remove(self, name: str) -> None:
        entry = self.entries.pop(name)
        self.order.remove((entry["_key"], name))
        self.frame_bytes -= entry["_bytes"]

    def lowest(self) -> tuple[int, float] | None:
        return self.order[0][0] if self.order else None

    def would_keep(self, key: tuple[int, float]) -> bool:
        """Cheap test before encoding: is there room, or a lower-priority frame to evict?"""
        full = len(self.entries) >= self.max_count or self.frame_bytes >= self.quota * 0.95
        return not full or (self.order and key > self.order[0][0])

    def _list_text(self) -> str:
        images = []
        for name, e in self.entries.items():
            images.append({k: v for k, v in e.items() if not k.startswith("_")})
        images.sort(key=lambda e: (-e["score"], e["image"]))
        n = 0
        for e in images:
            e["queries"].sort(key=lambda q: (-q["score"], q["y"], q["x"]))
            for q in e["queries"]:
                n += 1
                q["id"] = f"q{n:06d}"
        doc = {"format": QUERY_FORMAT, "atool_version": atool.__version__,
               "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "model": self.model,
               "classes": self.classes,
               "strategy": {"name": "monitor-capture", "params": {"points_per_frame": self.points, "quota": self.quota,
                                                                  "max_frames": self.max_count}},
               "budget": {"points": n, "scope": "total", "used": n}, "images": images, "skipped": []}
        return json.dumps(doc, indent=1) + "\n"

    def _enforce(self) -> list[tuple[str, dict[str, Any]]]:
        """Drop lowest-priority entries (in memory only) until count and bytes fit; returns them."""
        evicted = []
        while self.entries and (len(self.entries) > self.max_count
                                or self.frame_bytes + 2 * len(self._list_text().encode()) > self.quota):
            name = self.order[0][1]
            evicted.append((name, self.entries[name]))
            self._remove(name)
        return evicted

    def _write_list(self) -> None:
        text = self._list_text()
        self.list_bytes = len(text.encode())
        atomic_write_text(self.root / LIST_NAME, text)

    # -- the one public step ---------------------------------------------------------------------
    def offer(self, index: int, rgb: np.ndarray, score: float, entropy: np.ndarray, tier: int = 0,
              predicted: np.ndarray | None = None) -> bool:
        """Keep frame ``index`` (uint8 H x W x 3 RGB) if it ranks; ``entropy`` is its float h x w map,
        ``predicted`` its uint8/int h x w class map (for the points' ``predicted``). Returns whether it was kept."""
        key = (int(tier), float(score))
        name = f"f_{index:08d}.png"
        if name in self.entries:  # already kept: only raise its priority (e.g. it turned out to precede an alarm)
            old = self.entries[name]
            if key > old["_key"]:
                self._remove(name)
                old.update({"_key": key, "tier": key[0], "score": score_json(min(score, 1e6))})
                self._add(name, old)
                self._write_list()
            return True
        if not self.would_keep(key):
            return False
        ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if not ok:
            return False
        data = buf.tobytes()
        if len(data) + 2 * 2048 > self.quota:
            raise BadInput(f"--capture-quota {self.quota} bytes is too small for one frame ({len(data)} bytes as PNG "
                           "plus the query list); raise it, e.g. --capture-quota 500MB")
        h, w = rgb.shape[:2]
        queries = []
        for x, y, val in top_points(entropy, self.points, (h, w)):
            cls = None
            if predicted is not None:
                py, px = y * predicted.shape[0] // h, x * predicted.shape[1] // w
                c = int(predicted[py, px])
                cls = self.classes[c] if 0 <= c < len(self.classes) else None
            queries.append({"kind": "point", "x": x, "y": y, "score": score_json(val), "predicted": cls})
        entry = {"image": name, "width": w, "height": h, "score": score_json(score), "tier": int(tier), "frame": int(index),
                 "queries": queries, "_bytes": len(data), "_key": key}
        self._add(name, entry)
        evicted = self._enforce()
        if any(old == name for old, _ in evicted):
            if len(evicted) == 1 and not self.entries:
                raise BadInput(f"--capture-quota {self.quota} bytes is too small for one frame ({len(data)} bytes as PNG "
                               "plus the query list); raise it, e.g. --capture-quota 500MB")
            # The new frame ranks lowest: put the others back, nothing on disk changes.
            for old, e in evicted:
                if old != name:
                    self._add(old, e)
            return False
        self._remove(name)  # not on disk yet
        if evicted:
            self._write_list()  # the list stops naming them before their files go
            for old, _ in evicted:
                (self.root / old).unlink(missing_ok=True)
            self.evicted_total += len(evicted)
        atomic_write_bytes(self.root / name, data)
        self._add(name, entry)
        self._write_list()
        self.kept_total += 1
        return True

    def close(self) -> dict[str, Any]:
        self._write_list()
        return {"kept": len(self.entries), "bytes": self.frame_bytes + self.list_bytes, "quota": self.quota,
                "written": self.kept_total, "evicted": self.evicted_total, "list": str(self.root / LIST_NAME)}


_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def parse_quota(text: str) -> int:
    """``"2GB"``, ``"500MiB"``, ``"123456"`` -> bytes."""
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?I?B?)\s*", str(text).upper())
    if not m or m.group(2) not in _UNITS:
        raise BadInput(f"--capture-quota {text!r} is not a size; write e.g. 2GB, 500MB or 750MiB")
    return int(float(m.group(1)) * _UNITS[m.group(2)])
