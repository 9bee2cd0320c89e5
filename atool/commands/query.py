"""``atool query``: choose the points annotators should label.

Budget, K and n for ``entropy_patch`` (n = --points-per-patch):
  --budget B             B points in total, whole patches best first across
                         all images (B // n patches, then B % n points).
  --per-image --budget B B points per image: K = B // n patches (+ B % n points).
  --per-image --top-k K  the paper's wording: B = K x n points per image
                         (K = 10, n = 5 gives 50); with --budget too, they must agree.
"""

from __future__ import annotations

import json
from typing import Any

import click

from atool.commands._oneline import OneLineCommand
from atool.commands._options import SIZE
from atool.annotate.formats import FORMATS, default_out
from atool.active.strategies import STRATEGIES
from atool.core.errors import BadInput


def parse_params(items: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> dict; VALUE is read as JSON when it parses (3, 0.5, true), else kept as text."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadInput(f"--param {item!r} is not KEY=VALUE (e.g. --param radius=8)")
        if key in params:
            raise BadInput(f"--param {key} is given twice")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


def _patch_params(
    strategy: str, params: dict[str, Any], grid: tuple[int, int] | None, points_per_patch: int | None
) -> dict[str, Any]:
    explicit = {}
    if grid is not None:
        explicit.update(grid_cols=grid[0], grid_rows=grid[1])
    if points_per_patch is not None:
        explicit["points_per_patch"] = points_per_patch
    if explicit and strategy != "entropy_patch":
        raise BadInput(f"--grid and --points-per-patch belong to --strategy entropy_patch, not {strategy}")
    both = sorted(set(explicit) & set(params))
    if both:
        raise BadInput(f"{', '.join(both)} given both as a flag and as --param; give it once")
    return {**params, **explicit}


def _resolve_budget(budget: int | None, per_image: bool, top_k: int | None, strategy: str, n: int) -> int:
    if top_k is None:
        if budget is None:
            raise BadInput("give --budget N (points), or --per-image --top-k K for entropy_patch")
        return budget
    if not per_image or strategy != "entropy_patch":
        raise BadInput("--top-k counts patches per image: use it with --per-image and --strategy entropy_patch")
    if top_k < 0:
        raise BadInput(f"--top-k must be 0 or more, got {top_k}")
    if budget is not None and budget != top_k * n:
        raise BadInput(f"--budget {budget} and --top-k {top_k} disagree: with {n} points per patch, K patches = {top_k * n} points")
    return top_k * n


@click.command("query", cls=OneLineCommand)
@click.option("--model", "model", required=True, type=click.Path(dir_okay=False), help="Model file: checkpoint (.pt) or exported (.onnx, .engine).")
@click.option("--images", required=True, type=click.Path(file_okay=False), help="Folder of target images (searched recursively).")
@click.option("--budget", type=int, default=None, help="Point queries in total (or per image with --per-image).")
@click.option("--per-image", is_flag=True, help="The budget is per image, as in the papers.")
@click.option("--strategy", default="entropy_patch", show_default=True, type=click.Choice(STRATEGIES.names()), help="Selection strategy.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Strategy parameter (repeatable), e.g. radius=8.")
@click.option("--grid", type=SIZE, default=None, metavar="COLSxROWS", help="entropy_patch grid  [default: 16x8]")
@click.option("--points-per-patch", type=int, default=None, help="entropy_patch points drawn per patch, n  [default: 5]")
@click.option("--top-k", type=int, default=None, help="With --per-image: K patches per image, i.e. budget K x n.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Output file  [default: queries.json, or queries.labelstudio.json]")
@click.option("--format", "fmt", default="json", show_default=True, type=click.Choice(FORMATS.names()), help="Query-list format.")
@click.option("--image-root-url", default=None, help="labelstudio: URL prefix of data.image  [default: /data/local-files/?d=]")
@click.option("--pseudo-out", type=click.Path(file_okay=False), default=None, help="Write pseudo labels of unselected candidates here.")
@click.option("--pseudo-min-confidence", type=float, default=0.0, show_default=True, help="Keep pseudo labels only at this confidence or above.")
@click.option("--batch-size", type=int, default=4, show_default=True)
@click.option("--workers", type=int, default=2, show_default=True, help="Decode threads (0 = decode on the main thread).")
@click.option("--device", default=None, help="Backend device (cpu, cuda, cuda:1)  [default: the backend's own]")
@click.option("--exclude", type=click.Path(file_okay=False), default=None, help="Label PNGs of earlier rounds: their labeled pixels are not queried again.")
def command(
    model: str, images: str, budget: int | None, per_image: bool, strategy: str, params: tuple[str, ...],
    grid: tuple[int, int] | None, points_per_patch: int | None, top_k: int | None, seed: int, out: str | None,
    fmt: str, image_root_url: str | None, pseudo_out: str | None, pseudo_min_confidence: float,
    batch_size: int, workers: int, device: str | None, exclude: str | None,
) -> None:
    """Score every image under --images and write the points to annotate.

    \b
    Budget, K and n for entropy_patch (n = --points-per-patch, default 5):
      --budget B               B points in total; whole patches, best first, across all
                               images (B // n patches, then B % n points of the next)
      --per-image --budget B   B points per image: its top K = B // n patches (+ B % n points)
      --per-image --top-k K    the paper's K: B = K x n per image (K=10, n=5: 50 points)
    """
    from atool.active.query import run_query
    from atool.active.strategies import make_strategy

    strategy_params = _patch_params(strategy, parse_params(params), grid, points_per_patch)
    n = make_strategy(strategy, strategy_params).params.get("points_per_patch", 1)
    points = _resolve_budget(budget, per_image, top_k, strategy, n)
    out_path = out if out is not None else str(default_out(fmt))
    result = run_query(
        model, images, points, per_image=per_image, strategy=strategy, strategy_params=strategy_params, seed=seed,
        out=out_path, fmt=fmt, pseudo_out=pseudo_out, pseudo_min_confidence=pseudo_min_confidence,
        batch_size=batch_size, workers=workers, progress=True,
        format_options={"image_root_url": image_root_url} if image_root_url is not None else None, device=device,
        exclude=exclude,
    )
    t = result["timings"]
    b = result["budget"]
    click.echo(
        f"query: {result['stats']['images_processed']} images, {len(result['skipped'])} skipped, "
        f"{b['used']}/{b['points']} queries ({b['scope']}) -> {out_path}; "
        f"decode {t['decode']:.2f}s infer {t['infer']:.2f}s select {t['select']:.2f}s write {t['write']:.2f}s total {t['total']:.2f}s"
    )
