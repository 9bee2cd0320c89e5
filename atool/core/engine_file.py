"""The atool TensorRT engine file: atool metadata in a header before the engine bytes.

A serialized TensorRT engine carries no user metadata, so ``atool export --trt``
prefixes it with the same ``atool.*`` map that the ONNX model holds in
``metadata_props`` (``atool.core.metadata``). ``atool query --model x.engine``
then knows classes, heads and preprocessing from the one file.

Layout (little endian)::

    b"ATOOLTRT"                      8 bytes, magic
    u32 format version               currently 1
    u32 metadata length M            bytes
    u64 engine length E              bytes
    M bytes of UTF-8 JSON            {"atool.classes": "...", ...} (string -> string)
    E bytes                          the serialized engine, as TensorRT wrote it

The lengths make a truncated or padded file an error instead of a confusing
deserialisation failure inside TensorRT. Both sides (``atool.export.tensorrt``
writes, ``atool.runtime.backends.tensorrt_backend`` reads) live in layers that
may not import each other, hence this module in ``core``.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from atool.core.errors import BadInput
from atool.core.io import atomic_write

MAGIC = b"ATOOLTRT"
FORMAT_VERSION = 1
_FIXED = struct.Struct("<IIQ")
HEADER_BYTES = len(MAGIC) + _FIXED.size


def _header(metadata: dict[str, str], engine_len: int) -> bytes:
    meta = json.dumps(dict(metadata), ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return MAGIC + _FIXED.pack(FORMAT_VERSION, len(meta), engine_len) + meta


def pack_engine(metadata: dict[str, str], engine: bytes) -> bytes:
    """Header + engine bytes; ``metadata`` is the string -> string ``atool.*`` map."""
    return _header(metadata, len(engine)) + bytes(engine)


def write_engine_file(path: str | os.PathLike, metadata: dict[str, str], engine: bytes) -> Path:
    """Write header + engine atomically (a crash never leaves half an engine)."""
    view = memoryview(engine)
    head = _header(metadata, view.nbytes)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write(head)
            fh.write(view)  # engines reach hundreds of MB: no concatenated copy

    return atomic_write(path, write)


def read_engine_file(path: str | os.PathLike) -> tuple[dict[str, str], bytes]:
    """(metadata map, engine bytes) of an atool engine file; BadInput for anything else."""
    path = Path(path)
    hint = "build it with `atool export --checkpoint CKPT --out MODEL.onnx --trt` (plain trtexec engines carry no atool metadata)"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"{path}: cannot read the engine file ({exc.strerror})") from None
    if len(data) < HEADER_BYTES or data[: len(MAGIC)] != MAGIC:
        raise BadInput(f"{path} is not an atool TensorRT engine (no {MAGIC.decode()} header); {hint}")
    version, meta_len, engine_len = _FIXED.unpack_from(data, len(MAGIC))
    if version != FORMAT_VERSION:
        raise BadInput(f"{path}: engine header format {version} is not the one this atool reads ({FORMAT_VERSION}); {hint}")
    if HEADER_BYTES + meta_len + engine_len != len(data):
        raise BadInput(
            f"{path}: the header says {HEADER_BYTES + meta_len + engine_len} bytes, the file has {len(data)} "
            f"(truncated or appended to); {hint}"
        )
    try:
        meta = json.loads(data[HEADER_BYTES : HEADER_BYTES + meta_len].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BadInput(f"{path}: the engine header's metadata is not valid JSON; {hint}") from None
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise BadInput(f"{path}: the engine header's metadata is not a string -> string map; {hint}")
    return meta, data[HEADER_BYTES + meta_len :]


__all__ = ["MAGIC", "FORMAT_VERSION", "HEADER_BYTES", "pack_engine", "write_engine_file", "read_engine_file"]
