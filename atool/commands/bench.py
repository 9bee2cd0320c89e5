"""``atool bench``: time a model on every backend and device available here."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import click

from atool.commands._oneline import OneLineCommand
from atool.commands._options import SIZE


def end_to_end_seconds(backend: Any, images: str, batch_size: int, budget: int) -> float:
    """Seconds of one whole ``atool query`` (default strategy, ``budget`` points per image) over ``images``.

    Module level so that a spawned benchmark process can receive it.
    """
    import time

    from atool.active.query_config import QueryConfig
    from atool.workflows.query import query_to_file

    cfg = QueryConfig(budget=budget, per_image=True, batch_size=batch_size)
    with tempfile.TemporaryDirectory(prefix="atool-bench-q-") as tmp:
        t0 = time.perf_counter()
        query_to_file(backend, images, cfg, Path(tmp) / "queries.json")
        return time.perf_counter() - t0


class _EndToEnd:
    """Picklable ``end_to_end(backend)`` for ``atool.runtime.bench.measure``."""

    def __init__(self, images: str, batch_size: int, budget: int) -> None:
        self.images, self.batch_size, self.budget = images, batch_size, budget

    def __call__(self, backend: Any) -> float:
        return end_to_end_seconds(backend, self.images, self.batch_size, self.budget)


def _prepare_images(images: str, size: tuple[int, int] | None, limit: int, tmp: Path) -> tuple[str, list]:
    """(folder the query reads, decoded uint8 H x W x 3 images), at ``size`` when given (resized copies in ``tmp``)."""
    import cv2

    from atool.core.errors import BadInput
    from atool.data.images import BadImage, list_images, read_image, write_image

    paths = list_images(Path(images))
    if not paths:
        raise BadInput(f"{images} holds no images to benchmark on")
    decoded = []
    for path in paths:
        if len(decoded) >= limit:
            break
        try:
            img = read_image(path)
        except BadImage:
            continue
        if size is not None and img.shape[:2] != (size[1], size[0]):
            img = cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)
        decoded.append(img)
    if not decoded:
        raise BadInput(f"none of the images under {images} could be read")
    if size is None and len(decoded) == len(paths):
        return images, decoded
    for i, img in enumerate(decoded):
        write_image(tmp / f"bench_{i:05d}.png", img)
    return str(tmp), decoded


@click.command("bench", cls=OneLineCommand)
@click.option("--model", required=True, type=click.Path(dir_okay=False),
              help="Model file; files beside it with the same stem (x.pt, x.onnx, x.engine) are measured too.")
@click.option("--images", required=True, type=click.Path(file_okay=False), help="Folder of target images to time on.")
@click.option("--size", type=SIZE, default=None, help="Resize the images to WxH first (e.g. 1024x512)  [default: as they are]")
@click.option("--limit", default=16, show_default=True, type=click.IntRange(1), help="Images used (the first N).")
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(1), help="Images per inference batch.")
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(1), help="Timed passes; medians are reported.")
@click.option("--threads", default=0, show_default=True, type=click.IntRange(0), help="CPU threads per backend (0: the runtime's default).")
@click.option("--budget", default=50, show_default=True, type=click.IntRange(0), help="Points per image in the end-to-end query.")
@click.option("--end-to-end/--inference-only", default=True, show_default=True, help="Also time the whole query path.")
@click.option("--isolate/--in-process", default=True, show_default=True,
              help="Each backend in its own process (its own peak RSS); --in-process is faster to start.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="JSON result  [default: <model stem>.bench.json beside the model, where --backend auto finds it]")
def command(model: str, images: str, size: tuple[int, int] | None, limit: int, batch_size: int, repeats: int, threads: int,
            budget: int, end_to_end: bool, isolate: bool, out: str | None) -> None:
    """Time MODEL on every backend and device available here and write the result.

    Reports images/s (inference only and the whole query), the latency of one
    batch (p50/p90/p99), peak RSS and GPU memory per backend, as a table and
    as JSON. `atool query --backend auto` then runs the fastest one.
    """
    from atool.core.openmp import passive_openmp_waits

    # Time what `atool query` runs: its OpenMP setting, here and in the spawned children that inherit it.
    passive_openmp_waits()
    from atool.core.errors import BadInput
    from atool.core.io import atomic_write_json
    from atool.runtime.bench import bench_result, discover_targets, format_table, measure, measure_isolated, sibling_models
    from atool.runtime.select import bench_path_for

    models = sibling_models(model)
    targets = discover_targets(models)
    if not targets:
        raise BadInput(f"no backend here can run {', '.join(str(m) for m in models)} (is onnxruntime / TensorRT installed?)")
    out_path = Path(out) if out else bench_path_for(model)
    with tempfile.TemporaryDirectory(prefix="atool-bench-") as tmp:
        folder, decoded = _prepare_images(images, size, limit, Path(tmp))
        kwargs: dict[str, Any] = {"batch_size": batch_size, "repeats": repeats, "threads": threads or None,
                                  "end_to_end": _EndToEnd(folder, batch_size, budget) if end_to_end else None}
        rows = []
        for target in targets:
            click.echo(f"bench: {target.label} ({Path(target.model).name}) ...", err=True)
            rows.append(measure_isolated(target, decoded, **kwargs) if isolate else measure(target, decoded, **kwargs))
    shape = decoded[0].shape
    result = bench_result(rows, size=f"{shape[1]}x{shape[0]}", images=len(decoded), batch_size=batch_size, repeats=repeats,
                          threads=threads or None, budget_per_image=budget, isolated=isolate, models=[str(m) for m in models])
    atomic_write_json(out_path, result)
    click.echo(format_table(result))
    click.echo(f"wrote {out_path}")
