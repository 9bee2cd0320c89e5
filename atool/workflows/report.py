"""``atool report RUN --out report.html``: one self-contained page about a query list, a loop or a curve run.

RUN is one of:
- a query list (``atool.query/v1`` file from ``atool query``);
- an ``atool loop`` folder (``loop.json``; each ``stage_k/queries.json``);
- an ``atool curve`` folder (``curve.json``, ``curve_config.json``; the
  queries of each strategy's first-seed arm at the report budget).

The page shows overlay thumbnails of queried images (atool.workflows.overlays,
the model run again on them), the queries per predicted class against the
predicted class areas (over a sample of the queried images; for a curve also
the clicks per true class against the pool's class shares), mIoU against
clicks (curve: per strategy, mean and std over seeds, with its references;
loop: per stage against cumulative clicks), and per-class IoU bars where the
run's JSON has them. What cannot be shown (no image folder, no model file, no
per-class IoU in the JSON) is said on the page instead.

Everything is inline: figures are matplotlib PNGs and thumbnails PNGs, both
as base64 data: URIs, CSS in a <style> element, no script, no external URL.
Every string from the run is escaped with html.escape.
"""

from __future__ import annotations

import base64
import html
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from atool.core.errors import BadInput
from atool.core.io import atomic_write_text, read_json

log = logging.getLogger("atool.report")


@dataclass
class Run:
    """What a report is made of: the run's kind and JSON, its query lists, and where images and model are."""

    kind: str
    path: Path
    query_lists: list[tuple[str, dict[str, Any]]]
    summary: dict[str, Any] = field(default_factory=dict)
    images: Path | None = None
    model: Path | None = None


@dataclass
class Section:
    title: str
    notes: list[str] = field(default_factory=list)
    figures: list[tuple[str, bytes]] = field(default_factory=list)
    thumbnails: list[tuple[str, bytes]] = field(default_factory=list)
    table: list[tuple[str, str]] = field(default_factory=list)


def _query_list_at(path: Path) -> dict[str, Any] | None:
    from atool.annotate.oracle import load_query_list

    return load_query_list(path) if path.is_file() else None


def load_run(run: str | os.PathLike, images: str | os.PathLike | None = None, model: str | os.PathLike | None = None) -> Run:
    """Recognise RUN (query list file, loop folder, curve folder); BadInput in one line when it is none of them."""
    from atool.annotate.oracle import load_query_list

    path = Path(run)
    if path.is_file():
        qlist = load_query_list(path)
        found = Run("query list", path, [(path.name, qlist)])
    elif (path / "curve.json").is_file():
        curve = read_json(path / "curve.json", "curve summary")
        config = read_json(path / "curve_config.json", "curve config") if (path / "curve_config.json").is_file() else {}
        budget, seed = curve.get("report_budget"), (curve.get("config", {}).get("seeds") or [0])[0]
        lists = []
        for strategy in curve.get("strategies", {}):
            for stage in sorted((path / "arms" / strategy / f"b{budget}_s{seed}").glob("stage_*/queries.json")):
                lists.append((f"{strategy}, {budget} clicks/image, seed {seed}, {stage.parent.name}", load_query_list(stage)))
        pool = config.get("inputs", {}).get("pool")
        found = Run("curve", path, lists, curve, Path(pool) / "images" if pool else None,
                    Path(curve["start"]["model"]) if isinstance(curve.get("start"), dict) and curve["start"].get("model") else None)
    elif (path / "loop.json").is_file():
        loop = read_json(path / "loop.json", "loop summary")
        lists = [(f"stage {s.get('stage')}", q) for s in loop.get("stages", [])
                 if (q := _query_list_at(path / f"stage_{s.get('stage')}" / "queries.json")) is not None]
        found = Run("loop", path, lists, loop)
    elif path.is_dir():
        raise BadInput(f"{path} holds neither loop.json (an `atool loop` run) nor curve.json (an `atool curve` run); "
                       "give one of those folders or a query list file")
    else:
        raise BadInput(f"{path} does not exist; give a query list file, an `atool loop` folder or an `atool curve` folder")
    if images is not None:
        found.images = Path(images)
        if not found.images.is_dir():
            raise BadInput(f"image folder {found.images} does not exist")
    if model is not None:
        found.model = Path(model)
        if not found.model.is_file():
            raise BadInput(f"model file {found.model} not found")
    if found.model is None and found.query_lists:
        recorded = Path(str(found.query_lists[0][1].get("model", {}).get("path", "")))
        found.model = recorded if recorded.is_file() else None
    return found


