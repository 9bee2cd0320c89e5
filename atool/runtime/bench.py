"""Throughput, latency and memory of one model on every backend and device available here.

``atool bench`` drives this module; nothing here knows the command line.

* A **target** is a model file plus how to run it: ``torch`` on cpu/cuda for a
  checkpoint, ``onnxruntime`` on cpu, cuda (CUDA provider) or with its
  TensorRT provider for an .onnx file, ``tensorrt`` for an atool engine.
  ``discover_targets`` lists those this machine can run.
* ``measure`` times one target in the current process: inference only
  (``backend.infer`` on pre-decoded same-sized batches; images/s and the
  p50/p90/p99 latency of one batch) and, given an ``end_to_end`` callable,
  the whole query path (decode, inference, selection, writing) as images/s.
* ``measure_isolated`` runs ``measure`` in a fresh ``spawn`` child, so that
  its peak RSS (``ru_maxrss``) belongs to that target alone, not to
  whichever backend ran before it in the same process. GPU memory is the
  device's used memory (all allocations, any library) at its peak over the
  timed batches, read with ``torch.cuda.mem_get_info``.

Results are plain dicts (``atool.bench/v1``, see ``bench_result``); the
fastest target is what ``atool query --backend auto`` uses
(``atool.runtime.select``).
"""

from __future__ import annotations

import importlib.util
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from atool.core.errors import BadInput

SCHEMA = "atool.bench/v1"
MODEL_SUFFIXES = (".pt", ".pth", ".ckpt", ".onnx", ".engine", ".plan")


@dataclass(frozen=True)
class Target:
    """One way to run a model file: backend, device and (onnxruntime only) provider."""

    backend: str
    device: str
    model: str
    provider: str | None = None

    @property
    def label(self) -> str:
        return f"{self.backend}/{self.provider or self.device}"

    def load_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"device": self.device}
        if self.provider is not None:
            kwargs["provider"] = self.provider
        return kwargs


def sibling_models(model: str | os.PathLike) -> list[Path]:
    """``model`` and the files beside it with the same stem and another model suffix (x.pt, x.onnx, x.engine)."""
    model = Path(model)
    if not model.is_file():
        raise BadInput(f"model file {model} not found")
    found = [model]
    for suffix in MODEL_SUFFIXES:
        other = model.with_suffix(suffix)
        if other != model and other.is_file():
            found.append(other)
    return found


def _cuda_visible() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def discover_targets(models: list[Path]) -> list[Target]:
    """Every (backend, device) pair this machine can run for ``models``, CPU first."""
    cuda = _cuda_visible()
    targets: list[Target] = []
    for model in models:
        suffix = model.suffix.lower()
        if suffix in (".pt", ".pth", ".ckpt"):
            targets.append(Target("torch", "cpu", str(model)))
            if cuda:
                targets.append(Target("torch", "cuda", str(model)))
        elif suffix == ".onnx" and importlib.util.find_spec("onnxruntime") is not None:
            import onnxruntime

            available = onnxruntime.get_available_providers()
            targets.append(Target("onnxruntime", "cpu", str(model)))
            if cuda and "CUDAExecutionProvider" in available:
                targets.append(Target("onnxruntime", "cuda", str(model), "cuda"))
            if cuda and "TensorrtExecutionProvider" in available:
                targets.append(Target("onnxruntime", "cuda", str(model), "tensorrt"))
        elif suffix in (".engine", ".plan") and cuda and importlib.util.find_spec("tensorrt") is not None:
            targets.append(Target("tensorrt", "cuda", str(model)))
    return targets


def percentiles(values: list[float], qs: tuple[int, ...] = (50, 90, 99)) -> dict[str, float]:
    """{"p50": ..., "p90": ..., "p99": ...} of ``values`` (linear interpolation, numpy's default)."""
    arr = np.asarray(values, dtype=np.float64)
    return {f"p{q}": round(float(np.percentile(arr, q)), 3) for q in qs}


def _gpu_used_mb() -> float | None:
    if "torch" not in sys.modules:
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info()
    return (total - free) / 2**20


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def make_batches(images: list[np.ndarray], batch_size: int) -> list[np.ndarray]:
    """Same-sized uint8 H x W x 3 images -> N x H x W x 3 batches of up to ``batch_size`` (consecutive, same size)."""
    batches, run = [], []
    for img in images:
        if run and (img.shape != run[0].shape or len(run) == batch_size):
            batches.append(np.stack(run))
            run = []
        run.append(img)
    if run:
        batches.append(np.stack(run))
    return batches


