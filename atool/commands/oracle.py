"""``atool oracle``: answer a query list from ground-truth labels (the simulated annotator)."""

from __future__ import annotations

import click

from atool.commands._oneline import OneLineCommand


@click.command("oracle", cls=OneLineCommand)
@click.option("--queries", required=True, type=click.Path(dir_okay=False), help="atool.query/v1 file from `atool query`.")
@click.option("--labels", required=True, type=click.Path(file_okay=False), help="Ground-truth label folder (<relative stem>.png, 255 = ignore).")
@click.option("--out", default="answers.json", show_default=True, type=click.Path(dir_okay=False), help="atool.answers/v1 file to write.")
def command(queries: str, labels: str, out: str) -> None:
    """Answer every point query with the ground-truth class at that pixel."""
    from atool.deploy.oracle import answer_queries

    s = answer_queries(queries, labels, out)
    click.echo(
        f"oracle: {s['points']} answers on {s['images']} images ({s['null']} null), "
        f"{s['skipped_images']} images skipped -> {out}"
    )
