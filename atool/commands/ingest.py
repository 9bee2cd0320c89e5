"""``atool ingest``: answers (atool or Label Studio export) -> sparse label PNGs."""

from __future__ import annotations

import click

from atool.commands._oneline import OneLineCommand


@click.command("ingest", cls=OneLineCommand)
@click.argument("answers", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for labels/, origin/, classes.txt, ingest.json.")
@click.option("--pseudo", type=click.Path(file_okay=False), default=None, help="Pseudo labels from `atool query --pseudo-out`, merged under the answers.")
@click.option("--images", type=click.Path(file_okay=False), default=None, help="Image root: answers for images not found there are skipped.")
@click.option("--classes", type=click.Path(dir_okay=False), default=None, help="classes.txt fixing label values (required for Label Studio exports).")
def command(answers: str, out: str, pseudo: str | None, images: str | None, classes: str | None) -> None:
    """Write sparse target labels from annotators' answers."""
    from atool.annotate.ingest import ingest_answers

    s = ingest_answers(answers, out, pseudo_dir=pseudo, images_root=images, classes=classes)
    click.echo(
        f"ingest: {s['images']} label files, {s['points']} annotator-labeled pixels"
        f"{' (%d in %d region answers)' % (s['region_pixels'], s['regions']) if s.get('regions') else ''} ({s['null_answers']} null), "
        f"{s['pseudo_points']} pseudo points, {s['skipped_total']} items skipped -> {out}"
    )
