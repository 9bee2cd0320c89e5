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
def command(
    checkpoint: str | None, model_path: str | None, data: str, class_set: str | None, split: str, batch_size: int,
    as_json: bool,
) -> None:
    """Evaluate a model: confusion matrix, per-class IoU, mIoU (255 ignored).

    On Cityscapes-class data it also reports mIoU over the 16 and 13 (mIoU*) classes.
    """
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
    if as_json:
        click.echo(json.dumps({"model": str(checkpoint or model_path), "data": data, "images": len(dataset) - len(metrics.skipped), **metrics.as_dict()}, indent=2))
    else:
        click.echo(metrics.table())
