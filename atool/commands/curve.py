"""``atool curve``: mIoU against clicks per image, for several strategies, over seeds."""

from __future__ import annotations

import click

from atool.commands._oneline import OneLineCommand


def _int_list(text: str | None, what: str) -> list[int] | None:
    from atool.core.errors import BadInput

    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise BadInput(f"--{what} must be comma-separated whole numbers, e.g. 2,5,10; got {text!r}") from None


@click.command("curve", cls=OneLineCommand)
@click.option("--init", required=True, type=click.Path(dir_okay=False), help="The adapted model every arm starts from (.pt).")
@click.option("--source", required=True, type=click.Path(), help="Labeled source dataset (kept in the retraining, as in LabOR eq. 6).")
@click.option("--pool", required=True, type=click.Path(), help="Target pool folder (images/) whose labels answer the queries.")
@click.option("--oracle-labels", type=click.Path(), help="The pool's ground-truth label PNGs  [default: POOL/oracle_labels or POOL/labels]")
@click.option("--val", required=True, type=click.Path(), help="Labeled validation set the arms are scored on.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Sweep folder; finished arms in it are reused.")
@click.option("--strategies", help="Comma-separated strategies  [default: random,coverage]")
@click.option("--budgets", help="Comma-separated clicks per image  [default: 2,5,10,20,40]")
@click.option("--seeds", help="Comma-separated seeds  [default: 0,1,2]")
@click.option("--rounds", type=int, help="Spend each budget over this many rounds  [default: 1]")
@click.option("--iters", type=int, help="Retraining iterations per round  [default: 200]")
@click.option("--source-only", type=click.Path(dir_okay=False), help="Source-only model: the lower end of the gap  [default: --init]")
@click.option("--full-labels/--no-full-labels", default=None, help="Also retrain on every pool label (the ceiling)  [default: on]")
@click.option("--config", "config_path", type=click.Path(), help="YAML with any CurveConfig key (strategies, budgets, seeds, rounds, params, retrain, ingest, ...).")
def command(init, source, pool, oracle_labels, val, out, strategies, budgets, seeds, rounds, iters, source_only, full_labels, config_path) -> None:
    """Sweep budgets x strategies x seeds with one retraining recipe; write curve.json, curve.md, curve.png."""
    from atool.core.config import build_config, load_yaml
    from atool.workflows.curve import CurveConfig, run_curve
    from atool.workflows.curve_report import markdown

    preset = load_yaml(config_path) if config_path else {}
    overrides = {
        "strategies": [s.strip() for s in strategies.split(",") if s.strip()] if strategies else None,
        "budgets": _int_list(budgets, "budgets"),
        "seeds": _int_list(seeds, "seeds"),
        "rounds": rounds,
        "full_labels": full_labels,
    }
    cfg = build_config(CurveConfig, preset, overrides)
    if iters is not None:
        cfg.retrain = {**cfg.retrain, "iters": iters}
    summary = run_curve(init=init, source=source, pool=pool, val=val, out=out, cfg=cfg, oracle_labels=oracle_labels, source_only=source_only)
    click.echo(markdown(summary), nl=False)
    click.echo(f"wrote {out}/curve.json, curve.md, curve.png ({summary['seconds']:.0f}s)")
