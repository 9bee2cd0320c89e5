#!/usr/bin/env python3
"""The inference graph's cost, before and after issue 10, and the selector's, in one run.

Times, on the same images and repeats interleaved (so a load spike on a
shared machine hits every row alike):

* ``torch`` / ``onnxruntime``: the model as atool exports it now;
* ``*-legacy``: the same weights through the graph as it was before issue 10
  (``log_softmax`` over the channel axis, each selector head's logits
  upsampled and then softmaxed and returned whole as ``head1``/``head2``,
  LR-ASPP heads upsampling 128 channels);
* ``selector-*``: a shared-backbone selector around the same model.

For each row, inference only (``backend.infer`` over pre-decoded batches)
and the whole ``atool query`` (default: entropy_patch, 50 points per image),
as wall seconds and as CPU seconds (process time over all threads: with
fixed thread counts the work itself, whatever else runs on the machine).
Ratios: onnxruntime / torch (speed; > 1 means onnxruntime is faster) before
and after, and selector / plain (cost; <= 1.15 is the goal).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="the adapted model to time (.pt)")
    p.add_argument("--images", required=True, help="target images; the first --limit are resized to --size")
    p.add_argument("--limit", type=int, default=8)
    p.add_argument("--size", default="1024x512", help="WxH (default 1024x512)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--budget", type=int, default=50, help="points per image in the query (default 50)")
    p.add_argument("--strategy", default="entropy_patch")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="intra-op threads for every backend (default 1)")
    p.add_argument("--no-legacy", action="store_true", help="skip the pre-issue-10 graph")
    p.add_argument("--no-selector", action="store_true", help="skip the selector")
    p.add_argument("--workdir", help="keep images and models here")
    p.add_argument("--json", dest="json_out")
    return p.parse_args(argv)


def _resized_copies(src: Path, dst: Path, limit: int, size: tuple[int, int]) -> Path:
    import cv2

    from atool.data.images import list_images, read_image, write_image

    dst.mkdir(parents=True, exist_ok=True)
    for path in list_images(src)[:limit]:
        out = dst / f"{path.stem}.png"
        if not out.is_file():
            write_image(out, cv2.resize(read_image(path), size, interpolation=cv2.INTER_LINEAR))
    return dst


def _legacy_forward(self, image):
    """DeployModel.forward before issue 10 (no prototypes): log_softmax over channels; heads upsampled as logits."""
    import torch.nn.functional as F

    from atool.ops.normalize import normalize
    from atool.ops.uncertainty_torch import prob_and_entropy

    x = normalize(image.permute(0, 3, 1, 2), self.mean, self.inv_std)
    size = x.shape[-2:]
    out = self.model(x)
    logits = F.interpolate(out["out"], size=size, mode="bilinear", align_corners=False)
    prob, entropy = prob_and_entropy(logits, self.inv_log_c)
    results = [prob, entropy]
    if self.heads:
        for head in out["heads"]:
            results.append(F.softmax(F.interpolate(head, size=size, mode="bilinear", align_corners=False), dim=1))
    return tuple(results)


def _legacy_output_names(self):
    """The outputs before the heads were reduced in-graph: both heads' softmaxes."""
    return ["prob", "entropy"] + (["head1", "head2"] if self.heads else [])


def _legacy_heads(self, feats):
    return [head(feats) for head in self.heads]


@contextlib.contextmanager
def _legacy_graph():
    from atool.models.inference_graph import DeployModel
    from atool.models.selector import SelectorModel

    saved = DeployModel.forward, DeployModel.output_names, SelectorModel.head_logits
    DeployModel.forward, DeployModel.output_names, SelectorModel.head_logits = _legacy_forward, _legacy_output_names, _legacy_heads
    try:
        yield
    finally:
        DeployModel.forward, DeployModel.output_names, SelectorModel.head_logits = saved


def _backends(models: list[tuple[str, Path]], work: Path, legacy: bool, threads: int) -> list[tuple[str, object]]:
    from atool.runtime.backends import load_backend
    from atool.workflows.export import export_checked

    named = []
    for prefix, pt in models:
        onnx_path = work / f"{pt.stem}.onnx"
        export_checked(pt, onnx_path, verify=True)
        named += [(f"{prefix}torch", load_backend(pt, threads=threads)), (f"{prefix}onnxruntime", load_backend(onnx_path, threads=threads))]
        if legacy:
            legacy_onnx = work / f"{pt.stem}_legacy.onnx"
            with _legacy_graph():
                export_checked(pt, legacy_onnx, verify=True)
            tb = load_backend(pt, threads=threads)
            tb.net.forward = types.MethodType(_legacy_forward, tb.net)
            tb.output_names = _legacy_output_names(tb.net)
            if tb.heads:
                tb.net.model.head_logits = types.MethodType(_legacy_heads, tb.net.model)
            named += [(f"{prefix}torch-legacy", tb), (f"{prefix}onnxruntime-legacy", load_backend(legacy_onnx, threads=threads))]
    return named


