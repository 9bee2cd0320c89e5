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


@command.command("stream")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder to write frames/ and stream.json into.")
@click.option("--segments", required=True, help="Conditions and frame counts in order, e.g. in:300,night:200 (in, night, fog, rain, camera).")
@click.option("--images", default=None, type=click.Path(file_okay=False), help="In-domain base images [default: render fresh target scenes].")
@click.option("--size", default="256x128", show_default=True, type=SIZE, help="Frame size WxH.")
@click.option("--severity", default=1.0, show_default=True, type=float, help="Shift strength (1 = default).")
@click.option("--seed", default=0, show_default=True, type=int)
def stream(out: str, segments: str, images: str | None, size: tuple[int, int], severity: float, seed: int) -> None:
    """Write a video-like stream of in-domain and shifted segments with known change points."""
    from atool.data.synth.stream import folder_bases, parse_segments, rendered_bases, write_stream

    segs = parse_segments(segments)
    bases = folder_bases(images, size) if images else rendered_bases(seed, size)
    info = write_stream(out, bases, segs, seed=seed, severity=severity)
    click.echo(f"wrote {info['frames']} frames to {out}/frames; change points {info['change_points']}")