# ------------------------------------------------------------------------ sections


def _overview(run: Run) -> Section:
    sec = Section("Run")
    sec.table.append(("kind", run.kind))
    sec.table.append(("path", str(run.path)))
    if run.query_lists:
        first = run.query_lists[0][1]
        sec.table.append(("classes", ", ".join(first["classes"])))
        sec.table.append(("query lists", str(len(run.query_lists))))
        for name, q in run.query_lists:
            b = q["budget"]
            sec.table.append((f"{name}", f"strategy {q['strategy']['name']}, {b['used']}/{b['points']} queries ({b['scope']}) "
                                          f"on {len(q['images'])} images, model {Path(str(q['model'].get('path', '?'))).name}"))
    return sec


def _predicted_counts(qlists: list[tuple[str, dict[str, Any]]], classes: list[str]) -> list[float]:
    index = {c: i for i, c in enumerate(classes)}
    counts = np.zeros(len(classes))
    for _, q in qlists:
        for item in q["images"]:
            for query in item["queries"]:
                if query.get("predicted") in index:
                    counts[index[query["predicted"]]] += 1
    return counts.tolist()


def _pct(values: list[float]) -> list[float]:
    total = float(sum(values))
    return [100.0 * v / total if total else 0.0 for v in values]


def _sample_maps(run: Run, qlist: dict[str, Any], limit: int) -> tuple[list[tuple[dict[str, Any], np.ndarray, np.ndarray]], str | None]:
    """(item, image, predicted labels) for up to ``limit`` images of ``qlist``, best image score first; or a reason why none."""
    from atool.annotate.collect import safe_rel
    from atool.data.images import BadImage, read_image
    from atool.runtime.backends import load_backend

    if run.images is None:
        return [], "no image folder: pass --images DIR for thumbnails and predicted class areas"
    if run.model is None:
        return [], "no model file (the query list's model.path does not exist): pass --model FILE for thumbnails and predicted class areas"
    backend = load_backend(run.model)
    out = []
    for item in sorted(qlist["images"], key=lambda it: -it["score"]):
        rel = safe_rel(item["image"])
        if rel is None:
            continue
        try:
            image = read_image(run.images / rel)
        except BadImage as exc:
            log.warning("report: skipped %s: %s", rel, exc)
            continue
        out.append((item, image, backend.infer(image[None])["prob"][0].argmax(axis=0)))
        if len(out) >= limit:
            break
    return out, None if out else f"none of the queried images could be read under {run.images}"


def _png_bytes(rgb: np.ndarray) -> bytes:
    import cv2

    _, data = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    return data.tobytes()


def _queries(run: Run, thumbnails: int, sample: int) -> list[Section]:
    from atool.workflows.overlays import draw_overlay
    from atool.workflows.report_plots import class_shares

    if not run.query_lists:
        return [Section("Queries", notes=["the run has no query lists (no stage_*/queries.json)"])]
    name, first = run.query_lists[0]
    classes = list(first["classes"])
    maps, why = _sample_maps(run, first, max(thumbnails, sample))
    thumbs = Section(f"Overlay thumbnails ({name})")
    shares = Section("Queries per class against predicted class areas")
    if why:
        thumbs.notes.append(why)
        shares.notes.append(why + "; only the queries are counted")
    scores = [q["score"] for item in first["images"] for q in item["queries"]]
    score_range = (min(scores), max(scores)) if scores else (0.0, 1.0)
    for item, image, labels in maps[:thumbnails]:
        picture = draw_overlay(image, labels, item, classes, score_range, min_width=320)
        thumbs.thumbnails.append((f"{item['image']}: {len(item['queries'])} queries, image score {item['score']:.3g}", _png_bytes(picture)))
    series = {"queries by predicted class": _pct(_predicted_counts(run.query_lists, classes))}
    if maps:
        area = np.bincount(np.concatenate([m.ravel() for _, _, m in maps]), minlength=len(classes))[: len(classes)]
        series[f"predicted pixels ({len(maps)} queried images)"] = _pct(area.astype(float).tolist())
    shares.figures.append(("Share of queries by the model's predicted class, beside the share of pixels it predicts as that class.",
                           class_shares(classes, series, "queries vs predicted class areas")))
    if run.kind == "curve":
        pool = run.summary.get("pool_class_pct") or {}
        budget = run.summary.get("report_budget")
        s = {"pool pixels (ground truth)": [float(pool.get(c, 0.0)) for c in classes]}
        for strat, rec in run.summary.get("strategies", {}).items():
            clicks = rec.get("budgets", {}).get(str(budget), {}).get("clicks_by_class_pct")
            if clicks:
                s[f"{strat} clicks ({budget}/image)"] = [float(clicks.get(c, 0.0)) for c in classes]
        shares.figures.append((f"Where the clicks landed by true class at {budget} clicks per image, against the pool's class shares.",
                               class_shares(classes, s, "clicks by true class vs pool class shares")))
    return [thumbs, shares]


