"""What the CVAT and COCO formats share: the "cannot tell" label, and checking the image sizes an
export claims against the images themselves (both exports carry sizes).

Only images whose path passes ``atool.annotate.paths.answer_image_path`` are
looked at: a path that is absolute, holds ``..``, or leaves the image root
through a symlink is left to the collector, which skips and reports it like
every other format's.
Sizes are read from the file header (PIL opens lazily), never by decoding.
"""

from __future__ import annotations

from pathlib import Path

from atool.annotate.answers import AnswerSet, is_int
from atool.annotate.paths import answer_image_path
from atool.core.errors import BadInput

# The label (CVAT) or category (COCO) of a null answer: both tools need a label on every shape.
UNSURE_LABEL = "(cannot tell)"
# Masks are decoded to whole-image arrays; a size claimed beyond this is not an image, and would only exhaust memory.
MAX_PIXELS = 1 << 26


def image_size(root: Path, rel: str) -> tuple[int, int] | None:
    """(width, height) of ``root/rel`` from its header, or None when the path is unsafe, missing or unreadable."""
    from PIL import Image

    safe, _ = answer_image_path(rel, root)
    if safe is None:
        return None
    try:
        with Image.open(root / safe) as im:
            return int(im.size[0]), int(im.size[1])
    except Exception:  # noqa: BLE001 - an unreadable image is the collector's to report, not a size to compare
        return None


def check_sizes(answers: AnswerSet, images_root: Path, title: str, source: str) -> None:
    """BadInput (one line) when an image's size in ``answers`` is not the size of that image under ``images_root``."""
    wrong = []
    for rec in answers.images:
        rel = rec.image
        if not (isinstance(rel, str) and is_int(rec.width) and is_int(rec.height)):
            continue
        size = image_size(images_root, rel)
        if size is not None and size != (rec.width, rec.height):
            wrong.append(f"{rel} is {size[0]}x{size[1]}, the file says {rec.width}x{rec.height}")
    if wrong:
        more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
        raise BadInput(
            f"{source}: the {title} export's image sizes disagree with the images under {images_root}: {wrong[0]}{more}; "
            "export the task again for these images"
        )


__all__ = ["UNSURE_LABEL", "MAX_PIXELS", "image_size", "check_sizes"]
