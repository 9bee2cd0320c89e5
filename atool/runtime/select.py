"""Which backend a query runs on: ``--backend``, ``--device``, ``--provider`` and ``auto``.

``--backend auto`` reads the benchmark ``atool bench`` wrote and runs the
fastest target it measured (end-to-end images/s, inference images/s where no
query was timed) whose model file still exists. The benchmark is found at
``--bench PATH``, else at ``<model stem>.bench.json`` beside the model
(``atool bench --model x.pt`` writes ``x.bench.json``, which serves x.pt,
x.onnx and x.engine alike). Without a benchmark, auto runs the given model
file on its own backend and CPU, and logs why.

An explicit ``--backend`` names the runtime; the model file for it is the
given one or a sibling with the same stem (x.pt -> x.onnx for onnxruntime).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from atool.core.errors import BadInput
from atool.core.io import read_json
from atool.runtime.backends import BACKENDS, Backend, backend_for_suffix, load_backend
from atool.runtime.bench import SCHEMA, fastest

log = logging.getLogger("atool.runtime")

BACKEND_CHOICES = ("auto", "torch", "onnxruntime", "tensorrt")


def bench_path_for(model: str | os.PathLike) -> Path:
    """Where ``atool bench`` writes, and ``--backend auto`` looks for, the benchmark of ``model``."""
    model = Path(model)
    return model.with_name(model.stem + ".bench.json")


def read_bench(path: str | os.PathLike) -> dict[str, Any]:
    doc = read_json(path, "benchmark")
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or not isinstance(doc.get("results"), list):
        raise BadInput(f"{path} is not an `atool bench` result ({SCHEMA}); run `atool bench --model MODEL --images DIR`")
    return doc


def _model_for(model: Path, backend: str) -> Path:
    """``model`` if ``backend`` reads its suffix, else the sibling file with the same stem that it reads."""
    if backend_for_suffix(model.suffix.lower()) == backend:
        return model
    for suffix in BACKENDS.get(backend).suffixes:
        other = model.with_suffix(suffix)
        if other.is_file():
            return other
    wanted = "/".join(BACKENDS.get(backend).suffixes)
    raise BadInput(f"--backend {backend} runs {wanted} files, and there is none beside {model} (export one with `atool export`)")


def choose_auto(model: str | os.PathLike, bench: str | os.PathLike | None = None) -> dict[str, Any]:
    """The target ``--backend auto`` runs: ``{"model", "backend", "device", "provider", "reason"}``."""
    model = Path(model)
    path = Path(bench) if bench is not None else bench_path_for(model)
    if not path.is_file():
        if bench is not None:
            raise BadInput(f"benchmark {path} not found; run `atool bench --model {model} --images DIR --out {path}`")
        name = backend_for_suffix(model.suffix.lower()) or "?"
        return {"model": str(model), "backend": name, "device": None, "provider": None,
                "reason": f"no benchmark at {path}; running {model.name} on its own backend ({name}, default device). "
                          f"`atool bench --model {model} --images DIR` measures the backends for --backend auto"}
    doc = read_bench(path)
    rows = [r for r in doc["results"] if isinstance(r, dict) and Path(str(r.get("model", ""))).is_file()]
    best = fastest(rows)
    if best is None:
        raise BadInput(f"benchmark {path} has no successful measurement of a model file that still exists; run `atool bench` again")
    speed = best.get("query_images_per_s") or best.get("infer_images_per_s")
    return {"model": str(best["model"]), "backend": best["backend"], "device": best["device"], "provider": best.get("provider"),
            "reason": f"fastest in {path}: {best['label']} at {speed} img/s"}


def open_backend(
    model: str | os.PathLike, *, backend: str | None = None, device: str | None = None, provider: str | None = None,
    bench: str | os.PathLike | None = None,
) -> Backend | str:
    """The loaded backend for these options, or ``model`` itself (as text) when none of them asks for anything.

    Returning the path keeps the plain ``--model x`` path exactly as before
    (the query loads it with ``--device``).
    """
    if backend is None and provider is None:
        return os.fspath(model)
    model = Path(model)
    if not model.is_file():
        raise BadInput(f"model file {model} not found")
    if backend is not None and backend not in BACKEND_CHOICES:
        raise BadInput(f"--backend {backend!r} is not one of {', '.join(BACKEND_CHOICES)}")
    if backend == "auto":
        if device is not None or provider is not None:
            raise BadInput("--backend auto chooses the device and provider from the benchmark; drop --device/--provider, or name a backend")
        pick = choose_auto(model, bench)
        log.info("--backend auto: %s", pick["reason"])
        kwargs = {k: pick[k] for k in ("device", "provider") if pick[k] is not None}
        return load_backend(pick["model"], **kwargs)
    name = backend or backend_for_suffix(model.suffix.lower())
    if provider is not None and name != "onnxruntime":
        raise BadInput(f"--provider selects an onnxruntime execution provider; the {name} backend has none")
    path = _model_for(model, name) if name else model
    kwargs: dict[str, Any] = {}
    if device is not None:
        kwargs["device"] = device
    if provider is not None:
        kwargs["provider"] = provider
    return load_backend(path, **kwargs)


__all__ = ["BACKEND_CHOICES", "bench_path_for", "read_bench", "choose_auto", "open_backend"]