def _curve_sections(run: Run) -> list[Section]:
    from atool.workflows.report_plots import iou_bars, miou_curve

    c = run.summary
    classes = list(c.get("classes", []))
    start = float(c["start"]["miou"]) if isinstance(c.get("start"), dict) and c["start"].get("miou") is not None else None
    lines = {}
    for strat, rec in c.get("strategies", {}).items():
        budgets = sorted(rec.get("budgets", {}), key=float)
        xs, means, stds = ([0.0], [start], [0.0]) if start is not None else ([], [], [])
        for b in budgets:
            xs.append(float(b))
            means.append(rec["budgets"][b]["mean"])
            stds.append(rec["budgets"][b].get("std", 0.0))
        lines[strat] = (xs, means, stds)
    refs = {}
    if isinstance(c.get("full_labels"), dict) and c["full_labels"].get("mean") is not None:
        refs["full labels"] = float(c["full_labels"]["mean"])
    if isinstance(c.get("lower"), dict) and c["lower"].get("miou") is not None:
        refs["source only"] = float(c["lower"]["miou"])
    miou = Section("mIoU against clicks")
    miou.figures.append(("Mean over seeds (band: one standard deviation); 0 clicks is the start model.",
                         miou_curve(lines, refs, "clicks per pool image", "mIoU vs clicks")))
    for strat, rec in c.get("strategies", {}).items():
        reach = rec.get("clicks_to_90")
        miou.table.append((strat, f"area under curve {rec.get('auc')}, clicks per image to 90% of the gap: "
                                  f"{'not reached' if reach is None else reach}"))
    budget = str(c.get("report_budget"))
    series = {f"{s} ({budget}/image)": [float(r["budgets"][budget]["iou"].get(k, 0.0)) for k in classes]
              for s, r in c.get("strategies", {}).items() if budget in r.get("budgets", {}) and "iou" in r["budgets"][budget]}
    iou = Section("Per-class IoU")
    if series:
        iou.figures.append((f"Per-class IoU at {budget} clicks per image, mean over seeds.", iou_bars(classes, series, "per-class IoU")))
    else:
        iou.notes.append("curve.json has no per-class IoU at the report budget")
    return [miou, iou]


def _loop_sections(run: Run) -> list[Section]:
    from atool.workflows.report_plots import iou_bars, miou_curve

    loop = run.summary
    stages = loop.get("stages", [])
    xs, ys, clicks = [], [], 0
    if isinstance(loop.get("start"), dict) and loop["start"].get("miou") is not None:
        xs.append(0.0)
        ys.append(float(loop["start"]["miou"]))
    for s in stages:
        clicks += int(s.get("queries", 0))
        if s.get("miou") is not None:
            xs.append(float(clicks))
            ys.append(float(s["miou"]))
    miou = Section("mIoU against clicks and stages")
    for s in stages:
        miou.table.append((f"stage {s.get('stage')}", f"{s.get('strategy')}: {s.get('queries')} queries, mIoU {s.get('miou')}"))
    if len(ys) >= 1:
        miou.figures.append(("mIoU after each stage against the clicks spent so far (0: the start model).",
                             miou_curve({"loop": (xs, ys, [0.0] * len(ys))}, {}, "clicks (cumulative)", "mIoU vs clicks")))
    else:
        miou.notes.append("loop.json has no mIoU (the loop ran without --val)")
    iou = Section("Per-class IoU")
    classes = run.query_lists[0][1]["classes"] if run.query_lists else []
    series = {f"stage {s.get('stage')}": [float(s["iou"].get(c, 0.0)) for c in classes] for s in stages if isinstance(s.get("iou"), dict)}
    if series and classes:
        iou.figures.append(("Per-class IoU after each stage.", iou_bars(classes, series, "per-class IoU")))
    else:
        iou.notes.append("loop.json carries no per-class IoU; evaluate a stage's model with `atool eval` for it")
    return [miou, iou]


