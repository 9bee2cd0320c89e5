#!/usr/bin/env python3
"""Query throughput, torch vs onnxruntime, in one run (``make bench``).

For each backend it measures, on the same images and the same process:

* inference only: images/s of ``backend.infer`` on pre-decoded batches;
* end to end: images/s of the whole ``atool query`` path (scan, decode
  threads, inference, selection, pseudo labels, writing the list).

and prints the ratios end-to-end / inference-only and onnxruntime / torch.
The two (and, with ``--selector``, the selector's two) alternate in every
timed round, so that the ratios compare runs seconds apart.
Absolute figures depend on the machine and its load; the ratios, taken
seconds apart in one process, are what to compare between machines.

The model weights are random: throughput does not depend on their values,
and the benchmark must not need a trained model or the network.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _parse_size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    try:
        size = int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WxH, e.g. 1024x512, got {text!r}") from None
    if min(size) < 32:
        raise argparse.ArgumentTypeError(f"size sides must be at least 32, got {text!r}")
    return size


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=16, help="target images to query (default 16)")
    p.add_argument("--size", type=_parse_size, default=(1024, 512), help="WxH (default 1024x512)")
    p.add_argument("--model", default="lraspp_mobilenet_v3_small", help="registered model name")
    p.add_argument("--checkpoint", help="time this trained checkpoint (.pt) and its export (--onnx) instead of a random-init --model")
    p.add_argument("--onnx", help="the ONNX export of --checkpoint  [default: the checkpoint's path with .onnx]")
    p.add_argument("--workers", type=int, default=2, help="query decode threads (default 2)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--budget", type=int, default=50, help="points per image for the query run (default 50)")
    p.add_argument("--strategy", default=None, help="selection strategy of the timed query (default: atool query's own, stratified)")
    p.add_argument("--compare-strategies", default="", metavar="A,B,...",
                   help="also time the whole query with each of these strategies on each backend, as a ratio to entropy_patch")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats; the median is reported")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads for both backends (0: all cores)")
    p.add_argument("--selector", action="store_true",
                   help="also time a shared-backbone selector around the same model (untrained heads) and report selector / plain")
    p.add_argument("--image-format", choices=("png", "jpg"), default="png",
                   help="file format of the query images (default png; jpg at quality 95, as camera fleets record)")
    p.add_argument("--workdir", help="keep images and models here instead of a temporary folder")
    p.add_argument("--json", dest="json_out", help="also write the results to this JSON file")
    p.add_argument("--ort-config", action="append", default=[], metavar="KEY=VALUE",
                   help="an onnxruntime session config entry, e.g. session.intra_op.allow_spinning=0 (repeatable)")
    args = p.parse_args(argv)
    if args.strategy is None:
        from atool.active.query_config import QueryConfig  # no torch import: the OpenMP setting is still to come

        args.strategy = QueryConfig.strategy
    return args


def _prepare(work: Path, args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """Target-style images, a random-init checkpoint and its ONNX export."""
    import torch

    from atool.data.synth import SYNTH_CLASSES, write_synth_pair
    from atool.workflows.export import export_checked
    from atool.models import build_model
    from atool.core.checkpoint import save_checkpoint

    data = work / "data"
    if not (data / "synth.json").is_file():
        write_synth_pair(data, n_source=1, n_target=args.images, n_val=1, size=args.size, seed=0)
    images = data / "target_train" / "images"
    if args.image_format == "jpg":
        images = _as_jpeg(images, data / "target_train_jpg")
    if args.checkpoint:
        onnx_given = Path(args.onnx) if args.onnx else Path(args.checkpoint).with_suffix(".onnx")
        return images, Path(args.checkpoint), onnx_given
    ckpt, onnx_path = work / "model.pt", work / "model.onnx"
    torch.manual_seed(0)
    model = build_model(args.model, num_classes=len(SYNTH_CLASSES)).eval()
    save_checkpoint(ckpt, model=model, model_name=args.model, model_args={}, classes=SYNTH_CLASSES, step=0)
    export_checked(ckpt, onnx_path, verify=True)
    return images, ckpt, onnx_path


def _as_jpeg(src: Path, dst: Path) -> Path:
    """JPEG copies (quality 95) of the PNGs in ``src``: decoding a JPEG costs about a third of a PNG's."""
    from atool.data.images import list_images, read_image, write_image

    for path in list_images(src):
        out = dst / f"{path.stem}.jpg"
        if not out.is_file():
            write_image(out, read_image(path))  # OpenCV's JPEG quality is 95 unless told otherwise
    return dst


def _rounds(fns: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """Median wall and CPU seconds (all of the process's threads) of each function in ``fns``.

    Each round calls every function once, in order: a load spike on a shared
    machine then hits all of them alike, and their ratios compare like with like.
    """
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in fns}


