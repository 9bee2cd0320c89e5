"""``atool eval``: per-class IoU and mIoU on a labeled dataset."""

from __future__ import annotations

import json

import click


@click.command("eval")
@click.option("--checkpoint", type=click.Path(), help="A training checkpoint (.pt).")
@click.option("--model", "model_path", type=click.Path(), help="Any backend model file (.onnx, .pt).")
@click.option(
    "--data", required=True,
    help="Labeled dataset: a folder, optionally prefixed with its kind (folder:, gta5:, synthia:, cityscapes:); "
    "without a prefix the layout decides.",
)
@click.option(
    "--class-set", type=click.Choice(["19", "16", "13"]), default=None,
    help="Cityscapes class set for gta5/synthia/cityscapes data [default: the model's, else 19].",
)
@click.option("--split", default="val", show_default=True, help="Cityscapes split to evaluate.")
@click.option("--batch-size", default=4, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option(
    "--max-image-pixels", type=click.IntRange(min=1), default=None,
    help="Skip images whose header declares more pixels [default: $ATOOL_MAX_IMAGE_PIXELS, else 100000000].",
)
def command(
    checkpoint: str | None, model_path: str | None, data: str, class_set: str | None, split: str, batch_size: int,
    as_json: bool, max_image_pixels: int | None,
) -> None:
    """Evaluate a model: confusion matrix, per-class IoU, mIoU (255 ignored).

    On Cityscapes-class data it also reports mIoU over the 16 and 13 (mIoU*) classes.
    The official mIoU leaves out classes with no defined IoU; when the labels lack
    some of the model's classes, a warning (stderr, and ``warnings`` in --json) says
    so, and the mean over all the model's classes is reported beside it.
    """
    from atool.data.images import set_max_image_pixels

    set_max_image_pixels(max_image_pixels)
    try:
        _evaluate(checkpoint, model_path, data, class_set, split, batch_size, as_json)
    finally:
        set_max_image_pixels(None)


def _evaluate(
    checkpoint: str | None, model_path: str | None, data: str, class_set: str | None, split: str, batch_size: int,
    as_json: bool,
) -> None:
    from atool.data.adapters.cityscapes_classes import class_set_of
    from atool.data.adapters.registry import open_dataset
    from atool.data.adapters.folder import require_same_classes
    from atool.runtime.backends import load_backend
    from atool.core.errors import BadInput
    from atool.eval.evaluate import backend_predictor, evaluate

    if bool(checkpoint) == bool(model_path):
        raise BadInput("give exactly one of --checkpoint or --model")
    if batch_size < 1:
        raise BadInput(f"--batch-size must be >= 1, got {batch_size}")
    backend = load_backend(checkpoint or model_path)
    chosen = int(class_set) if class_set else (class_set_of(backend.classes) or 19)
    dataset = open_dataset(data, require_labels=True, class_set=chosen, split=split)
    require_same_classes(backend.classes, dataset.classes, f"model {checkpoint or model_path} vs data {data}")
    metrics = evaluate(backend_predictor(backend), dataset, batch_size)
    if metrics.skipped:
        click.echo(
            f"atool: warning: skipped {len(metrics.skipped)} of {len(dataset)} images; first: {metrics.skipped[0][1]}",
            err=True,
        )
    warnings = metrics.warnings(str(data))
    for line in warnings:
        click.echo(f"atool: warning: {line}", err=True)
    if as_json:
        doc = {"model": str(checkpoint or model_path), "data": data, "images": len(dataset) - len(metrics.skipped), **metrics.as_dict()}
        doc["warnings"] = warnings
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(metrics.table())
