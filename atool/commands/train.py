"""``atool train METHOD``.

Methods: source, advent (multi-level when the model has aux outputs), minent,
self_training, intrada, adapt, finetune (and any other registered one).

* ``atool train intrada --init ADVENT.pt --target CITYSCAPES --out intra.pt``
  ranks the target images by entropy with the --init model (IntraDA),
  writes the easy (pseudo-labelled) and hard splits to ``intra.intrada/``
  (``--intrada-split``) and trains ADVENT from easy to hard.
* Distributed: ``torchrun --nproc_per_node N -m atool.cli train ...``
  (gloo on CPU, NCCL on CUDA; --batch-size is per process; rank 0 writes).
* Presets: ``--config configs/advent_gta5_cityscapes.yaml``; options given
  here override the preset.
"""

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
@click.option("--backbone-weights", "--weights", "weights", type=click.Path(), help="ImageNet backbone weights (torchvision-format state dict file).")
@click.option("--iters", type=int)
@click.option("--batch-size", type=int)
@click.option("--crop", type=SIZE, help="Random crop WxH.")
@click.option("--lr", type=float)
@click.option("--head-lr-mult", type=float, help="LR multiplier of the classifier (everything outside the backbone); ADVENT uses 10.")
@click.option("--optimizer", type=click.Choice(["sgd", "adamw"]))
@click.option("--lambda-adv", type=float, help="Adversarial entropy weight (advent, adapt).")
@click.option("--lambda-adv-aux", type=float, help="Adversarial weight of the auxiliary level (multi-level advent).")
@click.option("--lambda-ent", type=float, help="Target entropy weight (minent).")
@click.option("--pseudo-weight", type=float, help="Loss weight of pseudo labels (adapt: pseudo points; self_training: pseudo CE).")
@click.option("--pseudo-threshold", type=float, help="Confidence a pseudo label needs (self_training).")
@click.option("--class-balanced/--no-class-balanced", default=None, help="CBST per-class thresholds (self_training).")
@click.option("--teacher", type=click.Choice(["model", "init"]), help="Who makes the pseudo labels (self_training).")
@click.option("--easy-ratio", type=float, help="Fraction of target images in the easy split (intrada, 0.67).")
@click.option("--intrada-split", type=click.Path(), help="Folder for the easy/hard split (intrada).")
@click.option("--shared-backbone/--separate-backbone", default=None, help="Selector heads on the frozen adapted features (one backbone pass at query time) or on a trained copy (LabOR).")
@click.option("--discrepancy-weight", type=float, help="Weight of the heads' L1 discrepancy (selector; default 1.0 separate, 0.1 shared).")
@click.option("--selector-warmup", type=int, help="Steps of pseudo-label training before the discrepancy step starts (selector).")
@click.option("--head-noise", type=float, help="Perturbation of head 2's initial weights that breaks the symmetry (selector).")
@click.option("--amp/--no-amp", default=None, help="Mixed precision on CUDA (ignored on CPU).")
@click.option("--freeze-bn/--no-freeze-bn", default=None, help="Freeze BatchNorm statistics and affine parameters.")
@click.option("--stop-after", type=int, help="Stop after this many steps of this run (resume later with --resume).")
@click.option("--checkpoint-every", type=int, help="Also checkpoint every N steps.")
@click.option("--seed", type=int)
@click.option("--workers", type=int, help="Data-loader processes.")
@click.option("--config", "config_path", type=click.Path(), help="YAML preset; options given here override it.")
def command(method: str, config_path: str | None, **options) -> None:
    """Train a model with METHOD (source, advent, minent, self_training, intrada, adapt, ...).

    Under torchrun each process trains one shard; only rank 0 writes.
    """
    from atool.core.config import TrainConfig, build_config, load_yaml
    from atool.train.trainer import train

    preset = load_yaml(config_path) if config_path else {}
    preset.pop("method", None)
    cfg = build_config(TrainConfig, preset, {"method": method, **options})
    summary = train(cfg)
    if summary.get("rank", 0) != 0:
        return
    line = f"trained {summary['method']} {summary['model']} for {summary['steps_run']} steps in {summary['seconds']:.1f}s -> {summary['out']}"
    if "stopped_at" in summary:
        line += f" (stopped at step {summary['stopped_at']} of {cfg.iters}; continue with --resume)"
    if "val_miou" in summary:
        line += f" (val mIoU {summary['val_miou']:.2f})"
    click.echo(line)
