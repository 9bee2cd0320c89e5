"""Contract test over every query-list format in ``FORMATS``: a new format is covered without editing this file.

For each format: write a query list (points; regions where the format carries
them), answer it with the oracle from a ground-truth fixture, write the
answers as the format's tool exports them (``write_answers``), check that
this format and no other ``recognizes`` the export, read it back
(``read_answers``) into the oracle's own answers, and ingest it into the same
labels as the oracle's atool answers, equal to the ground truth where asked.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from atool.ops import rle
from atool.annotate.formats import FORMATS, QueryFormat, RawText, format_of, write_query_list
from atool.annotate.ingest import ingest_answers, read_answer_data
from atool.annotate.oracle import answer_queries
from atool.core.errors import BadInput
from atool.core.schemas import validate
from atool.data.images import read_label, write_image, write_label

CLASSES = ["road", "car", "sky"]
W, H = 10, 7
NAMES = FORMATS.names()


@pytest.fixture
def world(tmp_path: Path) -> dict:
    """Three images with ground truth (one pixel ignore, one out of range) and one image without any."""
    rng = np.random.default_rng(0)
    images, gt = tmp_path / "images", tmp_path / "gt"
    truth = {}
    for rel in ("a.png", "sub/b b.jpg", "c.png", "nogt.png"):
        write_image(images / rel, rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
        if rel == "nogt.png":
            continue
        label = rng.integers(0, len(CLASSES), (H, W)).astype(np.uint8)
        label[0, 0], label[0, 1] = 255, 9  # null answers: ignore, and a value outside the class list
        write_label(gt / Path(rel).with_suffix(".png"), label)
        truth[rel] = label
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return {"root": tmp_path, "images": images, "gt": gt, "truth": truth}


def query_list(world: dict, regions: bool) -> dict:
    """A valid atool.query/v1 list: 4 points per image, or 2 regions per image."""
    rng = np.random.default_rng(1)
    entries, n = [], 0
    for rel in sorted(world["truth"]) + ["nogt.png"]:
        queries = []
        cells = rng.choice(H * W - 2, 4, replace=False) + 2
        if rel == "a.png":
            cells[:2] = [0, 1]  # the ignore and the out-of-range pixel
        for k, cell in enumerate(cells.tolist()):
            y, x = divmod(cell, W)
            n += 1
            q = {"id": f"q{n:06d}", "kind": "point", "x": x, "y": y, "score": 1.0 - n / 100, "predicted": CLASSES[k % 3]}
            if regions:
                if k >= 2:
                    continue
                mask = np.zeros((H, W), bool)
                if k == 0:
                    mask[y, :] = True  # the query's row
                else:
                    mask[:, x] = True  # the query's column
                q.update(kind="region", mask=rle.encode(mask))
            queries.append(q)
        entries.append({"image": rel, "width": W, "height": H, "score": queries[0]["score"], "queries": queries})
    used = sum(len(e["queries"]) for e in entries)
    qlist = {
        "format": "atool.query/v1", "atool_version": "0.1.0", "created": "2024-01-01T00:00:00+00:00",
        "model": {"path": "m.pt", "sha256": "0" * 64, "backend": "torch"}, "classes": CLASSES,
        "strategy": {"name": "test", "params": {}, "seed": 0},
        "budget": {"points": used, "scope": "total", "used": used}, "images": entries, "skipped": [],
    }
    validate(qlist, "query-list", "test query list")
    return qlist


def test_every_format_declares_every_hook():
    for name, cls in FORMATS.items():
        for hook in ("write", "read_answers", "write_answers"):
            assert getattr(cls, hook) is not getattr(QueryFormat, hook), f"{name} does not implement {hook}"
        assert cls.recognizes.__func__ is not QueryFormat.recognizes.__func__, f"{name} does not implement recognizes"
        assert cls.title != "?" and cls.answers_description != "?" and cls.default_answers_name


def _round_trip(name: str, world: dict, regions: bool) -> None:
    root = world["root"] / name
    qlist = query_list(world, regions)
    written = write_query_list(qlist, root / "queries" / FORMATS.get(name).default_name, name)
    assert written and all(p.is_file() for p in written)
    qpath = root / "queries.json"
    qpath.write_text(json.dumps(qlist))

    reference = answer_queries(qpath, world["gt"], root / "reference.json")  # atool.answers/v1
    ref_doc = json.loads((root / "reference.json").read_text())
    s = answer_queries(qpath, world["gt"], root / FORMATS.get(name).default_answers_name, fmt=name)
    assert s["format"] == name and s["points"] == reference["points"] and s["region_pixels"] == reference["region_pixels"]
    export = Path(s["files"][0])

    data = read_answer_data(export)
    fmt = format_of(data, str(export))  # only this format may recognize its export
    assert fmt.name == name
    assert [n for n, cls in FORMATS.items() if cls.recognizes(data)] == [name]
    answer_set = fmt.read_answers(data, str(export))
    assert answer_set.report.skipped_total == 0
    assert answer_set.to_doc(CLASSES)["images"] == ref_doc["images"]  # ids, pixels, labels, masks: all kept

    got = ingest_answers(export, root / "sparse", classes=CLASSES, images_root=world["images"])
    want = ingest_answers(root / "reference.json", root / "want", images_root=world["images"])
    assert got["skipped_total"] == 0 and got["images"] == want["images"] == len(world["truth"])
    assert got["points"] == want["points"] > 0 and got["null_answers"] == want["null_answers"] > 0
    for rel, truth in world["truth"].items():
        stem = Path(rel).with_suffix(".png")
        label = read_label(root / "sparse" / "labels" / stem)
        assert np.array_equal(label, read_label(root / "want" / "labels" / stem))
        asked = read_label(root / "sparse" / "origin" / stem) == 1
        assert asked.any() and np.array_equal(label[asked], truth[asked])  # the oracle's labels are the truth
        assert (label[~asked] == 255).all()


@pytest.mark.parametrize("name", NAMES)
def test_format_round_trips_point_answers(name, world):
    _round_trip(name, world, regions=False)


@pytest.mark.parametrize("name", NAMES)
def test_format_round_trips_region_answers_or_refuses_them(name, world):
    if FORMATS.get(name).regions:
        _round_trip(name, world, regions=True)
        return
    qpath = world["root"] / "regions.json"
    qpath.write_text(json.dumps(query_list(world, regions=True)))
    with pytest.raises(BadInput) as exc:
        answer_queries(qpath, world["gt"], world["root"] / "out", fmt=name)
    assert "\n" not in str(exc.value) and not (world["root"] / "out").exists()


def test_unrecognized_answer_files_name_every_format(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"format": "cvat?"}')
    with pytest.raises(BadInput) as exc:
        format_of(read_answer_data(path), str(path))
    for _, cls in FORMATS.items():
        assert cls.answers_description in str(exc.value)
    path.write_text("<annotations/>")
    data = read_answer_data(path)
    assert isinstance(data, RawText) and data == "<annotations/>"
    with pytest.raises(BadInput, match="not valid JSON"):
        format_of(data, str(path))
    with pytest.raises(BadInput, match="not found"):
        read_answer_data(tmp_path / "nope.json")
