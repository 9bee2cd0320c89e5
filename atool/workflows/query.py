"""A query run written to a file: ``atool.active.query.run_query``, then a format from ``atool.annotate.formats``.

``active`` chooses the points and knows no file formats; this is where the two
meet (``atool query``, ``atool loop``, ``atool demo`` and the tools call it).
Checks that depend on the format run before the query, so a wrong
combination fails in a second, not after the whole folder was scored.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shlex
import time
from typing import Any

from atool.active.query import CHECKPOINT_EVERY, QueryConfig, query_list_only, run_query, state_path
from atool.active.resume import Checkpoint
from atool.core.config import option_args
from atool.core.errors import BadInput

log = logging.getLogger("atool.query")


def check_format(cfg: QueryConfig, fmt: str, format_options: dict[str, Any] | None = None) -> None:
    """BadInput unless format ``fmt`` takes ``format_options`` and carries what ``cfg.strategy`` proposes."""
    from atool.active.strategies import STRATEGIES
    from atool.annotate.formats import FORMATS

    writer = FORMATS.get(fmt)
    given = sorted(k for k, v in (format_options or {}).items() if v is not None)
    unknown = [k for k in given if k not in writer.options]
    if unknown:
        valid = ", ".join(sorted(writer.options)) or "(none)"
        raise BadInput(f"format {fmt!r} takes no option {', '.join(unknown)}; valid: {valid}")
    if STRATEGIES.get(cfg.strategy).kind == "region" and not writer.regions:
        able = [name for name, cls in FORMATS.items() if cls.regions]
        carriers = f"the {able[0]} format carries" if len(able) == 1 else f"the {', '.join(able)} formats carry"
        raise BadInput(f"strategy {cfg.strategy!r} writes region queries, which only {carriers} (got --format {fmt})")


def query_to_file(
    model: Any, images: str | os.PathLike, cfg: QueryConfig, out: str | os.PathLike, fmt: str = "json",
    format_options: dict[str, Any] | None = None, *, progress: bool = False, resume: bool = False,
    checkpoint_every: int = CHECKPOINT_EVERY,
) -> dict[str, Any]:
    """Run the query and write its list to ``out`` in format ``fmt`` (options: ``format_options``).

    ``model``: a model file or a loaded ``Backend``; ``images``: the folder
    scanned. The run's state is saved to ``<out>.partial-state`` every
    ``checkpoint_every`` images (0: never) and removed once the list is
    written; ``resume`` continues from it. Under torchrun only rank 0 writes.
    Returns ``run_query``'s result, its ``timings`` including the writing,
    plus ``written`` (every path written, as text; empty on ranks other than 0).
    """
    from atool.annotate.formats import write_query_list

    check_format(cfg, fmt, format_options)
    result = run_query(model, images, cfg, progress=progress, checkpoint_to=out if checkpoint_every > 0 or resume else None,
                       resume=resume, checkpoint_every=checkpoint_every)
    t0 = time.perf_counter()
    shard = result["shard"]
    written = write_query_list(query_list_only(result), out, fmt, format_options) if shard["rank"] == 0 else []
    # Only once the list is in place: a crash before this line resumes from the state.
    Checkpoint(state_path(out, shard["rank"], shard["world"]), {}, 0).remove()
    seconds = time.perf_counter() - t0
    timings = result["timings"]
    timings["write"] = round(timings["write"] + seconds, 4)
    timings["total"] = round(timings["total"] + seconds, 4)
    result["written"] = [str(p) for p in written]
    if written:
        log.info("query: %d queries -> %s", result["budget"]["used"], ", ".join(result["written"]))
    return result


def query_command(model: Any, images: str | os.PathLike, cfg: QueryConfig, out: str | os.PathLike, fmt: str = "json") -> str:
    """The ``atool query`` command line that does what ``query_to_file`` with these arguments does."""
    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(QueryConfig) if f.name != "params"}
    words = ["atool", "query", "--model", os.fspath(getattr(model, "path", model)), "--images", os.fspath(images),
             *option_args(QueryConfig, values)]
    for key, value in cfg.params.items():
        words += ["--param", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
    words += ["--out", os.fspath(out)] + (["--format", fmt] if fmt != "json" else [])
    return " ".join(shlex.quote(w) for w in words)


__all__ = ["QueryConfig", "check_format", "query_to_file", "query_command"]
