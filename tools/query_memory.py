#!/usr/bin/env python3
"""Peak memory of ``atool query`` over pools of different sizes (flat memory, DESIGN.md §5).

For each pool size N it fills a folder with N images (hard links to, or
copies of, the given images, named apart), runs ``atool query`` on it in a
fresh process and reads that process's peak RSS (``ru_maxrss`` from
``wait4``). A query keeps per-image candidates, never maps, so the peaks
should agree within a few percent however large N is.

  python tools/query_memory.py --model /work/demo_base/advent.onnx \\
      --images /work/demo_base/data/target_train/images --sizes 100,10000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _fill(pool: Path, sources: list[Path], n: int) -> None:
    pool.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        src = sources[i % len(sources)]
        dst = pool / f"{i:06d}{src.suffix}"
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)


def _run(args: list[str]) -> tuple[int, float, int]:
    """(peak RSS in KiB, seconds, exit code) of one command."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode:
        print(err, file=sys.stderr)
    return int(usage.ru_maxrss), time.perf_counter() - t0, proc.returncode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--images", required=True, help="folder of images to replicate")
    p.add_argument("--sizes", default="100,10000", help="pool sizes, comma-separated")
    p.add_argument("--budget", type=int, default=50)
    p.add_argument("--extra", default="", help="more atool query options, one string")
    p.add_argument("--json", dest="json_out")
    args = p.parse_args(argv)
    sources = sorted(q for q in Path(args.images).iterdir() if q.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not sources:
        print(f"query_memory: no images in {args.images}", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="atool-rss-") as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            pool = Path(tmp) / f"pool{n}"
            _fill(pool, sources, n)
            cmd = [sys.executable, "-m", "atool.cli", "query", "--model", args.model, "--images", str(pool),
                   "--budget", str(args.budget), "--out", str(Path(tmp) / f"q{n}.json"), *args.extra.split()]
            rss, seconds, code = _run(cmd)
            if code:
                return code
            rows.append({"images": n, "peak_rss_mib": round(rss / 1024, 1), "seconds": round(seconds, 1)})
            print(f"{n:>8} images: peak RSS {rss / 1024:8.1f} MiB, {seconds:7.1f} s", flush=True)
            shutil.rmtree(pool)
    base = rows[0]["peak_rss_mib"]
    for r in rows[1:]:
        print(f"peak RSS at {r['images']} / at {rows[0]['images']} images: {r['peak_rss_mib'] / base:.3f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
