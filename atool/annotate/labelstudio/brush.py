"""Label Studio's brush RLE: how ``BrushLabels`` results carry a mask.

This is not COCO RLE. Label Studio's front end stores a brush stroke as the
RGBA pixels of an image-sized canvas (H x W x 4 bytes, row-major), packed by
the ``rle-pack`` bit format:

- a header: the value count (32 bits), the word size minus one (5 bits) and
  four run-length field widths, each minus one (4 bits each);
- then chunks until the count is reached: a flag bit (1 = one value repeated,
  0 = literal values), 2 bits choosing one of the four field widths, the run
  length minus one in that many bits, then one word (repeat) or one word per
  value (literal);
- the bit string is padded with zeros to whole bytes (the SDK always adds
  1 to 8), and a result's ``value.rle`` lists those bytes as integers.

A mask pixel is painted where the canvas' alpha byte is non-zero. We encode
masks as Label Studio's own SDK does (every byte of a painted pixel 255,
8-bit words, widths 3/4/8/16); every run of a binary mask is then at least 4
bytes long, so the encoder writes only repeat chunks. The decoder reads both
kinds, as the front end writes literal chunks too. The integration suite
checks both directions against ``label_studio_sdk.converter.brush``; atool
does not import the SDK (see atool/annotate/labelstudio/__init__.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from atool.core.errors import BadInput

_WORD = 8
_WIDTHS = (3, 4, 8, 16)
_CHANNELS = 4  # RGBA


def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and lengths of the runs of equal values of a 1-D array."""
    change = np.flatnonzero(values[1:] != values[:-1]) + 1
    starts = np.concatenate(([0], change))
    lengths = np.diff(np.concatenate((starts, [values.size])))
    return starts, lengths


def encode(mask: np.ndarray) -> list[int]:
    """Boolean H x W mask -> the byte list of a ``brushlabels`` result's ``value.rle``."""
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.size == 0:
        raise BadInput(f"a brush mask must be a non-empty 2-D array, got shape {mask.shape}")
    canvas = np.repeat(np.where(mask.reshape(-1) != 0, 255, 0).astype(np.int64), _CHANNELS)
    fields: list[tuple[int, int]] = [(canvas.size, 32), (_WORD - 1, 5)] + [(w - 1, 4) for w in _WIDTHS]
    longest = 1 << _WIDTHS[-1]
    starts, lengths = _runs(canvas)
    for start, length in zip(starts.tolist(), lengths.tolist()):
        value = int(canvas[start])
        while length:  # a run longer than the widest length field is split
            n = min(length, longest)
            kind = next(i for i, w in enumerate(_WIDTHS) if n - 1 < (1 << w))
            fields += [(1, 1), (kind, 2), (n - 1, _WIDTHS[kind]), (value, _WORD)]
            length -= n
    bits = "".join(format(v, f"0{w}b") for v, w in fields)
    # Padded with 1 to 8 zero bits, a whole zero byte when already aligned, as the SDK's encoder does.
    bits += "0" * (8 - len(bits) % 8)
    return list(int(bits, 2).to_bytes(len(bits) // 8, "big"))


class _Bits:
    """Reads big-endian unsigned fields from a bit array."""

    def __init__(self, data: np.ndarray):
        self.bits = np.unpackbits(data)
        self.pos = 0

    def read(self, n: int) -> int:
        if self.pos + n > self.bits.size:
            raise BadInput("a brush RLE ends before its declared length; the result's value.rle is truncated")
        out = 0
        for b in self.bits[self.pos : self.pos + n].tolist():
            out = (out << 1) | b
        self.pos += n
        return out

    def read_words(self, count: int, size: int) -> np.ndarray:
        end = self.pos + count * size
        if end > self.bits.size:
            raise BadInput("a brush RLE ends before its declared length; the result's value.rle is truncated")
        words = self.bits[self.pos : end].reshape(count, size).astype(np.int64)
        self.pos = end
        return words @ (1 << np.arange(size - 1, -1, -1, dtype=np.int64))


def decode_values(rle: Any) -> np.ndarray:
    """A brush RLE byte list -> the flat canvas values (uint8, length as declared)."""
    if not isinstance(rle, (list, tuple)) or not all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b < 256 for b in rle):
        raise BadInput("a brush result's value.rle must be a list of byte values (0..255)")
    bits = _Bits(np.asarray(rle, dtype=np.uint8))
    count = bits.read(32)
    word = bits.read(5) + 1
    widths = [bits.read(4) + 1 for _ in range(4)]
    out = np.zeros(count, dtype=np.uint8)
    i = 0
    while i < count:
        repeat = bits.read(1)
        n = bits.read(widths[bits.read(2)]) + 1
        if i + n > count:
            raise BadInput(f"a brush RLE run reaches value {i + n}, past its declared {count} values")
        if repeat:
            out[i : i + n] = bits.read(word)
        else:
            out[i : i + n] = bits.read_words(n, word)
        i += n
    return out


def decode(rle: Any, width: int, height: int) -> np.ndarray:
    """A brush RLE of a ``width`` x ``height`` image -> boolean H x W mask (alpha > 0)."""
    values = decode_values(rle)
    if values.size != width * height * _CHANNELS:
        raise BadInput(
            f"a brush RLE holds {values.size} values but a {width}x{height} RGBA canvas has {width * height * _CHANNELS}"
        )
    return values.reshape(height, width, _CHANNELS)[:, :, 3] > 0
