"""Write a long in-domain video for `atool monitor run` (overhead and memory over 20,000 frames).

    python tools/monitor_overhead.py --out /tmp/drive.avi --frames 20000 --size 256x128
    atool monitor run --model M --calibration monitor.json --source /tmp/drive.avi --summary s.json

The run's summary gives model and monitoring time per frame, both timed apart in the same loop: means over
the run (``overhead`` = monitor / model) and medians over the last 1,000 frames (``overhead_median``, which
one descheduled frame does not move), and resident memory after 1,000 frames, at its maximum and at the end.
"""

from __future__ import annotations

import argparse

import cv2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--frames", type=int, default=20000)
    ap.add_argument("--size", default="256x128")
    ap.add_argument("--segments", default=None, help="default: in:<frames>")
    ap.add_argument("--seed", type=int, default=50)
    args = ap.parse_args()
    from atool.data.synth.stream import parse_segments, rendered_bases, stream_frames

    w, h = (int(v) for v in args.size.split("x"))
    writer = cv2.VideoWriter(args.out, cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (w, h))
    if not writer.isOpened():
        raise SystemExit(f"cannot write {args.out}")
    segs = parse_segments(args.segments or f"in:{args.frames}")
    for _, rgb, _ in stream_frames(rendered_bases(args.seed, (w, h)), segs, args.seed):
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
