"""Run configurations: one mechanism, dataclass -> YAML -> CLI.

A run's settings are a dataclass whose fields carry their help text in
``field(metadata={"help": ...})`` (``setting`` is a shorthand). The same class
gives the keys of its YAML presets (``load_yaml`` + ``build_config``; unknown
keys are errors, so a typo never silently falls back to a default) and its
command-line options (``dataclass_options``: ``--field-name``, bools
``--x/--no-x``, sizes ``WxH``; an option left unset is None, so it overrides
the preset only when given).

Fields whose type is another dataclass are sections (``LoopConfig.query``);
``dict`` fields with ``metadata={"keys": SomeConfig}`` are partial sections of
that class (the train-config keys of a loop's retraining). A preset lays each
section over its default key by key. Every run writes its resolved config next
to its outputs (``write_config``).

Project defaults: an ``atool.yaml`` in the working directory maps command
names to option keys (``query: {model: model.onnx, budget: 50}``); the CLI
loads it (``project_defaults``) into click's ``default_map``. For options made
by ``dataclass_options`` those values are a layer of their own, below a
``--config`` preset: command line > ``--config`` > ``atool.yaml`` > defaults.

Field metadata read here: ``help``; ``choices`` (allowed strings); ``cli``
(extra click declarations: aliases such as ``--backbone-weights``, or
``" /--total"`` as a second off-switch of a bool); ``metavar``; ``show_default``
(False: the help leaves the default out); ``keys``.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import numbers
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any, Callable, TypeVar

import click
import yaml

from atool.core.errors import BadInput
from atool.core.project import PROJECT_FILE, PROJECT_LAYER, project_defaults

C = TypeVar("C")
F = TypeVar("F", bound=Callable[..., Any])
_MISSING = dataclasses.MISSING


def setting(default: Any = dataclasses.MISSING, help: str = "", *, default_factory: Any = dataclasses.MISSING, **meta: Any) -> Any:
    """``dataclasses.field`` with its help text (and the CLI hints above) in ``metadata``."""
    return field(default=default, default_factory=default_factory, metadata={"help": help, **meta})


def __getattr__(name: str) -> Any:
    # TrainConfig lives in its own module (it imports ``setting`` from here); it is re-exported
    # lazily so that ``from atool.core.config import TrainConfig`` keeps working without a cycle.
    if name == "TrainConfig":
        from atool.core.train_config import TrainConfig

        return TrainConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------ YAML


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"config {path} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise BadInput(f"config {path} is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadInput(f"config {path} must be a mapping of keys to values")
    return data


def build_config(
    cls: type[C], preset: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None, *,
    base: C | None = None, label: str = "config",
) -> C:
    """Defaults (of ``cls``, or the instance ``base``), then ``preset``, then ``overrides``.

    In ``overrides`` None means 'not given' (an unset CLI option). Sections
    (dataclass and ``dict`` fields) are laid over key by key. Unknown keys,
    values of the wrong type and failed ``validate()`` checks are BadInput;
    ``label`` names the config in messages ("unknown {label} key(s) ...").
    """
    values = _start(cls, base)
    project = PROJECT_LAYER.get()
    if project is not None and project[0] is cls and project[1]:
        _lay(cls, values, project[1], f"{PROJECT_FILE} {label}", "", skip_none=True)
    _lay(cls, values, preset if preset is not None else {}, label, "", skip_none=False)
    _lay(cls, values, overrides if overrides is not None else {}, "option", "", skip_none=True)
    return _finish(cls, values, label, "")


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _section_class(hint: Any) -> type | None:
    return hint if isinstance(hint, type) and dataclasses.is_dataclass(hint) else None


def _is_dict(hint: Any) -> bool:
    return hint is dict or typing.get_origin(hint) is dict


def _start(cls: type, base: Any) -> dict[str, Any]:
    """Field name -> starting value (``_MISSING`` for a required field); sections become dicts."""
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if base is not None:
            value = copy.deepcopy(getattr(base, f.name))
        elif f.default is not _MISSING:
            value = copy.deepcopy(f.default)
        elif f.default_factory is not _MISSING:
            value = f.default_factory()
        else:
            value = _MISSING
        sub = _section_class(hints[f.name])
        if sub is not None:
            value = _start(sub, value if isinstance(value, sub) else None)
        values[f.name] = value
    return values


def _lay(cls: type, values: dict[str, Any], data: Any, what: str, prefix: str, *, skip_none: bool) -> None:
    """Lay the mapping ``data`` over ``values`` (from ``_start``) in place."""
    where = f" in {prefix[:-1]}" if prefix else ""
    if not isinstance(data, Mapping):
        raise BadInput(f"{what}{where}: expected a mapping of keys to values, got {type(data).__name__}")
    fields_ = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(str(k) for k in data if k not in fields_)
    if unknown:
        raise BadInput(f"unknown {what} key(s) {_unknown(unknown, fields_, prefix)}; valid{where}: {', '.join(fields_)}")
    hints = _hints(cls)
    for key, value in data.items():
        if value is None and skip_none:
            continue
        hint = hints[key]
        sub = _section_class(hint)
        if sub is not None:
            if isinstance(value, sub):
                values[key] = _start(sub, value)
            else:
                _lay(sub, values[key], value if value is not None else {}, what, f"{prefix}{key}.", skip_none=skip_none)
        elif _is_dict(hint):
            value = {} if value is None else value
            if not isinstance(value, Mapping):
                raise BadInput(f"config key {prefix}{key} must be a mapping, got {value!r}")
            keys_of = fields_[key].metadata.get("keys")
            if keys_of is not None:
                valid = [f.name for f in dataclasses.fields(keys_of)]
                bad = sorted(str(k) for k in value if k not in valid)
                if bad:
                    raise BadInput(f"unknown {what} key(s) {_unknown(bad, valid, f'{prefix}{key}.')}; "
                                   f"valid in {prefix}{key}: {keys_of.__name__} keys (the `atool train` options, with _ for -)")
            current = values[key] if isinstance(values[key], dict) else {}
            values[key] = {**current, **value}
        else:
            values[key] = value


def _unknown(keys: list[str], valid: Any, prefix: str) -> str:
    """'a.lr_rate (did you mean lr?), a.x': unknown keys with their closest valid ones."""
    import difflib

    parts = []
    for key in keys:
        close = difflib.get_close_matches(key, list(valid), n=1)
        parts.append(prefix + key + (f" (did you mean {close[0]}?)" if close else ""))
    return ", ".join(parts)


def _finish(cls: type[C], values: dict[str, Any], label: str, prefix: str) -> C:
    hints = _hints(cls)
    missing = [prefix + k for k, v in values.items() if v is _MISSING]
    if missing:
        raise BadInput(f"missing {label} key(s) {', '.join(missing)}")
    kwargs = {}
    for key, value in values.items():
        sub = _section_class(hints[key])
        kwargs[key] = _finish(sub, value, label, f"{prefix}{key}.") if sub is not None else _coerce(value, hints[key], prefix + key)
    cfg = cls(**kwargs)
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "null"
    if typing.get_origin(hint) is tuple:
        return "WxH"
    return getattr(hint, "__name__", str(hint))


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` as type ``hint`` (floats from ints, sizes from 'WxH' or [W, H], paths as text); else BadInput."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except BadInput:
                pass
    elif origin is tuple:
        if value is not None:
            return _parse_size(value, key)
    elif hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
    elif hint is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, (str, os.PathLike)):
            return os.fspath(value)
    elif _is_dict(hint):
        if isinstance(value, Mapping):
            return dict(value)
    elif hint is list or origin is list:
        if isinstance(value, (list, tuple)):
            return list(value)
    else:
        return value
    raise BadInput(f"config key {key} must be {_type_name(hint)}, got {value!r}")


def _parse_size(value: Any, key: str = "crop") -> tuple[int, int]:
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return int(value[0]), int(value[1])
    if isinstance(value, str):
        parts = value.lower().split("x")
        if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
            return int(parts[0]), int(parts[1])
    raise BadInput(f"{key} must be WxH or [width, height], got {value!r}")


def config_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain YAML/JSON data (sections as mappings, sizes as [W, H])."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(cfg))


def write_config(cfg: Any, path: str | os.PathLike) -> Path:
    from atool.core.io import atomic_write_text

    return atomic_write_text(path, yaml.safe_dump(config_dict(cfg), sort_keys=False))


# ------------------------------------------------------------------ CLI


class SizeType(click.ParamType):
    """``WxH`` -> (width, height)."""

    name = "WxH"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "WxH"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(value))
        if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
            self.fail(f"{value!r} is not a size like 256x128 (width x height, positive integers)", param, ctx)
        return int(m.group(1)), int(m.group(2))


SIZE = SizeType()


def _plain_hint(hint: Any) -> Any:
    """``X | None`` -> X."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _option_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _default_text(f: dataclasses.Field) -> str | None:
    if f.default is not _MISSING:
        value = f.default
    elif f.default_factory is not _MISSING:
        value = f.default_factory()
    else:
        return None
    if value is None or value == {} or value == []:
        return None
    if isinstance(value, bool):
        return _option_name(f.name) if value else "--no-" + f.name.replace("_", "-")
    if isinstance(value, tuple) and len(value) == 2:
        return f"{value[0]}x{value[1]}"
    return str(value)


