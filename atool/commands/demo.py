"""``atool demo``: the whole loop on the built-in synthetic pair."""

from __future__ import annotations

import click

from atool.commands._oneline import OneLineCommand


@click.command("demo", cls=OneLineCommand)
@click.option("--out", default="demo_out", show_default=True, type=click.Path(file_okay=False), help="Working folder for data, models and results.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--config", "config_path", type=click.Path(), help="A YAML like atool/workflows/demo.yaml (only what changes) for iterations, budget, sizes.")
def command(out: str, seed: int, config_path: str | None) -> None:
    """Run synth -> source -> advent -> export -> query -> oracle -> ingest -> adapt -> eval and print the table."""
    from atool.core.config import load_yaml
    from atool.workflows.demo import demo_config, format_table, run_demo

    cfg = demo_config(load_yaml(config_path) if config_path else None)
    summary = run_demo(out, seed=seed, config=cfg)
    click.echo(format_table(summary))
