"""``atool eval``: per-class IoU and mIoU on a labeled dataset."""

from __future__ import annotations

import json

import click


@click.command("eval")
@click.option("--checkpoint", type=click.Path(), help="A training checkpoint (.pt).")
@click.option("--model", "model_path", type=click.Path(), help="Any backend model file (.onnx, .pt).")
@click.option("--data", required=True, type=click.Path(), help="Labeled dataset folder.")
@click.option("--batch-size", default=4, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def command(checkpoint: str | None, model_path: str | None, data: str, batch_size: int, as_json: bool) -> None:
    """Evaluate a model: confusion matrix, per-class IoU, mIoU (255 ignored)."""
    from atool.data.folder import FolderDataset, require_same_classes
    from atool.deploy.backends import load_backend
    from atool.errors import BadInput
    from atool.train.evaluate import backend_predictor, evaluate

    if bool(checkpoint) == bool(model_path):
        raise BadInput("give exactly one of --checkpoint or --model")
    if batch_size < 1:
        raise BadInput(f"--batch-size must be >= 1, got {batch_size}")
    backend = load_backend(checkpoint or model_path)
    dataset = FolderDataset(data, require_labels=True)
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
