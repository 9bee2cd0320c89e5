"""``atool report``: one self-contained HTML page about a query list, an ``atool loop`` run or an ``atool curve`` run."""

from __future__ import annotations

import click

from atool.commands._oneline import OneLineCommand


@click.command("report", cls=OneLineCommand)
@click.argument("run", type=click.Path())
@click.option("--out", default="report.html", show_default=True, type=click.Path(dir_okay=False), help="HTML file to write.")
@click.option("--images", default=None, type=click.Path(file_okay=False),
              help="Image root of the queries, for thumbnails and predicted areas [default: a curve's pool images].")
@click.option("--model", default=None, type=click.Path(dir_okay=False),
              help="Model whose predictions the thumbnails show [default: the query list's model, a curve's start model].")
@click.option("--thumbnails", default=8, show_default=True, type=int, help="Overlay thumbnails shown (best-scored images).")
@click.option("--sample", default=32, show_default=True, type=int, help="Queried images whose predicted class areas are counted.")
def command(run: str, out: str, images: str | None, model: str | None, thumbnails: int, sample: int) -> None:
    """Write RUN's report: overlays, queries per class vs predicted areas, mIoU vs clicks, per-class IoU.

    RUN is a query list (atool.query/v1), an `atool loop` folder or an `atool curve` folder.
    The page is one file that works offline: figures are embedded PNGs.
    """
    from atool.workflows.report import write_report

    s = write_report(run, out, images=images, model=model, thumbnails=thumbnails, sample=sample)
    click.echo(f"report: {s['kind']}, {s['figures']} figures, {s['thumbnails']} thumbnails, {s['bytes'] // 1024} KiB -> {s['out']}")
    for note in s["notes"]:
        click.echo(f"report: note: {note}")
