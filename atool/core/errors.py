"""Error types. The CLI turns these into one line on stderr and an exit code.

BadInput (exit 2) is the user's to fix: a wrong path, a malformed file, a
mismatch between a model and a dataset. Failure (exit 1) is ours or the
environment's. Messages say what was received, what is valid, and what to do.
"""

from __future__ import annotations


class AtoolError(Exception):
    """Base class; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class BadInput(AtoolError):
    """The user gave something atool cannot use."""

    exit_code = 2


class Mismatch(BadInput):
    """Two inputs that must agree do not (classes, sizes, model configs)."""


class MissingDependency(BadInput):
    """An optional runtime (TensorRT, onnxruntime-gpu) is not installed."""


class UnknownName(BadInput):
    """A registry lookup for a name that is not registered."""


class Failure(AtoolError):
    """Something went wrong that is not the user's input (e.g. a parity check failed)."""

    exit_code = 1
