"""``atool data``: dataset utilities (the built-in synthetic domain pair)."""

from __future__ import annotations

import click

from atool.commands._options import SIZE


@click.group("data")
def command() -> None:
    """Dataset utilities."""


@command.command("synth")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder to write source/, target_train/, target_val/ into.")
@click.option("--n-source", default=200, show_default=True, type=int, help="Labeled 'game' images.")
@click.option("--n-target", default=200, show_default=True, type=int, help="Unlabeled 'real' pool images (labels kept for the oracle).")
@click.option("--n-val", default=None, type=int, help="Labeled 'real' validation images [default: n-target/2].")
@click.option("--size", default="256x128", show_default=True, type=SIZE, help="Image size WxH (multiples of 16).")
@click.option("--seed", default=0, show_default=True, type=int)
def synth(out: str, n_source: int, n_target: int, n_val: int | None, size: tuple[int, int], seed: int) -> None:
    """Write the deterministic synthetic street-scene domain pair."""
    import sys

    from atool.data.synth import write_synth_pair

    info = write_synth_pair(out, n_source=n_source, n_target=n_target, n_val=n_val, size=size, seed=seed, progress=sys.stderr.isatty())
    counts = info.get("counts", {})
    click.echo(f"wrote synthetic pair to {out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