def measure(
    target: Target,
    images: list[np.ndarray],
    *,
    batch_size: int = 4,
    repeats: int = 3,
    warmup: int = 1,
    threads: int | None = None,
    end_to_end: Callable[[Any], float] | None = None,
) -> dict[str, Any]:
    """Time ``target`` on ``images`` (uint8 H x W x 3 each) in this process; see the module docstring.

    ``end_to_end(backend)`` returns the seconds of one whole query over the
    same images; it is run ``repeats`` times and the median kept.
    """
    from atool.runtime.backends import load_backend

    t0 = time.perf_counter()
    backend = load_backend(target.model, threads=threads, **target.load_kwargs())
    load_s = time.perf_counter() - t0
    batches = make_batches(images, batch_size)
    n = sum(len(b) for b in batches)
    for _ in range(max(0, warmup)):
        backend.infer(batches[0])
    gpu_peak = _gpu_used_mb()
    latencies, totals = [], []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        for batch in batches:
            b0 = time.perf_counter()
            backend.infer(batch)
            latencies.append((time.perf_counter() - b0) * 1e3)
            used = _gpu_used_mb()
            if used is not None:
                gpu_peak = max(gpu_peak or 0.0, used)
        totals.append(time.perf_counter() - start)
    infer_s = float(np.median(totals))
    row: dict[str, Any] = {
        **asdict(target),
        "label": target.label,
        "images": n,
        "batch_size": batch_size,
        "load_seconds": round(load_s, 3),
        "infer_images_per_s": round(n / infer_s, 3),
        "latency_ms_per_batch": percentiles(latencies),
        "query_images_per_s": None,
        "end_to_end_over_inference": None,
    }
    if end_to_end is not None:
        e2e = float(np.median([end_to_end(backend) for _ in range(max(1, repeats))]))
        row["query_images_per_s"] = round(n / e2e, 3)
        row["end_to_end_over_inference"] = round(infer_s / e2e, 4)
    row["peak_rss_mb"] = round(peak_rss_mb(), 1)
    row["gpu_memory_mb"] = round(gpu_peak, 1) if gpu_peak is not None else None
    return row


def _child(conn: Any, target: Target, images: list[np.ndarray], kwargs: dict[str, Any]) -> None:
    try:
        if kwargs.get("threads"):
            os.environ["OMP_NUM_THREADS"] = str(kwargs["threads"])
        from atool.core.allocator import keep_freed_memory

        keep_freed_memory()  # a spawned child starts with glibc's defaults; time what `atool query` runs
        conn.send(("ok", measure(target, images, **kwargs)))
    except BaseException as exc:  # reported as the row's error, never a hung parent
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        conn.send(("error", f"{type(exc).__name__}: {detail[:200]}"))
    finally:
        conn.close()


def measure_isolated(target: Target, images: list[np.ndarray], timeout: float = 1800.0, **kwargs: Any) -> dict[str, Any]:
    """``measure`` in a fresh spawned process (honest peak RSS per target); a failure is a row with ``error``."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, target, images, kwargs), daemon=True)
    proc.start()
    child.close()
    status, payload = ("error", f"timed out after {timeout:.0f} s")
    if parent.poll(timeout):
        try:
            status, payload = parent.recv()
        except EOFError:
            status, payload = "error", f"the benchmark process died (exit {proc.exitcode})"
    proc.join(5)
    if proc.is_alive():
        proc.kill()
    if status == "ok":
        return payload
    return {**asdict(target), "label": target.label, "error": payload}


def fastest(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row with the highest end-to-end images/s (inference images/s where no query was timed)."""

    def speed(row: dict[str, Any]) -> float:
        return float(row.get("query_images_per_s") or row.get("infer_images_per_s") or 0.0)

    ok = [r for r in rows if not r.get("error") and speed(r) > 0]
    return max(ok, key=speed) if ok else None


def bench_result(rows: list[dict[str, Any]], **info: Any) -> dict[str, Any]:
    """The ``atool.bench/v1`` document: ``info`` (size, repeats, ...), machine, versions, rows, fastest label."""
    import datetime

    best = fastest(rows)
    versions = {}
    for mod in ("torch", "onnxruntime", "tensorrt"):
        if mod in sys.modules:
            versions[mod] = str(getattr(sys.modules[mod], "__version__", "?"))
    return {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs",
        **info,
        "versions": versions,
        "results": rows,
        "fastest": best["label"] if best else None,
    }


def format_table(result: dict[str, Any]) -> str:
    """A fixed-width text table of ``result["results"]`` (one row per target)."""
    head = f"{'backend':<24} {'infer img/s':>11} {'query img/s':>11} {'e2e/inf':>7} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'RSS MiB':>8} {'GPU MiB':>8}"
    lines = [head]

    def num(v: Any, fmt: str) -> str:
        return format(v, fmt) if isinstance(v, (int, float)) else "-"

    for r in result["results"]:
        if r.get("error"):
            lines.append(f"{r['label']:<24} error: {r['error']}")
            continue
        lat = r["latency_ms_per_batch"]
        lines.append(
            f"{r['label']:<24} {num(r['infer_images_per_s'], '11.2f')} {num(r['query_images_per_s'], '11.2f')} "
            f"{num(r['end_to_end_over_inference'], '7.3f')} {lat['p50']:8.1f} {lat['p90']:8.1f} {lat['p99']:8.1f} "
            f"{num(r['peak_rss_mb'], '8.0f')} {num(r['gpu_memory_mb'], '8.0f')}"
        )
    if result.get("fastest"):
        lines.append(f"fastest: {result['fastest']}")
    return "\n".join(lines)


__all__ = ["SCHEMA", "Target", "sibling_models", "discover_targets", "percentiles", "peak_rss_mb", "make_batches",
           "measure", "measure_isolated", "fastest", "bench_result", "format_table"]
