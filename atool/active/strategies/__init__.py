"""Selection strategies: one image's maps -> a compact list of candidate points.

A strategy never sees more than one image and never decides the budget split;
it only ranks points of its image (``candidates``). The selectors in
``atool.active.candidates`` then pick the best under the budget, across images
or per image. Randomness comes from ``image_rng(seed, relative_path)``, so an
image gets the same points whatever order or batch it is processed in.

Adding a strategy is one new module with a ``Strategy`` subclass registered in
``STRATEGIES`` under its CLI name; modules of this package are found on import.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

import numpy as np

from atool.active.candidates import Candidates, Regions
from atool.core.errors import BadInput
from atool.core.registry import Registry

# One image's backend outputs: "prob" float32 C x H x W, "entropy" float32 H x W
# (normalised by log C), optionally "heads_disagree"/"heads_discrepancy" float32
# H x W (selector models; older exports give "head1"/"head2" float32 C x H x W), "gap"
# float32 H x W (domain gap to the source prototypes, in [0, 2]), and
# "labeled" bool H x W (pixels labeled in earlier rounds: never to be proposed;
# the query drops any that a strategy still returns).
Maps = dict[str, np.ndarray]


class Strategy:
    """Base class. Subclasses declare ``defaults`` (every parameter with its default).

    Parameters are validated at construction: an unknown name or a value of the
    wrong type is BadInput, so a typo in ``--param`` fails before any image is read.
    """

    name: ClassVar[str] = "?"
    # "point": ``candidates`` ranks pixels; "region": ``regions`` ranks masks (budget counts regions)
    kind: ClassVar[str] = "point"
    # True when the strategy reads the selector heads' outputs: the model must have them
    needs_heads: ClassVar[bool] = False
    # Other backend outputs the strategy reads (e.g. ("gap",)); the query checks the model has them
    needs_maps: ClassVar[tuple[str, ...]] = ()
    # What to tell a user whose model lacks one of ``needs_maps`` (how to get a model that has it)
    needs_maps_hint: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    # parameter -> allowed values, for string-valued parameters
    choices: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            valid = ", ".join(sorted(self.defaults)) or "(none)"
            raise BadInput(f"strategy {self.name!r} has no parameter {', '.join(unknown)}; valid: {valid}")
        self.params: dict[str, Any] = {k: _coerce(self.name, k, params.get(k, d), d) for k, d in self.defaults.items()}
        for key, allowed in self.choices.items():
            if self.params[key] not in allowed:
                raise BadInput(f"strategy {self.name!r}: {key}={self.params[key]!r} is not one of {', '.join(allowed)}")
        self.check()

    def check(self) -> None:
        """Range checks of ``self.params``; raise BadInput."""

    def candidates(self, maps: Maps, rng: np.random.Generator, want: int) -> Candidates:
        """Rank points of one image.

        ``want`` is the most points this image could ever contribute (the
        budget); strategies with a natural candidate set (patches) may ignore
        it, others return at most ``want`` points.
        """
        raise NotImplementedError

    def regions(self, maps: Maps, rng: np.random.Generator, want: int) -> Regions:
        """Rank regions of one image (``kind == "region"`` strategies only): at most ``want``."""
        raise BadInput(f"strategy {self.name!r} proposes points, not regions; use candidates()")

    def _require(self, ok: bool, message: str) -> None:
        if not ok:
            raise BadInput(f"strategy {self.name!r}: {message}")


def _coerce(strategy: str, key: str, value: Any, default: Any) -> Any:
    """Accept a value of the default's type (strings are parsed, for --param KEY=VALUE)."""
    kind = type(default)
    try:
        if kind is bool:
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.lower() in ("true", "1", "yes")
            if isinstance(value, bool):
                return value
        elif kind is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, (int, np.integer)) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
                return int(value)
            if isinstance(value, float) and value.is_integer():
                return int(value)
        elif kind is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        elif kind is str:
            if isinstance(value, str):
                return value
    except (TypeError, ValueError):
        pass
    raise BadInput(f"strategy {strategy!r}: parameter {key}={value!r} must be a {kind.__name__} (default {default!r})")


def image_rng(seed: int, image: str) -> np.random.Generator:
    """A generator that depends only on the run seed and the image's relative path."""
    digest = hashlib.sha256(f"{int(seed)}\0{image}".encode("utf-8")).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


STRATEGIES: Registry[type[Strategy]] = Registry("selection strategy")


def make_strategy(name: str, params: dict[str, Any] | None = None) -> Strategy:
    """Build a registered strategy; unknown names and parameters are BadInput."""
    return STRATEGIES.get(name)(**(params or {}))

STRATEGIES.load_plugins(__name__, __path__)

__all__ = ["Strategy", "STRATEGIES", "Maps", "image_rng", "make_strategy", "Candidates", "Regions"]
