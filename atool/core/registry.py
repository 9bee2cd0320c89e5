"""Plug-in registries: plain dicts filled by a decorator.

The registries (models, training methods, selection strategies, runtime
backends, query-list formats, dataset adapters) each live in the package of
the things they register. A plug-in's name is written once, in
``@REGISTRY.register("name")``, which also sets it as the class's ``name``.
``load_plugins`` imports every module of the package, so adding a plug-in is
one new file and no list anywhere is edited.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Generic, Iterable, Iterator, TypeVar

from atool.core.errors import UnknownName

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            if isinstance(obj, type):
                obj.name = name  # the one place the name is written
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            valid = ", ".join(sorted(self._entries)) or "(none)"
            raise UnknownName(f"unknown {self.kind} {name!r}; valid: {valid}") from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        return [(name, self._entries[name]) for name in self.names()]

    def load_plugins(self, package: str, path: Iterable[str]) -> None:
        """Import every public module of ``package`` (its ``__path__``) so that their decorators run."""
        for info in pkgutil.iter_modules(list(path)):
            if not info.name.startswith("_"):
                importlib.import_module(f"{package}.{info.name}")
