"""The pipelined scan of a query run: decode, inference and selection overlap.

Three stages run at once, each on its own thread(s):

* decode: ``cfg.workers`` threads read and decode ahead (``atool.runtime.decode``);
* inference: the calling thread groups decoded images into same-sized batches
  and runs the backend (torch and onnxruntime release the GIL while they run);
* selection: one thread turns each image's maps into candidates, chooses,
  writes pseudo labels and takes checkpoints.

Queues between the stages are short (``prefetch`` decoded images, one
inferred batch waiting), so memory holds a few batches of maps whatever the
number of images. Selection sees the images in listing order, one contiguous
range of positions per batch, so a checkpoint after a batch covers exactly
the images before a position: a resumed run skips them and nothing else.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Sequence

import numpy as np

from atool.active.selection import Scan, skip_reason
from atool.runtime.decode import Decoded, decode_ahead, same_size_batches

_STOP = object()


def _infer(scan: Scan, backend: Any, batch: list[Decoded]) -> dict[str, np.ndarray] | str:
    """Maps of one batch (uint8 N x H x W x 3 in), or the first line of the error that sank it."""
    t0 = time.perf_counter()
    try:
        return backend.infer(np.stack([item.rgb for item in batch]))
    except (RuntimeError, ValueError, MemoryError) as exc:
        # One odd image (e.g. too small for the network) must not sink the run.
        text = str(exc).strip()
        return text.splitlines()[0][:200] if text else type(exc).__name__
    finally:
        scan.timings["infer"] += time.perf_counter() - t0


def _select(scan: Scan, batch: list[Decoded], bad: list[Decoded], maps: dict[str, np.ndarray] | str | None) -> None:
    for item in bad:
        scan.timings["decode"] += item.seconds
        scan.skip(item.index, skip_reason(item.reason, item.path))
    if not batch:
        return
    scan.timings["decode"] += sum(item.seconds for item in batch)
    if isinstance(maps, str):
        scan.infer_error = maps
        for item in batch:
            scan.skip(item.index, f"inference failed: {maps}")
        return
    for k, item in enumerate(batch):
        # "image" (uint8 H x W x 3 RGB): colour-aware strategies (coverage) read the pixels.
        scan.select_one(item, {**{name: arr[k] for name, arr in maps.items()}, "image": item.rgb})
        item.rgb = None  # the decoded pixels are not needed past this point


def scan_images(
    scan: Scan, backend: Any, paths: Sequence[Any], index: Sequence[int], *, workers: int, batch_size: int,
    start: int = 0, every: int = 0, checkpoint: Callable[[int], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Score ``paths[start:]`` into ``scan``; ``index[k]`` is the listing index of ``paths[k]``.

    ``checkpoint(done)`` is called on the selection thread once at least
    ``every`` more images are finished, ``done`` being how many of ``paths``
    (from the first) are. ``progress(n)``: n more images are finished.
    Timings: ``infer_wait`` is the selection thread's wait for inference,
    ``select_wait`` the inference thread's wait for selection.
    """
    todo = list(paths[start:])
    handoff: queue.Queue = queue.Queue(maxsize=1)
    failure: list[BaseException] = []
    scan.timings.setdefault("infer_wait", 0.0)
    scan.timings.setdefault("select_wait", 0.0)

    def selector() -> None:
        saved = start
        try:
            while True:
                t0 = time.perf_counter()
                msg = handoff.get()
                scan.timings["infer_wait"] += time.perf_counter() - t0
                if msg is _STOP:
                    return
                batch, bad, maps, done = msg
                _select(scan, batch, bad, maps)
                if progress is not None:
                    progress(len(batch) + len(bad))
                if checkpoint is not None and every > 0 and done - saved >= every:
                    checkpoint(done)
                    saved = done
        except BaseException as exc:  # handed to the inference thread, which raises it
            failure.append(exc)

    def hand(msg: Any) -> None:
        t0 = time.perf_counter()
        while thread.is_alive():
            try:
                handoff.put(msg, timeout=0.1)
                break
            except queue.Full:
                continue
        scan.timings["select_wait"] += time.perf_counter() - t0

    thread = threading.Thread(target=selector, name="atool-select", daemon=True)
    thread.start()
    waited = [0.0]
    try:
        decoded = decode_ahead(todo, workers, prefetch=max(2 * batch_size, 2 * workers, 2))
        for batch, bad in same_size_batches(decoded, batch_size, waited):
            if failure:
                break
            done = start + 1 + max(item.index for item in batch + bad)
            for item in batch + bad:
                item.index = int(index[start + item.index])
            maps = _infer(scan, backend, batch) if batch else None
            hand((batch, bad, maps, done))
    finally:
        hand(_STOP)
        thread.join()
        scan.timings["decode_wait"] += waited[0]
    if failure:
        raise failure[0]