def _time(named, images_dir: Path, args: argparse.Namespace, work: Path) -> dict[str, dict]:
    import numpy as np

    from atool.data.images import list_images, read_image
    from atool.workflows.query import QueryConfig, query_to_file

    decoded = [read_image(p) for p in list_images(images_dir)]
    batches = [np.stack(decoded[i : i + args.batch_size]) for i in range(0, len(decoded), args.batch_size)]
    t = {label: {"infer": [], "query": [], "infer_cpu": [], "query_cpu": []} for label, _ in named}
    for _, backend in named:
        backend.infer(batches[0])
    for _ in range(args.repeats):
        for label, backend in named:
            w, c = time.perf_counter(), time.process_time()
            for batch in batches:
                backend.infer(batch)
            t[label]["infer"].append(time.perf_counter() - w)
            t[label]["infer_cpu"].append(time.process_time() - c)
        for label, backend in named:
            cfg = QueryConfig(strategy=args.strategy, budget=args.budget, per_image=True, batch_size=args.batch_size)
            w, c = time.perf_counter(), time.process_time()
            query_to_file(backend, images_dir, cfg, work / f"q_{label}.json")
            t[label]["query"].append(time.perf_counter() - w)
            t[label]["query_cpu"].append(time.process_time() - c)
    n = len(decoded)
    rows = {}
    for label, _ in named:
        med = {k: statistics.median(v) for k, v in t[label].items()}
        rows[label] = {"images": n, **{f"{k}_seconds": round(v, 4) for k, v in med.items()},
                       "infer_images_per_s": round(n / med["infer"], 3), "query_images_per_s": round(n / med["query"], 3)}
    return rows


def _ratios(rows: dict[str, dict]) -> dict[str, dict]:
    def r(a: str, b: str) -> dict | None:
        if a not in rows or b not in rows:
            return None
        return {k: round(rows[a][f"{k}_seconds"] / rows[b][f"{k}_seconds"], 3) for k in ("infer", "infer_cpu", "query", "query_cpu")}

    out = {"onnxruntime_over_torch_after": r("torch", "onnxruntime"), "onnxruntime_over_torch_before": r("torch-legacy", "onnxruntime-legacy")}
    for b in ("torch", "onnxruntime"):
        out[f"selector_over_plain_{b}_after"] = r(f"selector-{b}", b)
        out[f"selector_over_plain_{b}_before"] = r(f"selector-{b}-legacy", f"{b}-legacy")
        out[f"{b}_after_over_before"] = r(f"{b}-legacy", b)
    return {k: v for k, v in out.items() if v is not None}


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    from atool.core.allocator import keep_freed_memory

    keep_freed_memory()  # as atool's command line does (atool/cli.py)
    import onnxruntime
    import torch

    from atool.models.selector import selector_checkpoint

    torch.set_num_threads(args.threads)
    w, _, h = args.size.partition("x")
    size = (int(w), int(h))
    with tempfile.TemporaryDirectory(prefix="atool-bench-graph-") as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        images = _resized_copies(Path(args.images), work / "images", args.limit, size)
        plain = work / "plain.pt"
        plain.write_bytes(Path(args.checkpoint).read_bytes())
        models = [("", plain)] + ([] if args.no_selector else [("selector-", selector_checkpoint(plain, work / "selector.pt"))])
        named = _backends(models, work, not args.no_legacy, args.threads)
        rows = _time(named, images, args, work)
    ratios = _ratios(rows)
    print(f"graph benchmark: {args.limit} images at {args.size}, {args.checkpoint}, batch {args.batch_size}, "
          f"{args.threads} thread(s), {platform.machine()} {os.cpu_count()} CPUs, median of {args.repeats}")
    print(f"{'row':<30} {'infer img/s':>11} {'query img/s':>11} {'infer cpu s':>11} {'query cpu s':>11}")
    for label, row in rows.items():
        print(f"{label:<30} {row['infer_images_per_s']:11.2f} {row['query_images_per_s']:11.2f} "
              f"{row['infer_cpu_seconds']:11.3f} {row['query_cpu_seconds']:11.3f}")
    for key, value in ratios.items():
        print(f"{key}: " + ", ".join(f"{k} {v:.3f}" for k, v in value.items()))
    if args.json_out:
        from atool.core.io import atomic_write_json

        atomic_write_json(args.json_out, {"size": args.size, "threads": args.threads, "repeats": args.repeats,
                                          "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
                                          "rows": rows, "ratios": ratios})
    return 0


if __name__ == "__main__":
    sys.exit(main())
