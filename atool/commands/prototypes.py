"""``atool prototypes``: add source class prototypes to a checkpoint (for the ``gap`` output)."""

from __future__ import annotations

import click

from atool.commands._oneline import OneLineCommand


@click.command("prototypes", cls=OneLineCommand)
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False), help="Checkpoint (.pt) whose features to use, e.g. the adapted model.")
@click.option(
    "--source", required=True,
    help="Labeled source dataset: a folder, optionally prefixed with its kind (folder:, gta5:, synthia:, cityscapes:).",
)
@click.option("--max-images", type=int, default=None, help="Use at most N source images, evenly spaced [default: all].")
@click.option("--min-purity", type=float, default=0.5, show_default=True,
              help="A feature cell counts for a class when that class covers at least this share of its pixels.")
@click.option("--batch-size", type=int, default=4, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cpu or cuda.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Checkpoint to write (may be --checkpoint itself).")
def command(checkpoint: str, source: str, max_images: int | None, min_purity: float, batch_size: int, device: str, out: str) -> None:
    """Compute per-class source prototypes and store them in the checkpoint.

    A prototype is the mean unit-length classifier-input feature over the source
    pixels of its class. With them, the model (and its ONNX export) also outputs
    ``gap``: 1 - cosine(pixel feature, prototype of its predicted class), which the
    ``domain_gap`` query strategy ranks by. Recompute after any retraining.
    """
    from atool.models.prototypes import compute_prototypes, save_with_prototypes

    protos = compute_prototypes(checkpoint, source, max_images=max_images, batch_size=batch_size, min_purity=min_purity, device=device)
    written = save_with_prototypes(checkpoint, out, protos)
    absent = protos.absent
    click.echo(
        f"wrote {written}: {len(protos.classes)} prototypes of dimension {protos.vectors.shape[1]} from "
        f"{protos.images} source images" + (f"; absent from the source: {', '.join(absent)}" if absent else "")
    )