class _Timed:
    """Inference-only and end-to-end query calls of one backend, and the row that reports them."""

    def __init__(self, backend, batches: list, images_dir: Path, args: argparse.Namespace, work: Path, tag: str):
        from atool.workflows.query import QueryConfig

        self.backend, self.batches, self.images_dir = backend, batches, images_dir
        self.n = sum(len(b) for b in batches)
        self.out = work / f"queries_{tag}.json"
        self.cfg = QueryConfig(strategy=args.strategy, budget=args.budget, per_image=True, pseudo_out=str(work / f"pseudo_{tag}"),
                               batch_size=args.batch_size, workers=args.workers)
        self.stages: dict = {}
        self.infer()  # warm-up: first-call allocation and kernel selection

    def infer(self) -> None:
        for batch in self.batches:
            self.backend.infer(batch)

    def query(self) -> None:
        from atool.workflows.query import query_to_file

        self.stages = query_to_file(self.backend, self.images_dir, self.cfg, self.out)["timings"]

    def row(self, infer: tuple[float, float], query: tuple[float, float]) -> dict:
        (infer_s, infer_cpu), (query_s, query_cpu) = infer, query
        n, cores = self.n, os.cpu_count() or 1
        return {
            "backend": self.backend.name,
            "images": n,
            # Microseconds and four decimals: on small runs inference takes a few milliseconds, and
            # coarser rounding would leave the reported ratio inconsistent with the reported times.
            "infer_seconds": round(infer_s, 6),
            "query_seconds": round(query_s, 6),
            "infer_images_per_s": round(n / infer_s, 2),
            "query_images_per_s": round(n / query_s, 2),
            "end_to_end_over_inference": round((n / query_s) / (n / infer_s), 4),
            "last_query_stage_seconds": self.stages,
            # Where end to end falls short of inference only: on a machine whose cores are all busy
            # (utilisation near 1), overlap cannot help any more; only less host work can. host_cpu_ms
            # is the query's CPU time beyond inference's (decode, selection, pseudo labels, list).
            "cpu_ms_per_image": {"inference": round(1000 * infer_cpu / n, 2), "query": round(1000 * query_cpu / n, 2),
                                 "host": round(1000 * (query_cpu - infer_cpu) / n, 2)},
            "cpu_utilisation": {"inference": round(infer_cpu / (infer_s * cores), 3), "query": round(query_cpu / (query_s * cores), 3)},
            # The best end-to-end/inference ratio the query's CPU work allows on these cores: its wall
            # time is at least inference's and at least its CPU seconds spread over every core.
            "end_to_end_bound": round(min(1.0, infer_s * cores / query_cpu), 4) if query_cpu > 0 else 1.0,
        }


def _decoded_batches(images_dir: Path, batch_size: int) -> list:
    """The images of ``images_dir`` decoded once, in batches, for every inference-only timing."""
    import numpy as np

    from atool.data.images import list_images, read_image

    decoded = [read_image(p) for p in list_images(images_dir)]
    return [np.stack(decoded[i : i + batch_size]) for i in range(0, len(decoded), batch_size)]


def _bench_backend(backends: list, batches: list, images_dir: Path, args: argparse.Namespace, work: Path) -> list[dict]:
    """One row per backend in ``backends`` (the plain model, then its selector), all timed in the same interleaved rounds."""
    timed = [_Timed(b, batches, images_dir, args, work, f"{i}_{b.name}") for i, b in enumerate(backends)]
    fns = {}
    for i, t in enumerate(timed):
        fns[f"infer{i}"], fns[f"query{i}"] = t.infer, t.query
    got = _rounds(fns, args.repeats)
    return [t.row(got[f"infer{i}"], got[f"query{i}"]) for i, t in enumerate(timed)]


def _selector_models(ckpt: Path, work: Path) -> tuple[Path, Path]:
    """An untrained shared-backbone selector around ``ckpt``, as a checkpoint and as its checked ONNX export."""
    from atool.models.selector import selector_checkpoint
    from atool.workflows.export import export_checked

    sel_pt, sel_onnx = work / "selector.pt", work / "selector.onnx"
    selector_checkpoint(ckpt, sel_pt)
    export_checked(sel_pt, sel_onnx, verify=True)
    return sel_pt, sel_onnx


def _load(path: Path, args: argparse.Namespace, ort_config: dict):
    """The backend for ``path`` with the benchmark's threads (and, for an ONNX model, its session entries)."""
    from atool.runtime.backends import load_backend

    extra = {"session_options": {"config": ort_config}} if ort_config and path.suffix == ".onnx" else {}
    return load_backend(path, threads=args.threads or None, **extra)