# ------------------------------------------------------------------------ page

_CSS = """body{font-family:sans-serif;margin:24px;max-width:1150px;color:#222}h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;
padding-bottom:4px;margin-top:28px}table{border-collapse:collapse;font-size:13px}td{border:1px solid #ddd;padding:3px 8px;vertical-align:top}
.note{color:#8a5a00;font-size:13px}figure{margin:10px 0}figcaption{font-size:12px;color:#555}.thumbs{display:flex;flex-wrap:wrap;gap:10px}
.thumbs figure{width:540px}.thumbs img{width:100%;height:auto;border:1px solid #ccc}"""


def _img(data: bytes, alt: str) -> str:
    return f'<img src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}" alt="{html.escape(alt)}">'


def render(title: str, sections: list[Section]) -> str:
    """The HTML page of ``sections``; every string in it is escaped."""
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{esc(title)}</title>",
             f"<style>{_CSS}</style></head><body>", f"<h1>{esc(title)}</h1>"]
    for sec in sections:
        parts.append(f"<h2>{esc(sec.title)}</h2>")
        parts += [f'<p class="note">{esc(n)}</p>' for n in sec.notes]
        if sec.table:
            parts.append("<table>" + "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in sec.table) + "</table>")
        for caption, data in sec.figures:
            parts.append(f"<figure>{_img(data, caption)}<figcaption>{esc(caption)}</figcaption></figure>")
        if sec.thumbnails:
            parts.append('<div class="thumbs">' + "".join(
                f"<figure>{_img(data, caption)}<figcaption>{esc(caption)}</figcaption></figure>" for caption, data in sec.thumbnails) + "</div>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(run: str | os.PathLike, out: str | os.PathLike, *, images: str | os.PathLike | None = None,
                 model: str | os.PathLike | None = None, thumbnails: int = 8, sample: int = 32) -> dict[str, Any]:
    """Write the report page of RUN to ``out``; returns what it holds (kind, sections, figures, thumbnails, bytes)."""
    if thumbnails < 0 or sample < 0:
        raise BadInput(f"--thumbnails and --sample must be 0 or more, got {thumbnails} and {sample}")
    loaded = load_run(run, images, model)
    if loaded.kind == "curve":
        scores = _curve_sections(loaded)
    elif loaded.kind == "loop":
        scores = _loop_sections(loaded)
    else:
        scores = [Section("mIoU", notes=["a query list carries no scores: report an `atool loop` or `atool curve` folder for mIoU"])]
    # Scores first (what the run achieved), then what was asked and why, then the per-class detail.
    sections = [_overview(loaded), scores[0], *_queries(loaded, thumbnails, sample), *scores[1:]]
    page = render(f"atool report: {loaded.kind} {loaded.path}", sections)
    path = atomic_write_text(out, page)
    summary = {
        "out": str(path), "kind": loaded.kind, "sections": [s.title for s in sections],
        "figures": sum(len(s.figures) for s in sections), "thumbnails": sum(len(s.thumbnails) for s in sections),
        "notes": [n for s in sections for n in s.notes], "bytes": len(page.encode("utf-8")),
    }
    log.info("report: %s run, %d figures, %d thumbnails -> %s", loaded.kind, summary["figures"], summary["thumbnails"], path)
    return summary


__all__ = ["Run", "Section", "load_run", "render", "write_report"]
