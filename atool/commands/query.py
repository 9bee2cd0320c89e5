"""``atool query``: choose the points annotators should label.

Every ``QueryConfig`` field is an option (``--param KEY=VALUE`` for its
``params``), as are the keys of the list file below; all of them are keys of
a ``--config`` YAML too, which the options given here override.

Budget, K and n for ``entropy_patch`` (n = --points-per-patch):
  --budget B             B points in total, whole patches best first across
                         all images (B // n patches, then B % n points).
  --per-image --budget B B points per image: K = B // n patches (+ B % n points).
  --per-image --top-k K  the paper's wording: B = K x n points per image
                         (K = 10, n = 5 gives 50); with --budget too, they must agree.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import click

from atool.active.query_config import QueryConfig
from atool.commands._oneline import OneLineCommand
from atool.commands._options import FORMAT, STRATEGY, backend_options
from atool.core.config import dataclass_options, setting
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


@dataclass
class QueryCommandConfig(QueryConfig):
    """QueryConfig plus the keys of the list file and the paper's entropy_patch wording."""

    out: str | None = setting(None, "Output file  [default: queries.json, or queries.labelstudio.json]", metavar="PATH")
    format: str = setting("json", "Query-list format.")
    image_root_url: str | None = setting(None, "labelstudio: URL prefix of data.image  [default: /data/local-files/?d=]")
    grid: tuple[int, int] | None = setting(None, "entropy_patch grid  [default: 16x8]", metavar="COLSxROWS")
    points_per_patch: int | None = setting(None, "entropy_patch points drawn per patch, n  [default: 5]")
    top_k: int | None = setting(None, "With --per-image: K patches per image, i.e. budget K x n.")
    resume: bool = setting(False, "Continue a run that was cut off (its state is OUT.partial-state) without redoing finished images.")
    checkpoint_every: int = setting(100, "Save the run's state every N images, for --resume (0: never).", metavar="N")

    def validate(self) -> None:
        self.params = _patch_params(self.strategy, self.params, self.grid, self.points_per_patch)
        self.grid = self.points_per_patch = None  # folded into params
        from atool.active.strategies import make_strategy

        n = make_strategy(self.strategy, self.params).params.get("points_per_patch", 1)
        self.budget = _resolve_budget(self.budget, self.per_image, self.top_k, self.strategy, n)
        if self.checkpoint_every < 0:
            raise BadInput(f"--checkpoint-every must be 0 (never) or more images, got {self.checkpoint_every}")
        super().validate()

    def query(self) -> QueryConfig:
        return QueryConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(QueryConfig)})


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


def _resolve_budget(budget: int | None, per_image: bool, top_k: int | None, strategy: str, n: int) -> int | None:
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
@click.option("--overlays", "overlays", type=click.Path(file_okay=False), default=None,
              help="Also write one overlay PNG per queried image here (points by score, regions, predicted labels).")
@click.option("--model", "model", envvar="ATOOL_MODEL", type=click.Path(dir_okay=False),
              help="Model file: checkpoint (.pt) or exported (.onnx, .engine).  [default: $ATOOL_MODEL, or query: {model: ...} in ./atool.yaml]")
@click.option("--images", required=True, type=click.Path(file_okay=False), help="Folder of target images (searched recursively).")
@dataclass_options(QueryCommandConfig, exclude=("params",), types={"strategy": STRATEGY, "format": FORMAT})
@click.option("--param", "param", multiple=True, metavar="KEY=VALUE", help="Strategy parameter (repeatable), e.g. radius=8.")
@click.option("--config", "config_path", type=click.Path(), help="YAML of the keys above (params: {KEY: VALUE}); options given here override it.")
@backend_options
def command(model: str | None, images: str, param: tuple[str, ...], config_path: str | None, **options: Any) -> None:
    """Score every image under --images and write the points to annotate.

    \b
    Budget, K and n for entropy_patch (n = --points-per-patch, default 5):
      --budget B               B points in total; whole patches, best first, across all
                               images (B // n patches, then B % n points of the next)
      --per-image --budget B   B points per image: its top K = B // n patches (+ B % n points)
      --per-image --top-k K    the paper's K: B = K x n per image (K=10, n=5: 50 points)
    """
    from atool.core.openmp import passive_openmp_waits

    passive_openmp_waits()  # before anything imports torch: decode and selection threads need the cores
    from atool.annotate.formats import default_out
    from atool.core.config import build_config, load_yaml
    from atool.workflows.query import query_to_file

    if not model:
        raise BadInput("no model: give --model FILE, set ATOOL_MODEL=FILE, or name it in ./atool.yaml as query: {model: FILE}")
    overlays = options.pop("overlays", None)
    runtime = {k: options.pop(k, None) for k in ("backend", "provider", "bench")}
    preset = load_yaml(config_path) if config_path else {}
    options["params"] = parse_params(param) or None
    cfg = build_config(QueryCommandConfig, preset, options, label="query config")
    out_path = cfg.out if cfg.out is not None else str(default_out(cfg.format))
    format_options = {"image_root_url": cfg.image_root_url} if cfg.image_root_url is not None else None
    from atool.runtime.select import open_backend

    model = open_backend(model, backend=runtime["backend"], device=cfg.device, provider=runtime["provider"], bench=runtime["bench"])
    result = query_to_file(model, images, cfg.query(), out_path, cfg.format, format_options, progress=True,
                           resume=cfg.resume, checkpoint_every=cfg.checkpoint_every)
    if result["shard"]["rank"] != 0:
        return  # under torchrun, rank 0 reports for the run
    if overlays is not None:
        from atool.workflows.overlays import write_overlays

        click.echo(f"query: {len(write_overlays(result, images, model, overlays))} overlay pictures -> {overlays}")
    t = result["timings"]
    b = result["budget"]
    click.echo(
        f"query: {result['stats']['images_processed']} images, {len(result['skipped'])} skipped, "
        f"{b['used']}/{b['points']} queries ({b['scope']}) -> {out_path}; "
        f"decode {t['decode']:.2f}s infer {t['infer']:.2f}s select {t['select']:.2f}s write {t['write']:.2f}s total {t['total']:.2f}s"
    )
