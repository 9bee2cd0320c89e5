"""``atool train METHOD``."""

from __future__ import annotations

import click

from atool.commands._options import SIZE


def _method_names() -> list[str]:
    from atool.train.methods import METHODS

    return METHODS.names()


@click.command("train")
@click.argument("method", type=click.Choice(_method_names()))
@click.option("--source", type=click.Path(), help="Labeled source dataset folder (images/, labels/, classes.txt).")
@click.option("--source-labels", type=click.Path(), help="Label folder for --source if not SOURCE/labels.")
@click.option("--target", type=click.Path(), help="Target dataset folder (images/).")
@click.option("--target-labels", type=click.Path(), help="Sparse target labels: an `atool ingest` output folder.")
@click.option("--val", type=click.Path(), help="Labeled dataset to report mIoU on at the end.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Checkpoint to write (.pt).")
@click.option("--init", type=click.Path(), help="Start from this checkpoint's weights.")
@click.option("--resume", is_flag=True, default=None, help="Continue OUT from its saved step.")
@click.option("--model", help="Model name from the registry.")
@click.option("--weights", type=click.Path(), help="Backbone weights (torchvision-format state dict file).")
@click.option("--iters", type=int)
@click.option("--batch-size", type=int)
@click.option("--crop", type=SIZE, help="Random crop WxH.")
@click.option("--lr", type=float)
@click.option("--optimizer", type=click.Choice(["sgd", "adamw"]))
@click.option("--lambda-adv", type=float, help="Adversarial entropy weight (advent, adapt).")
@click.option("--pseudo-weight", type=float, help="Loss weight of pseudo-labelled target points (adapt).")
@click.option("--seed", type=int)
@click.option("--workers", type=int, help="Data-loader processes.")
@click.option("--config", "config_path", type=click.Path(), help="YAML preset; options given here override it.")
def command(method: str, config_path: str | None, **options) -> None:
    """Train a model with METHOD (source, advent, adapt)."""
    from atool.config import TrainConfig, build_config, load_yaml
    from atool.train.loop import train

    preset = load_yaml(config_path) if config_path else {}
    preset.pop("method", None)
    cfg = build_config(TrainConfig, preset, {"method": method, **options})
    summary = train(cfg)
    line = f"trained {summary['method']} {summary['model']} for {summary['steps_run']} steps in {summary['seconds']:.1f}s -> {summary['out']}"
    if "val_miou" in summary:
        line += f" (val mIoU {summary['val_miou']:.2f})"
    click.echo(line)
