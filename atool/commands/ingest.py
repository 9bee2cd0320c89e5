"""``atool ingest``: answers (any query-list format's export) -> sparse label PNGs."""

from __future__ import annotations

import click

from atool.commands._oneline import OneLineCommand


@click.command("ingest", cls=OneLineCommand)
@click.argument("answers", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for labels/, origin/, classes.txt, ingest.json.")
@click.option("--pseudo", type=click.Path(file_okay=False), default=None, help="Pseudo labels from `atool query --pseudo-out`, merged under the answers.")
@click.option("--images", type=click.Path(file_okay=False), default=None, help="Image root: answers for images not found there are skipped.")
@click.option("--classes", type=click.Path(dir_okay=False), default=None, help="classes.txt fixing label values (required for Label Studio exports).")
@click.option(
    "--expand", default=None, metavar="METHOD",
    help="Grow each answered point to more pixels: 'superpixel' labels its SLIC superpixel unless the superpixel is "
    "too large or too mixed in colour (needs --images). Off by default.",
)
@click.option(
    "--expand-param", "expand_params", multiple=True, metavar="KEY=VALUE",
    help="Expansion parameter, repeatable: segment_size (400), compactness (10), max_area (0 = 4 x segment_size), "
    "max_spread (10, RGB colour spread; inf = off).",
)
def command(
    answers: str, out: str, pseudo: str | None, images: str | None, classes: str | None, expand: str | None, expand_params: tuple[str, ...]
) -> None:
    """Write sparse target labels from annotators' answers."""
    from atool.annotate.ingest import ingest_answers

    s = ingest_answers(
        answers, out, pseudo_dir=pseudo, images_root=images, classes=classes, expand=expand, expand_params=list(expand_params),
    )
    click.echo(
        f"ingest: {s['images']} label files, {s['points']} annotator-labeled pixels"
        f"{' (%d in %d region answers)' % (s['region_pixels'], s['regions']) if s.get('regions') else ''} ({s['null_answers']} null), "
        f"{'%d pixels expanded from answered points, ' % s['expanded_pixels'] if s.get('expansion') else ''}"
        f"{s['pseudo_points']} pseudo points, {s['skipped_total']} items skipped -> {out}"
    )
