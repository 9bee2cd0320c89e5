"""Option types shared by several commands.

``RegistryChoice`` is a click choice over a plug-in registry that imports the
registry only to check a value. ``--help`` lists the names read from the
plug-in modules' ``@REGISTRY.register("name")`` lines, without importing
them: the training methods bring torch, and ``atool --help`` must stay cheap.
A contract test checks that these names equal the registry's.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path
from typing import Any

import click

from atool.core.config import SIZE, SizeType

_REGISTER = re.compile(r"""@\w+\.register\(\s*["']([^"']+)["']""")


def declared_names(package: str) -> list[str]:
    """Names registered by the public modules of ``package``, read from their source (nothing imported)."""
    spec = importlib.util.find_spec(package)  # imports the parent packages only
    if spec is None or not spec.submodule_search_locations:
        return []
    names: set[str] = set()
    for folder in spec.submodule_search_locations:
        for path in Path(folder).glob("*.py"):
            if path.name.startswith("_"):
                continue
            names.update(_REGISTER.findall(path.read_text(encoding="utf-8")))
    return sorted(names)


class RegistryChoice(click.ParamType):
    """One of the names in ``package.REGISTRY``; imported only when a value is converted."""

    name = "choice"

    def __init__(self, package: str, registry: str) -> None:
        self.package, self.registry = package, registry

    def names(self) -> list[str]:
        return getattr(importlib.import_module(self.package), self.registry).names()

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "[" + "|".join(declared_names(self.package)) + "]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        names = self.names()
        if value in names:
            return value
        self.fail(f"{value!r} is not one of {', '.join(repr(n) for n in names)}.", param, ctx)

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
        from click.shell_completion import CompletionItem

        return [CompletionItem(n) for n in declared_names(self.package) if n.startswith(incomplete)]


def backend_options(f: Any) -> Any:
    """``--backend``, ``--provider`` and ``--bench`` (``atool.runtime.select.open_backend`` reads them)."""
    f = click.option("--bench", "bench", type=click.Path(dir_okay=False), default=None,
                     help="Benchmark for --backend auto  [default: <model stem>.bench.json beside the model]")(f)
    f = click.option("--provider", "provider", type=click.Choice(["cpu", "cuda", "tensorrt"]), default=None,
                     help="onnxruntime execution provider (cuda, tensorrt); a missing one is an error, never a CPU fallback.")(f)
    f = click.option("--backend", "backend", type=click.Choice(["auto", "torch", "onnxruntime", "tensorrt"]), default=None,
                     help="Runtime (a file beside --model with the same stem is used if needed); auto: the fastest "
                          "in `atool bench`'s result  [default: by the model's suffix]")(f)
    return f


STRATEGY = RegistryChoice("atool.active.strategies", "STRATEGIES")
FORMAT = RegistryChoice("atool.annotate.formats", "FORMATS")
METHOD = RegistryChoice("atool.train.methods", "METHODS")

__all__ = ["SIZE", "SizeType", "RegistryChoice", "declared_names", "backend_options", "STRATEGY", "FORMAT", "METHOD"]
