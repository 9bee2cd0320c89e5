"""Project defaults: ``atool.yaml`` in the working directory gives any command's option defaults.

The file maps command names to option keys, the same keys as the command's
options (``_`` for ``-``) and its ``--config`` file::

    query:
      model: models/adapted.onnx
      budget: 50
    train:
      device: cpu

``atool.cli`` loads it into click's ``default_map``. Precedence, highest
first: the command line (and environment variables an option reads, such as
``ATOOL_MODEL``), a ``--config`` preset, ``atool.yaml``, the built-in
defaults. Options made by ``atool.core.config.dataclass_options`` see the
file's values as their own layer under the preset (``PROJECT_LAYER``, read by
``build_config``); other options (``--model``, ``--images``) take them as
plain click defaults.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from atool.core.errors import BadInput

PROJECT_FILE = "atool.yaml"
# (config class, {field: value from atool.yaml}) while a command made by ``dataclass_options`` runs.
PROJECT_LAYER: contextvars.ContextVar[tuple[type, dict[str, Any]] | None] = contextvars.ContextVar("atool_project_layer", default=None)


def project_defaults(commands: Mapping[str, click.Command], directory: str | os.PathLike = ".") -> dict[str, dict[str, Any]]:
    """``atool.yaml`` of ``directory`` as click's ``default_map``: {command: {option name: value}}.

    The file maps command names to their option keys (the ``--config`` keys,
    with ``_`` for ``-``, plus the command's other options such as ``model``
    and ``images``). No file gives {}. Unknown commands or keys are BadInput,
    so a typo never silently falls back to a default.
    """
    from atool.core.config import _unknown, load_yaml

    path = Path(directory) / PROJECT_FILE
    if not path.is_file():
        return {}
    data = load_yaml(path)
    unknown = sorted(str(k) for k in data if k not in commands)
    if unknown:
        raise BadInput(f"{path}: unknown command(s) {_unknown(unknown, commands, '')}; "
                       f"the top-level keys are command names ({', '.join(sorted(commands))}), e.g. query: {{model: m.onnx}}")
    out: dict[str, dict[str, Any]] = {}
    for name, section in data.items():
        if section is None:
            continue
        if not isinstance(section, Mapping):
            raise BadInput(f"{path}: {name} must be a mapping of option keys to values, got {section!r}")
        valid = [p.name for p in commands[name].params if isinstance(p, click.Option) and p.name not in ("config_path",)]
        bad = sorted(str(k) for k in section if k not in valid)
        if bad:
            raise BadInput(f"{path}: unknown {name} key(s) {_unknown(bad, valid, f'{name}.')}; valid: {', '.join(valid)}")
        out[str(name)] = dict(section)
    return out


__all__ = ["PROJECT_FILE", "PROJECT_LAYER", "project_defaults"]
