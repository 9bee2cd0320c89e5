"""COCO run-length encoding of binary masks, written from the format's definition.

A mask H x W is read in column-major (Fortran) order; ``counts`` are the
lengths of its alternating runs, starting with a run of 0s (of length 0 when
the first pixel is set). COCO's compressed form (what pycocotools' ``encode``
writes and what the query list carries) turns counts into an ASCII string:
each count after the second is stored as the difference to the count two
before it, then as a little-endian sequence of 5-bit groups, each a
character ``48 + group`` with bit 0x20 set while more groups follow, and the
sign carried in bit 0x10 of the last group.

``encode(mask) -> {"size": [h, w], "counts": str}`` and ``decode(rle) -> bool
H x W``; ``decode`` also reads the uncompressed form (``counts`` a list).
Runs are found with numpy; only the per-run string packing is a Python loop
(a region has a few hundred runs, never one step per pixel).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from atool.core.errors import BadInput


def mask_counts(mask: np.ndarray) -> np.ndarray:
    """Run lengths (int64) of a 2-D mask in column-major order, starting with the 0s."""
    flat = np.asarray(mask).astype(bool).ravel(order="F")
    if flat.size == 0:
        return np.zeros(0, np.int64)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).astype(np.int64)
    if flat[0]:
        counts = np.concatenate([[0], counts])
    return counts


def counts_to_string(counts: np.ndarray | list[int]) -> str:
    """COCO's compressed string of run lengths (pycocotools ``rleToString``)."""
    cnts = [int(c) for c in counts]
    out: list[str] = []
    for i, x in enumerate(cnts):
        if i > 2:
            x -= cnts[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5  # arithmetic shift: negative differences end in all-ones
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def string_to_counts(s: str) -> np.ndarray:
    """Inverse of ``counts_to_string`` (pycocotools ``rleFrString``); BadInput on a malformed string."""
    cnts: list[int] = []
    p, n = 0, len(s)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise BadInput("RLE counts string ends in the middle of a number")
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                raise BadInput(f"RLE counts string has a character {s[p]!r} outside COCO's alphabet")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(cnts) > 2:
            x += cnts[-2]
        cnts.append(x)
    return np.asarray(cnts, dtype=np.int64)


def encode(mask: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE of a bool/0-1 H x W mask: ``{"size": [h, w], "counts": str}``."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise BadInput(f"an RLE mask must be 2-D (H x W), got shape {mask.shape}")
    h, w = mask.shape
    return {"size": [int(h), int(w)], "counts": counts_to_string(mask_counts(mask))}


def decode(rle: Any) -> np.ndarray:
    """bool H x W mask of a COCO RLE (compressed string or uncompressed list counts)."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise BadInput("an RLE mask is an object with size [h, w] and counts")
    size = rle["size"]
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in size)):
        raise BadInput(f"RLE size must be [height, width] (whole numbers), got {size!r}")
    h, w = size
    counts = _counts(rle["counts"])
    if int(counts.sum()) != h * w:
        raise BadInput(f"RLE counts cover {int(counts.sum())} pixels but size {h}x{w} has {h * w}")
    values = (np.arange(counts.size) % 2).astype(bool)
    flat = np.repeat(values, counts)
    return flat.reshape((h, w), order="F")


def _counts(raw: Any) -> np.ndarray:
    """int64 run lengths of RLE ``counts`` (COCO string or list); anything else, or a negative or
    out-of-range run, is BadInput (answer files are untrusted input)."""
    try:
        if isinstance(raw, str):
            counts = string_to_counts(raw)
        elif isinstance(raw, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
            counts = np.asarray(raw, dtype=np.int64)
        else:
            raise BadInput("RLE counts must be a COCO string or a list of whole numbers")
    except OverflowError:
        raise BadInput("RLE counts hold a run too long for any image") from None
    if (counts < 0).any():
        raise BadInput("RLE counts must not be negative")
    return counts


def area(rle: dict[str, Any]) -> int:
    """Pixels set in an RLE mask, without decoding it (malformed counts are BadInput)."""
    if not isinstance(rle, dict) or "counts" not in rle:
        raise BadInput("an RLE mask is an object with size [h, w] and counts")
    counts = _counts(rle["counts"])
    return int(counts[1::2].sum())


__all__ = ["encode", "decode", "area", "mask_counts", "counts_to_string", "string_to_counts"]
