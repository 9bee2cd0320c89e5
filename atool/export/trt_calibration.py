"""INT8 calibration data for TensorRT engines.

``calibration_batch`` reads the ``--calib-images`` folder into one uint8
K x H x W x 3 array at the profile's optimal size (both TensorRT lines use it:
ModelOpt's quantizer under TensorRT 11, the entropy calibrator under 10).
``make_entropy_calibrator`` wraps it in TensorRT 10's ``IInt8EntropyCalibrator2``,
feeding fixed-size batches through one CUDA buffer allocated once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from atool.core.errors import BadInput

MAX_CALIBRATION_IMAGES = 256
CALIBRATION_BATCH = 8


def calibration_batch(folder: str | os.PathLike | None, size: tuple[int, int], limit: int = MAX_CALIBRATION_IMAGES) -> np.ndarray:
    """uint8 K x H x W x 3 (K <= ``limit``) of the images under ``folder``, resized to ``size`` = (width, height).

    Files are taken in sorted order (the same folder gives the same engine);
    unreadable ones are skipped. BadInput when none is readable.
    """
    import cv2

    from atool.data.images import BadImage, list_images, read_image

    if folder is None or not Path(folder).is_dir():
        raise BadInput(f"calibration image folder {folder} does not exist")
    width, height = int(size[0]), int(size[1])
    out = []
    for path in list_images(Path(folder)):
        try:
            img = read_image(path)
        except BadImage:
            continue
        if img.shape[:2] != (height, width):
            img = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
        out.append(img)
        if len(out) >= limit:
            break
    if not out:
        raise BadInput(f"no readable calibration images under {folder}")
    return np.stack(out)


def make_entropy_calibrator(trt: Any, images: np.ndarray, input_name: str, cache_path: Path, batch_size: int = CALIBRATION_BATCH) -> Any:
    """A TensorRT 10 ``IInt8EntropyCalibrator2`` over ``images`` (uint8 K x H x W x 3).

    Batches have exactly ``min(batch_size, K)`` images (the calibration
    profile is static); a tail shorter than that is left out. ``.shape`` is
    the batch shape to give ``config.set_calibration_profile``.
    """
    import torch

    if not torch.cuda.is_available():
        raise BadInput("INT8 calibration runs on the GPU, and torch sees no CUDA device here")
    n = min(batch_size, len(images))
    batches = [images[i : i + n] for i in range(0, len(images) - n + 1, n)]

    class _Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.shape = (n,) + tuple(images.shape[1:])
            self.device = torch.empty(self.shape, dtype=torch.uint8, device="cuda")
            self.index = 0

        def get_batch_size(self) -> int:
            return n

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.index >= len(batches):
                return None
            self.device.copy_(torch.from_numpy(np.ascontiguousarray(batches[self.index])))
            torch.cuda.synchronize()
            self.index += 1
            return [int(self.device.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache: Any) -> None:
            cache_path.write_bytes(bytes(cache))

    return _Calibrator()


__all__ = ["MAX_CALIBRATION_IMAGES", "calibration_batch", "make_entropy_calibrator"]
