"""The ``atool`` command line.

Each command lives in ``atool/commands/<name>.py`` (found by listing that
package; ``_``-prefixed modules are helpers), parses its options, builds
a config and makes one call into the library. This module owns what is common:
logging set-up and turning errors into one line and an exit code (2 for bad
input, 1 for failures), never a traceback.
"""

from __future__ import annotations

import logging
import os
import sys

import click

from atool import __version__
from atool.core.errors import AtoolError

class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except AtoolError as exc:
            click.echo(f"atool: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("atool: interrupted", err=True)
            ctx.exit(130)
        except MemoryError:
            click.echo("atool: error: out of memory; try a smaller --batch-size or image size", err=True)
            ctx.exit(1)
        except OSError as exc:
            # Disk full, permission denied, a vanished file: the user's environment, not a bug.
            click.echo(f"atool: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
            ctx.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="atool")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.option(
    "--max-image-pixels", type=click.IntRange(min=1), default=None, metavar="N",
    help="Refuse (skip and report) images whose header declares more than N pixels, before decoding "
    "[default: $ATOOL_MAX_IMAGE_PIXELS, else 100000000].",
)
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool, max_image_pixels: int | None) -> None:
    """Active domain adaptation for semantic segmentation.

    An atool.yaml in the working directory gives any command's defaults, one
    mapping per command (query: {model: m.onnx, budget: 50}); the command
    line and --config override it.
    """
    from atool.core.project import project_defaults

    # click hands each subcommand its own section as the options' defaults.
    ctx.default_map = project_defaults(main.commands) or None
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)
    _ignore_file_size_signal()
    if max_image_pixels is not None:
        # Through the environment, so decode threads and worker processes see the same limit.
        os.environ["ATOOL_MAX_IMAGE_PIXELS"] = str(max_image_pixels)
    # Torch would otherwise take every core for intra-op threads and fight the decode workers.
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    from atool.core.allocator import keep_freed_memory

    keep_freed_memory()  # torch's large CPU tensors otherwise page-fault afresh on every batch


def _ignore_file_size_signal() -> None:
    """Past the file-size limit (ulimit -f) the kernel kills a writer with SIGXFSZ; ignored, the
    write fails with EFBIG instead, which atool.core.io reports as one line and cleans up after."""
    import signal

    if hasattr(signal, "SIGXFSZ"):
        try:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        except ValueError:  # not the main thread (atool embedded): leave the host's handler
            pass


def _load_commands() -> None:
    """Add ``command`` of every public module of ``atool.commands``: a new command is one new file.

    The modules are imported for every invocation, so they keep heavy imports
    (torch, onnxruntime) inside their command bodies.
    """
    import importlib
    import pkgutil

    import atool.commands

    for info in sorted(pkgutil.iter_modules(atool.commands.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            main.add_command(importlib.import_module(f"atool.commands.{info.name}").command)


_load_commands()


if __name__ == "__main__":  # pragma: no cover
    main()
