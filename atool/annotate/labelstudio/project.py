"""Finding a Label Studio project by title and checking its labeling config against atool's classes."""

from __future__ import annotations

from typing import Any

from atool.annotate.formats.labelstudio import BRUSH_NAME, FROM_NAME, label_config
from atool.annotate.labelstudio.client import LabelStudioClient
from atool.core.errors import BadInput, Failure

# The control tags atool's config declares, by name.
CONTROLS = {FROM_NAME: "KeyPointLabels", BRUSH_NAME: "BrushLabels"}


def config_labels(xml: str) -> dict[str, tuple[str, list[str]]]:
    """Control name -> (tag, label values) of every labels control in a Label Studio config."""
    from defusedxml import ElementTree

    try:
        root = ElementTree.fromstring(xml)
    except Exception as exc:  # defusedxml raises ParseError or its own refusals
        raise Failure(f"the project's labeling config is not readable XML ({exc})") from None
    out = {}
    for el in root.iter():
        if el.tag.endswith("Labels") and el.get("name"):
            out[el.get("name")] = (el.tag, [lab.get("value") or "" for lab in el.iter("Label")])
    return out


def config_problem(xml: str, classes: list[str]) -> str | None:
    """Why a project's config does not fit atool's queries for ``classes``, or None when it does."""
    found = config_labels(xml)
    for name, tag in CONTROLS.items():
        if name not in found or found[name][0] != tag:
            return f"has no <{tag} name=\"{name}\"> control"
        labels = found[name][1]
        if sorted(labels) != sorted(classes):
            extra = sorted(set(labels) - set(classes))
            missing = sorted(set(classes) - set(labels))
            return f"<{tag}> labels differ from the query list's classes (project only: {extra}; query list only: {missing})"
    return None


def find_project(client: LabelStudioClient, title: str) -> dict[str, Any] | None:
    """The one project with this title, None when there is none; several are BadInput."""
    found = client.projects_titled(title)
    if len(found) > 1:
        ids = ", ".join(str(p.get("id")) for p in found)
        raise BadInput(f"{len(found)} Label Studio projects are titled {title!r} (ids {ids}); rename all but one")
    return client.project(found[0]["id"]) if found else None


def checked_project(client: LabelStudioClient, title: str, classes: list[str], *, create: bool) -> tuple[dict[str, Any], bool]:
    """The project titled ``title`` whose config fits ``classes``; made when absent and ``create``.

    Returns (project, created). A project whose labels differ (another label
    set, or labels renamed in Label Studio) is BadInput.
    """
    project = find_project(client, title)
    if project is None:
        if not create:
            raise BadInput(f"Label Studio has no project titled {title!r}; push queries to it first")
        return client.create_project(title, label_config(classes)), True
    problem = config_problem(str(project.get("label_config") or ""), classes)
    if problem:
        raise BadInput(
            f"Label Studio project {title!r} (id {project.get('id')}) {problem}; "
            "use another --project, or restore the project's labels"
        )
    return project, False