def dataclass_options(
    cls: type, *, exclude: tuple[str, ...] | list[str] = (), types: Mapping[str, click.ParamType] | None = None,
) -> Callable[[F], F]:
    """A decorator adding one click option per field of ``cls`` (in field order), each defaulting to None.

    ``--field-name TYPE``; bools ``--x/--no-x``; ``tuple[int, int]`` as WxH;
    ``X | None`` as X; string fields with ``choices`` as a click Choice. Help
    comes from ``metadata["help"]`` plus the field's default. ``types`` gives
    a field a click type of the caller's (e.g. a registry's names). A field
    that has no command-line form (a section, a dict) must be in ``exclude``.
    """
    hints = _hints(cls)
    options = []
    for f in dataclasses.fields(cls):
        if f.name in exclude or not f.init:
            continue
        hint = _plain_hint(hints[f.name])
        meta = f.metadata
        kwargs: dict[str, Any] = {"default": None}
        if hint is bool:
            decls = [f"{_option_name(f.name)}/--no-{f.name.replace('_', '-')}"]
        else:
            decls = [_option_name(f.name)]
            if types and f.name in types:
                kwargs["type"] = types[f.name]
            elif hint is int or hint is float:
                kwargs["type"] = hint
            elif hint is str:
                kwargs["type"] = click.Choice(list(meta["choices"])) if "choices" in meta else str
            elif typing.get_origin(hint) is tuple:
                kwargs["type"] = SIZE
            else:
                raise TypeError(f"{cls.__name__}.{f.name} ({hint}) has no command-line form; list it in exclude")
        decls += [*meta.get("cli", ()), f.name]
        if "metavar" in meta:
            kwargs["metavar"] = meta["metavar"]
        default = _default_text(f) if meta.get("show_default", True) else None
        kwargs["help"] = meta.get("help", "") + (f"  [default: {default}]" if default is not None else "")
        options.append(click.option(*decls, **kwargs))

    names = [f.name for f in dataclasses.fields(cls) if f.name not in exclude and f.init]

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def with_project_layer(*args: Any, **kwargs: Any) -> Any:
            # Values click took from atool.yaml (its default_map) become their own layer of
            # ``build_config(cls, ...)``, so that a --config preset still overrides them.
            ctx = click.get_current_context(silent=True)
            project: dict[str, Any] = {}
            if ctx is not None:
                for name in names:
                    if ctx.get_parameter_source(name) is click.core.ParameterSource.DEFAULT_MAP:
                        project[name], kwargs[name] = kwargs[name], None
            token = PROJECT_LAYER.set((cls, project))
            try:
                return fn(*args, **kwargs)
            finally:
                PROJECT_LAYER.reset(token)

        for option in reversed(options):
            with_project_layer = option(with_project_layer)
        return with_project_layer  # type: ignore[return-value]

    return decorate


def option_args(cls: type, values: Mapping[str, Any]) -> list[str]:
    """The command-line words that set ``values`` (field -> value) as ``dataclass_options(cls)`` reads them.

    Values equal to the field's default are left out; so are None values.
    """
    defaults = _start(cls, None)
    words: list[str] = []
    for key, value in values.items():
        if value is None or key not in defaults:
            continue
        if isinstance(value, list) and len(value) == 2:
            value = tuple(value)
        if value == defaults[key]:
            continue
        if isinstance(value, bool):
            words.append(_option_name(key) if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, tuple) and len(value) == 2:
            words += [_option_name(key), f"{value[0]}x{value[1]}"]
        else:
            words += [_option_name(key), os.fspath(value) if isinstance(value, os.PathLike) else str(value)]
    return words


__all__ = [
    "TrainConfig", "build_config", "load_yaml", "config_dict", "write_config", "field", "setting",
    "dataclass_options", "option_args", "SIZE", "SizeType", "PROJECT_FILE", "project_defaults",
]
