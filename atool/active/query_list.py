"""Building the ``atool.query/v1`` list from a run's chosen points or regions.

Order is part of the contract (DESIGN.md §3): images by their best score, then
path; an image's queries by score, then (y, x); ids numbered in file order.
Scores are written as the shortest text that reads back as the same float32,
so the same inputs, model and seed give the same bytes apart from ``created``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Callable

import numpy as np

import atool
from atool.active.candidates import Candidates, Regions, order
from atool.core.errors import BadInput, Failure
from atool.core.io import sha256_file

QUERY_FORMAT = "atool.query/v1"


def check_stems(rels: list[str]) -> None:
    """Pseudo labels (and ingest) key images by path without suffix; two images must not share one."""
    seen: dict[str, str] = {}
    for rel in rels:
        stem = PurePosixPath(rel).with_suffix("").as_posix()
        if stem in seen:
            raise BadInput(
                f"images {seen[stem]} and {rel} share the name {stem}; labels are keyed by path without suffix, "
                "so rename one before writing pseudo labels"
            )
        seen[stem] = rel


def score_json(value: float) -> float:
    # The shortest text that reads back as the same float32: stable, short,
    # and it keeps the order of distinct float32 scores.
    return float(str(np.float32(value)))


def group_by_image(
    rels: list[str], sizes: np.ndarray, chosen_image: np.ndarray, chosen: Candidates | Regions,
    make_query: Callable[[int, int, int], dict[str, Any]],
) -> list[dict[str, Any]]:
    """Group chosen queries by image; images by best score then path, queries by score then (y, x).

    ``sizes``: int32 (images, 2) of (height, width); ``chosen_image``: int32 (K,)
    image index of each chosen item. ``make_query(j, height, width)`` turns
    chosen item ``j`` into its query dict (without ``id``); ids are numbered
    afterwards in file order.
    """
    if len(chosen) == 0:
        return []
    # File order ignores patch ids: score, then image, then (y, x).
    idx = order(chosen.score, np.zeros(len(chosen), np.int32), chosen.y, chosen.x, chosen_image)
    img_sorted = chosen_image[idx]
    # A stable sort by image groups each image's queries and keeps their order.
    by_image = np.argsort(img_sorted, kind="stable")
    grouped = idx[by_image]
    images, bounds = np.unique(img_sorted[by_image], return_index=True)
    entries = []
    for img, part in zip(images.tolist(), np.split(grouped, bounds[1:])):
        h, w = (int(v) for v in sizes[img])
        queries = [make_query(j, h, w) for j in part.tolist()]
        best = float(chosen.score[part].max())
        entries.append((-best, rels[img], {"image": rels[img], "width": w, "height": h, "score": score_json(best), "queries": queries}))
    entries.sort(key=lambda e: (e[0], e[1]))
    out = []
    n = 0
    for _, _, entry in entries:
        for q in entry["queries"]:
            n += 1
            q["id"] = f"q{n:06d}"
        out.append(entry)
    return out


def _predicted(classes: list[str], cls: int) -> str | None:
    return classes[cls] if 0 <= cls < len(classes) else None


def point_entries(
    rels: list[str], sizes: np.ndarray, chosen_image: np.ndarray, chosen: Candidates, classes: list[str]
) -> list[dict[str, Any]]:
    """``images`` entries of point queries."""

    def point(j: int, h: int, w: int) -> dict[str, Any]:
        return {"kind": "point", "x": int(chosen.x[j]), "y": int(chosen.y[j]), "score": score_json(chosen.score[j]),
                "predicted": _predicted(classes, int(chosen.cls[j]))}

    return group_by_image(rels, sizes, chosen_image, chosen, point)


def region_entries(
    rels: list[str], sizes: np.ndarray, chosen_image: np.ndarray, chosen: Regions, classes: list[str]
) -> list[dict[str, Any]]:
    """Like ``point_entries`` for regions: each query carries its COCO RLE ``mask``."""

    def region(j: int, h: int, w: int) -> dict[str, Any]:
        return {"kind": "region", "x": int(chosen.x[j]), "y": int(chosen.y[j]), "score": score_json(chosen.score[j]),
                "predicted": _predicted(classes, int(chosen.cls[j])), "area": int(chosen.area[j]),
                "mask": {"size": [h, w], "counts": str(chosen.counts[j])}}

    return group_by_image(rels, sizes, chosen_image, chosen, region)


def budget_block(
    budget: int, per_image: bool, processed: int, entries: list[dict[str, Any]], pixel_ratio: float | None = None,
    pixel_budget: int = 0,
) -> dict[str, Any]:
    """The list's ``budget``: ``points`` is the run's total (budget x processed images under ``per_image``).

    Region runs (``pixel_ratio`` given) add ``pixel_ratio``, ``pixels`` (the pixel budget) and ``pixels_used``.
    """
    used = sum(len(e["queries"]) for e in entries)
    block: dict[str, Any] = {"points": budget * processed if per_image else budget, "scope": "per_image" if per_image else "total", "used": used}
    if per_image:
        block["per_image"] = budget
    if pixel_ratio is not None:
        block["pixel_ratio"] = pixel_ratio
        block["pixels"] = int(pixel_budget)
        block["pixels_used"] = int(sum(q["area"] for e in entries for q in e["queries"]))
    return block


def make_query_list(
    *, model_path: Path, backend_name: str, classes: list[str], strategy: str, params: dict[str, Any], seed: int,
    budget: dict[str, Any], entries: list[dict[str, Any]], skipped: list[dict[str, str]], stats: dict[str, int],
    pseudo: dict[str, Any] | None = None, model_sha256: str | None = None,
) -> dict[str, Any]:
    """The ``atool.query/v1`` dict, checked against query-list.schema.json (a broken contract is a Failure: ours).

    ``model_sha256``: the model file's hash when the caller has it already (else it is computed here).
    """
    query_list: dict[str, Any] = {
        "format": QUERY_FORMAT,
        "atool_version": atool.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {"path": str(model_path), "sha256": model_sha256 or sha256_file(model_path), "backend": backend_name},
        "classes": classes,
        "strategy": {"name": strategy, "params": dict(params), "seed": int(seed)},
        "budget": budget,
        "images": entries,
        "skipped": skipped,
        "stats": stats,
    }
    if pseudo is not None:
        query_list["pseudo"] = pseudo

    from atool.core.schemas import validate

    try:
        validate(schema_sample(query_list), "query-list", "the query list atool built")
    except BadInput as exc:  # our own output breaking the contract is a bug, not the user's input
        raise Failure(str(exc)) from None
    return query_list


SCHEMA_CHECK_QUERIES = 2000  # lists up to this many queries are checked whole


def schema_sample(query_list: dict[str, Any]) -> dict[str, Any]:
    """What ``make_query_list`` checks against the schema: the list itself when it is small,
    else every field but ``images``, of which up to 32 entries spread over the list.

    Every entry comes out of one function (``point_entries``/``region_entries``)
    from typed arrays, so a sample catches a broken writer as surely as the
    whole list does. The whole list costs jsonschema about 65 us per query:
    3 ms per image at 50 points, after the scan and not overlapped with it,
    and half a minute for a 10,000-image fleet. The tests check whole lists.
    """
    images = query_list["images"]
    if sum(len(entry["queries"]) for entry in images) <= SCHEMA_CHECK_QUERIES:
        return query_list
    picks = sorted({round(i * (len(images) - 1) / 31) for i in range(32)})
    return dict(query_list, images=[images[i] for i in picks])
