"""Refuse ONNX files whose external data would be read from outside the model's folder.

An ONNX tensor may keep its bytes in another file, named by the ``location``
entry of its ``external_data``. onnxruntime (and ``onnx.load``) open that path
relative to the model's folder, so a model file handed over by someone else
could make atool read ``/etc/shadow`` or ``../../secrets`` into a weight
tensor. ``check_external_data`` reads the graph without its external data and
refuses, in one line, any location that is absolute, holds ``..``, or resolves
(through symlinks) outside the model's folder. Call it before anything loads
the model's data.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Iterator

from atool.core.errors import BadInput


def _graph_tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto in ``graph``: initializers, sparse initializers, node attributes, subgraphs."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: Any) -> Iterator[Any]:
    for attr in node.attribute:
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        if attr.HasField("sparse_tensor"):
            yield attr.sparse_tensor.values
            yield attr.sparse_tensor.indices
        for sparse in attr.sparse_tensors:
            yield sparse.values
            yield sparse.indices
        if attr.HasField("g"):
            yield from _graph_tensors(attr.g)
        for sub in attr.graphs:
            yield from _graph_tensors(sub)


def model_tensors(model: Any) -> Iterator[Any]:
    """Every TensorProto of a ModelProto, its functions' constant attributes included."""
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        for node in function.node:
            yield from _node_tensors(node)


def location_problem(location: str, model_dir: Path) -> str | None:
    """Why an external-data ``location`` is unsafe for a model in ``model_dir``, or None when it is a file inside it."""
    if not location or "\0" in location:
        return "is empty or holds a NUL byte"
    if PurePosixPath(location).is_absolute() or PureWindowsPath(location).is_absolute() or PureWindowsPath(location).drive:
        return "is an absolute path"
    if location.startswith(("/", "\\")):
        return "is an absolute path"
    if ".." in location.replace("\\", "/").split("/"):
        return "climbs out with '..'"
    base = Path(os.path.realpath(model_dir))
    target = Path(os.path.realpath(model_dir / location))
    if target != base and base not in target.parents:
        return f"resolves (through a symlink) to {target}, outside the model's folder"
    return None


def check_external_data(path: str | os.PathLike) -> int:
    """BadInput (one line) when any tensor of the ONNX file at ``path`` keeps its data outside its folder.

    Returns how many tensors use external data (all inside). A file that does
    not parse as ONNX is left to the loader, which reports it in its own words.
    """
    import onnx

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - not ONNX at all: the runtime's loader says so
        return 0
    model_dir = path.parent
    count = 0
    for tensor in model_tensors(model):
        entries = {e.key: e.value for e in tensor.external_data}
        if tensor.data_location != onnx.TensorProto.EXTERNAL and not entries:
            continue
        count += 1
        location = entries.get("location", "")
        problem = location_problem(location, model_dir)
        if problem is not None:
            raise BadInput(
                f"{path}: refused: tensor {tensor.name[:60]!r} keeps its data at external location {location[:120]!r}, "
                f"which {problem}; external data must be a file in the model's folder {model_dir}"
            )
    return count


__all__ = ["check_external_data", "location_problem", "model_tensors"]
