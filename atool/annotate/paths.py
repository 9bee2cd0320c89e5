"""The one check every answer format's image path goes through before atool touches the file.

An answer file comes from outside (an annotation tool's export, a colleague's
JSON), and ingest reads images and writes label files named after its image
paths. So a path is used only when it is relative, has no ``..`` (or empty,
``.``) part, no backslash or NUL, and, when the image root is known, names a
file that stays inside the root once symlinks are resolved. Everything else is
skipped and reported by the caller, never followed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

_DRIVE = re.compile(r"^[A-Za-z]:")


def answer_image_path(rel: Any, images_root: Path | None) -> tuple[str | None, str]:
    """(the relative '/' path, "") when ``rel`` is safe to use under ``images_root``, else (None, why).

    ``images_root`` None checks the path's form only (no file system access).
    """
    if not isinstance(rel, str) or not rel:
        return None, f"image path {rel!r} is not a non-empty string"
    if "\0" in rel or "\\" in rel:
        return None, "image path holds a backslash or NUL; use '/' separators, relative to the image root"
    if rel.startswith("/") or _DRIVE.match(rel):
        return None, "image path is absolute; it must be relative to the image root"
    if any(part in ("", ".", "..") for part in rel.split("/")):
        return None, "image path has an empty, '.' or '..' part; it must stay inside the image root"
    if images_root is None:
        return rel, ""
    base = os.path.realpath(images_root)
    real = os.path.realpath(os.path.join(images_root, rel))
    if os.path.commonpath([base, real]) != base:
        return None, f"image path leaves the image root {images_root} through a symlink"
    if not os.path.isfile(real):
        return None, f"no such image under {images_root}"
    return rel, ""


__all__ = ["answer_image_path"]
