"""``atool oracle``: answer a query list from ground-truth labels (the simulated annotator)."""

from __future__ import annotations

import click

from atool.commands._oneline import OneLineCommand


@click.command("oracle", cls=OneLineCommand)
@click.option("--queries", required=True, type=click.Path(dir_okay=False), help="atool.query/v1 file from `atool query`.")
@click.option("--labels", required=True, type=click.Path(file_okay=False), help="Ground-truth label folder (<relative stem>.png, 255 = ignore).")
@click.option("--out", default="answers.json", show_default=True, type=click.Path(dir_okay=False), help="atool.answers/v1 file to write.")
def command(queries: str, labels: str, out: str) -> None:
    """Answer every query from ground truth: a point with its pixel's class, a region with its pixels' classes."""
    from atool.annotate.oracle import answer_queries

    s = answer_queries(queries, labels, out)
    click.echo(
        f"oracle: {s['points']} point answers and {s.get('regions', 0)} regions ({s.get('region_pixels', 0)} labeled pixels) "
        f"on {s['images']} images ({s['null']} null), "
        f"{s['skipped_images']} images skipped -> {out}"
    )
