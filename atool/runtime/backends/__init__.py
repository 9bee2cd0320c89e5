"""Runtime backends: ``load_backend(path)`` picks one by file suffix.

Every backend runs the same inference graph (atool.models.inference_graph.DeployModel):
``infer(batch)`` takes uint8 N x H x W x 3 RGB (all images of one size) and
returns float32 numpy arrays ``prob`` N x C x H x W and ``entropy`` N x H x W
(normalised by log C), plus ``heads_disagree``/``heads_discrepancy`` N x H x W when the model has
selector heads (``head1``/``head2`` N x C x H x W in models exported before)
and ``gap`` N x H x W (domain gap to the source prototypes, in [0, 2]) when it
has prototypes (``atool prototypes``).
onnxruntime and tensorrt are imported inside their backends only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from atool.core.errors import BadInput
from atool.core.registry import Registry


class Backend:
    """Base class. Subclasses set the attributes below in ``__init__``."""

    name: ClassVar[str] = "?"
    suffixes: ClassVar[tuple[str, ...]] = ()  # model-file suffixes this backend loads (lower case)
    path: Path
    classes: list[str]
    heads: bool = False
    prototypes: bool = False  # the ``gap`` output is present
    output_names: list[str]  # the keys ``infer`` returns, in graph order
    metadata: dict[str, Any]

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    @staticmethod
    def check_batch(batch: np.ndarray) -> None:
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[3] != 3:
            raise ValueError(f"backend input must be uint8 N x H x W x 3, got {batch.dtype} {batch.shape}")


BACKENDS: Registry[type[Backend]] = Registry("backend")


def backend_for_suffix(suffix: str) -> str | None:
    """The registered backend that reads model files ending in ``suffix`` (lower case), or None."""
    return next((name for name, cls in BACKENDS.items() if suffix in cls.suffixes), None)


def load_backend(path: str | os.PathLike, device: str | None = None, **kwargs: Any) -> Backend:
    """The backend for ``path``'s suffix, loaded on ``device`` (None: the backend's default, cpu or cuda for engines).

    ``kwargs`` go to the backend (``threads``; ``provider`` for onnxruntime).
    """
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"model file {path} not found")
    name = backend_for_suffix(path.suffix.lower())
    if name is None:
        valid = ", ".join(sorted(s for _, cls in BACKENDS.items() for s in cls.suffixes))
        raise BadInput(f"{path}: cannot tell the backend from suffix {path.suffix!r}; valid suffixes: {valid}")
    if device is not None:
        kwargs["device"] = device
    return BACKENDS.get(name)(path, **kwargs)


BACKENDS.load_plugins(__name__, __path__)
