"""``atool oracle``: answer a query list from ground-truth labels (the simulated annotator)."""

from __future__ import annotations

import click

from atool.commands._oneline import OneLineCommand


@click.command("oracle", cls=OneLineCommand)
@click.option("--queries", required=True, type=click.Path(dir_okay=False), help="atool.query/v1 file from `atool query`.")
@click.option("--labels", required=True, type=click.Path(file_okay=False), help="Ground-truth label folder (<relative stem>.png, 255 = ignore).")
@click.option(
    "--format", "fmt", default="json", show_default=True, metavar="FORMAT",
    help="Write the answers as this query-list format's tool exports them (json = atool.answers/v1, labelstudio = a Label Studio export).",
)
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="File to write [default: answers.json, or the format's own name].")
def command(queries: str, labels: str, fmt: str, out: str | None) -> None:
    """Answer every query from ground truth: a point with its pixel's class, a region with its pixels' classes."""
    from atool.annotate.formats import default_answers_out
    from atool.annotate.oracle import answer_queries

    out = out or str(default_answers_out(fmt))
    s = answer_queries(queries, labels, out, fmt=fmt)
    click.echo(
        f"oracle: {s['points']} point answers and {s.get('regions', 0)} regions ({s.get('region_pixels', 0)} labeled pixels) "
        f"on {s['images']} images ({s['null']} null), "
        f"{s['skipped_images']} images skipped -> {out}"
    )