def _bench_strategies(backend, images_dir: Path, args: argparse.Namespace, work: Path) -> dict:
    """End-to-end query img/s per strategy on one backend, and each over entropy_patch's, measured alternately."""
    from atool.workflows.query import QueryConfig, query_to_file

    names = ["entropy_patch"] + [s for s in args.compare_strategies.split(",") if s and s != "entropy_patch"]
    n = None
    times: dict[str, list[float]] = {s: [] for s in names}
    for _ in range(args.repeats):
        # Interleaved repeats: a load spike on this shared machine hits every strategy alike.
        for s in names:
            cfg = QueryConfig(strategy=s, budget=args.budget, per_image=True, batch_size=args.batch_size)
            t0 = time.perf_counter()
            result = query_to_file(backend, images_dir, cfg, work / f"queries_{backend.name}_{s}.json")
            times[s].append(time.perf_counter() - t0)
            n = result["stats"]["images_processed"]
    rate = {s: n / statistics.median(v) for s, v in times.items()}
    return {s: {"query_images_per_s": round(r, 2), "over_entropy_patch": round(r / rate["entropy_patch"], 3)} for s, r in rate.items()}


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    if args.images < 1 or args.batch_size < 1 or args.repeats < 1 or args.budget < 0:
        print("bench_query: --images, --batch-size and --repeats must be >= 1 and --budget >= 0", file=sys.stderr)
        return 2
    if any("=" not in item for item in args.ort_config):
        print("bench_query: --ort-config takes KEY=VALUE", file=sys.stderr)
        return 2
    ort_config = dict(item.split("=", 1) for item in args.ort_config)
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    from atool.core.openmp import passive_openmp_waits

    passive_openmp_waits()  # as `atool query` does, for inference-only and end to end alike
    from atool.core.allocator import keep_freed_memory

    kept = keep_freed_memory()  # as atool's command line does (atool/cli.py); ATOOL_KEEP_FREED_MEMORY=0 to compare
    import onnxruntime
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="atool-bench-") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        images_dir, ckpt, onnx_path = _prepare(work, args)
        sel_pt, sel_onnx = _selector_models(ckpt, work) if args.selector else (None, None)
        batches = _decoded_batches(images_dir, args.batch_size)
        rows, selector_rows = [], []
        for path, sel in ((ckpt, sel_pt), (onnx_path, sel_onnx)):
            plain = _load(path, args, ort_config)
            got = _bench_backend([plain] + ([_load(sel, args, ort_config)] if sel else []), batches, images_dir, args, work)
            rows.append(got[0])
            selector_rows += got[1:]
            if args.compare_strategies:
                rows[-1]["strategies"] = _bench_strategies(plain, images_dir, args, work)
    torch_row, ort_row = rows
    result = {
        "size": f"{args.size[0]}x{args.size[1]}",
        "image_format": args.image_format,
        "model": args.checkpoint or args.model,
        "batch_size": args.batch_size,
        "budget_per_image": args.budget,
        "strategy": args.strategy,
        "repeats": args.repeats,
        "threads": args.threads or os.cpu_count(),
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs",
        "onnxruntime_session_config": ort_config,
        "keep_freed_memory": kept,
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "backends": rows,
        "onnxruntime_over_torch": {
            "inference": round(ort_row["infer_images_per_s"] / torch_row["infer_images_per_s"], 3),
            "end_to_end": round(ort_row["query_images_per_s"] / torch_row["query_images_per_s"], 3),
        },
    }
    if selector_rows:
        result["selector_backends"] = selector_rows
        result["selector_over_plain"] = {
            plain["backend"]: {"inference": round(plain["infer_images_per_s"] / sel["infer_images_per_s"], 3),
                               "query": round(plain["query_images_per_s"] / sel["query_images_per_s"], 3)}
            for plain, sel in zip(rows, selector_rows)
        }
    print(f"query benchmark: {torch_row['images']} {args.image_format} images at {result['size']}, "
          f"{result['model']}, batch {args.batch_size}, {args.budget} points/image ({args.strategy}), {result['machine']}, "
          f"freed memory {'kept' if kept else 'returned (glibc defaults)'}")
    print(f"{'backend':<12} {'infer img/s':>12} {'query img/s':>12} {'e2e/infer':>10} {'CPU ms/img infer':>17} {'query':>7} {'host':>7} {'util infer':>11} {'query':>6} {'e2e bound':>10}")
    for r in rows:
        c, u = r["cpu_ms_per_image"], r["cpu_utilisation"]
        print(f"{r['backend']:<12} {r['infer_images_per_s']:12.2f} {r['query_images_per_s']:12.2f} {r['end_to_end_over_inference']:10.3f}"
              f" {c['inference']:17.1f} {c['query']:7.1f} {c['host']:7.1f} {u['inference']:11.2f} {u['query']:6.2f} {r['end_to_end_bound']:10.3f}")
    ratio = result["onnxruntime_over_torch"]
    print(f"onnxruntime / torch: inference {ratio['inference']:.3f}x, end to end {ratio['end_to_end']:.3f}x")
    for name, v in result.get("selector_over_plain", {}).items():
        print(f"selector / plain, {name}: inference {v['inference']:.3f}x, query {v['query']:.3f}x (cost; 1.15 is the goal)")
    for r in rows:
        for s, v in r.get("strategies", {}).items():
            print(f"{r['backend']:<12} {s:<18} query {v['query_images_per_s']:8.2f} img/s  {v['over_entropy_patch']:.3f}x entropy_patch")
    if args.json_out:
        from atool.core.io import atomic_write_json

        atomic_write_json(args.json_out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
