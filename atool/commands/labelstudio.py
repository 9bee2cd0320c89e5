"""``atool labelstudio``: push queries to and pull answers from a Label Studio server.

The server and token come from LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY.
"""

from __future__ import annotations

import click

from atool.commands._oneline import OneLineCommand


@click.group("labelstudio")
def command() -> None:
    """Push queries to / pull answers from a Label Studio server (LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY)."""


@command.command("push", cls=OneLineCommand)
@click.argument("queries", type=click.Path(dir_okay=False))
@click.option("--project", "project", required=True, help="Project title: created when absent, else reused if its labels match.")
@click.option("--images", required=True, type=click.Path(file_okay=False), help="The image root the query list's paths are relative to.")
@click.option(
    "--document-root", default=None, type=click.Path(file_okay=False),
    help="The server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT [default: that variable]; --images must be inside it.",
)
def push(queries: str, project: str, images: str, document_root: str | None) -> None:
    """Import an atool.query/v1 list as tasks with the model's guesses as predictions (points and brush regions)."""
    from atool.annotate.labelstudio.push import push as run

    s = run(queries, project, images, document_root=document_root)
    click.echo(
        f"labelstudio push: {s['imported']} tasks imported, {s['already_present']} already in the project "
        f"({s['points']} points, {s['regions']} regions) -> {'new ' if s['created'] else ''}project {s['project']!r} {s['url']}"
    )


@command.command("pull", cls=OneLineCommand)
@click.option("--project", "project", required=True, help="Project title the queries were pushed to.")
@click.option("--queries", required=True, type=click.Path(dir_okay=False), help="The atool.query/v1 list that was pushed (classes, images, ids).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="atool.answers/v1 file to write.")
@click.option("--skip-unknown", is_flag=True, help="Leave out (and count) tasks whose image is not in the query list, instead of failing.")
def pull(project: str, queries: str, out: str, skip_unknown: bool) -> None:
    """Export the project's annotations as atool.answers/v1 (newest annotation per task; unannotated and skipped tasks left out)."""
    from atool.annotate.labelstudio.pull import pull as run

    s = run(project, queries, out, skip_unknown=skip_unknown)
    click.echo(
        f"labelstudio pull: {s['annotated']} annotated tasks ({s['points']} points, {s['regions']} regions, {s['null']} null); "
        f"left out: {s['unannotated']} unannotated, {s['cancelled']} skipped"
        f"{', %d not in the query list' % s['unknown_images'] if s['unknown_images'] else ''}"
        f"{'; %d tasks had several annotations (newest kept)' % s['several'] if s['several'] else ''} -> {out}"
    )
