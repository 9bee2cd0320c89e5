"""``atool loop``: several active-learning stages (LabOR's three by default)."""

from __future__ import annotations

import click

from atool.commands._oneline import OneLineCommand
from atool.commands._options import STRATEGY


@click.command("loop", cls=OneLineCommand)
@click.option("--source", required=True, type=click.Path(), help="Labeled source dataset folder.")
@click.option("--target", required=True, type=click.Path(), help="Target pool folder (images/).")
@click.option("--oracle-labels", required=True, type=click.Path(), help="Ground-truth labels of the pool, answering the queries.")
@click.option("--init", required=True, type=click.Path(), help="The adapted model to start from (e.g. `atool train advent`).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder: stage_k/, labels/, loop.json.")
@click.option("--val", type=click.Path(), help="Labeled dataset scored after every stage.")
@click.option("--stages", type=int, help="Number of stages  [default: 3]")
@click.option("--strategy", type=STRATEGY, help="Query strategy  [default: stratified]")
@click.option("--budget", type=int, help="Points per stage (per image with --per-image)  [default: 10 per image]")
@click.option("--per-image/--total", default=None, help="Budget per image (default) or in total.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Strategy parameter (repeatable).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--config", "config_path", type=click.Path(),
              help="YAML of LoopConfig keys: stages, query{strategy,budget,per_image,params,...}, selector{...}, retrain{...}, train{...}, ingest{...}.")
def command(source, target, oracle_labels, init, out, val, stages, strategy, budget, per_image, params, seed, config_path) -> None:
    """Run STAGES x (selector -> query -> oracle -> ingest -> retrain); labels accumulate without duplicates."""
    from atool.commands.query import parse_params
    from atool.core.config import build_config, load_yaml
    from atool.workflows.rounds import LoopConfig, run_loop

    preset = load_yaml(config_path) if config_path else {}
    query = {"strategy": strategy, "budget": budget, "per_image": per_image, "params": parse_params(params) or None}
    cfg = build_config(LoopConfig, preset, {"stages": stages, "query": query}, label="loop config")
    summary = run_loop(source=source, target=target, oracle_labels=oracle_labels, init=init, out=out, val=val, seed=seed, config=cfg)
    click.echo(f"{'stage':<6} {'queries':>8} {'labeled px':>11} {'mIoU':>7}")
    start = summary["start"]
    click.echo(f"{0:<6} {0:>8} {0:>11} {start['miou'] if start['miou'] is not None else '-':>7}")
    for s in summary["stages"]:
        click.echo(f"{s['stage']:<6} {s['queries']:>8} {s['merge']['total_pixels']:>11} {s['miou'] if s['miou'] is not None else '-':>7}")
    click.echo(f"final model: {summary['final_model']}")
