"""Export: checkpoint -> self-describing ONNX (``onnx.py``), ONNX -> TensorRT
engine (``tensorrt.py``), and the cross-backend parity check (``verify.py``).

This module holds the exported-model metadata contract (DESIGN.md section 3),
because both sides use it: the exporter writes it and every runtime backend
reads it. It imports nothing heavy, so a backend can use it without pulling
in the exporter (or the exporter's imports pulling the backends in a cycle).

Keys written into ONNX ``metadata_props`` (all values are strings):
  atool.version        atool version that exported the model
  atool.classes        JSON list of class names; index = label value
  atool.mean, atool.std  JSON lists of 3 floats on the 0..1 scale (already folded into the graph)
  atool.input          JSON {"name", "layout": "NHWC", "dtype": "uint8"}
  atool.outputs        JSON list of output names, in graph order
  atool.heads          "true" / "false": selector-head outputs present
  atool.source_sha256  sha256 of the checkpoint file that was exported
  atool.model          JSON {"name", "args"} of the source model (informative)
  atool.step           training step of the checkpoint (informative)
  atool.prototypes     "true" / "false": the ``gap`` output (domain gap to source
                       prototypes) is present; absent in older files = "false"
  atool.prototype_source  JSON {"dataset", "images", "dim", "absent"} of the source
                       the prototypes came from (only with prototypes)
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from atool.core.errors import BadInput

PREFIX = "atool."
INPUT_LAYOUT = "NHWC"
INPUT_DTYPE = "uint8"
REQUIRED_KEYS = (
    "atool.version",
    "atool.classes",
    "atool.mean",
    "atool.std",
    "atool.input",
    "atool.outputs",
    "atool.heads",
    "atool.source_sha256",
)

# The selector's outputs: the two maps the graph reduces its heads to, and, in models
# exported before that, the heads' softmaxes (still read everywhere).
HEAD_OUTPUTS = ("heads_disagree", "heads_discrepancy")
LEGACY_HEAD_OUTPUTS = ("head1", "head2")


def has_head_outputs(names: Iterable[str]) -> bool:
    """Whether output (or map) ``names`` hold one of the two selector-head pairs."""
    return set(HEAD_OUTPUTS) <= set(names) or set(LEGACY_HEAD_OUTPUTS) <= set(names)


def build_metadata(
    *,
    version: str,
    classes: list[str],
    mean: list[float],
    std: list[float],
    input_name: str,
    outputs: list[str],
    heads: bool,
    source_sha256: str,
    model: dict[str, Any] | None = None,
    step: int | None = None,
    prototypes: dict[str, Any] | None = None,
) -> dict[str, str]:
    """The string -> string map to store as ONNX ``metadata_props``.

    ``prototypes``: the source-prototype description when the graph has a ``gap`` output.
    """

    def dump(obj: Any) -> str:
        # Compact and key-sorted so the same checkpoint gives byte-identical metadata.
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True)

    props = {
        "atool.version": str(version),
        "atool.classes": dump(list(classes)),
        "atool.mean": dump([float(v) for v in mean]),
        "atool.std": dump([float(v) for v in std]),
        "atool.input": dump({"name": input_name, "layout": INPUT_LAYOUT, "dtype": INPUT_DTYPE}),
        "atool.outputs": dump(list(outputs)),
        "atool.heads": "true" if heads else "false",
        "atool.source_sha256": str(source_sha256),
    }
    if model is not None:
        props["atool.model"] = dump(model)
    if step is not None:
        props["atool.step"] = str(int(step))
    props["atool.prototypes"] = "true" if prototypes is not None else "false"
    if prototypes is not None:
        props["atool.prototype_source"] = dump(prototypes)
    return props


def parse_metadata(props: dict[str, str], source: str) -> dict[str, Any]:
    """Validate and decode atool metadata read from a model file.

    Returns ``{"version", "classes", "mean", "std", "input", "outputs", "heads",
    "source_sha256", "model" (or None), "step" (or None), "prototypes" (bool),
    "prototype_source" (dict or None)}``. Anything missing or
    malformed is a BadInput naming ``source`` and telling how to make a valid file.
    """
    hint = "re-export it with `atool export --checkpoint CKPT --out MODEL.onnx`"
    missing = [k for k in REQUIRED_KEYS if k not in props]
    if len(missing) == len(REQUIRED_KEYS):
        raise BadInput(f"{source} has no atool metadata, so it was not exported by `atool export`; {hint}")
    if missing:
        raise BadInput(f"{source} lacks atool metadata {', '.join(missing)} (not a complete `atool export` output); {hint}")

    def load(key: str) -> Any:
        try:
            return json.loads(props[key])
        except (TypeError, ValueError):
            raise BadInput(f"{source}: metadata {key} is not valid JSON ({props[key][:60]!r}); {hint}") from None

    def bad(key: str, want: str) -> BadInput:
        return BadInput(f"{source}: metadata {key} must be {want}, got {props[key][:80]!r}; {hint}")

    classes = load("atool.classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise bad("atool.classes", "a non-empty JSON list of class names")
    stats = {}
    for key in ("atool.mean", "atool.std"):
        value = load(key)
        if (
            not isinstance(value, list)
            or len(value) != 3
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        ):
            raise bad(key, "a JSON list of 3 numbers")
        stats[key] = [float(v) for v in value]
    inp = load("atool.input")
    if (
        not isinstance(inp, dict)
        or not isinstance(inp.get("name"), str)
        or inp.get("layout") != INPUT_LAYOUT
        or inp.get("dtype") != INPUT_DTYPE
    ):
        raise bad("atool.input", f'{{"name": ..., "layout": "{INPUT_LAYOUT}", "dtype": "{INPUT_DTYPE}"}}')
    outputs = load("atool.outputs")
    if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs) or outputs[:2] != ["prob", "entropy"]:
        raise bad("atool.outputs", 'a JSON list starting with "prob", "entropy"')
    if props["atool.heads"] not in ("true", "false"):
        raise bad("atool.heads", '"true" or "false"')
    heads = props["atool.heads"] == "true"
    if heads != has_head_outputs(outputs):
        raise BadInput(f"{source}: metadata atool.heads={props['atool.heads']} disagrees with atool.outputs {outputs}; {hint}")
    protos = props.get("atool.prototypes", "false")
    if protos not in ("true", "false"):
        raise bad("atool.prototypes", '"true" or "false"')
    if (protos == "true") != ("gap" in outputs):
        raise BadInput(f"{source}: metadata atool.prototypes={protos} disagrees with atool.outputs {outputs}; {hint}")
    proto_source = load("atool.prototype_source") if "atool.prototype_source" in props else None
    if proto_source is not None and not isinstance(proto_source, dict):
        raise bad("atool.prototype_source", "a JSON object")
    model = load("atool.model") if "atool.model" in props else None
    step: int | None = None
    if "atool.step" in props:
        try:
            step = int(props["atool.step"])
        except ValueError:
            raise bad("atool.step", "an integer") from None
    return {
        "version": props["atool.version"],
        "classes": classes,
        "mean": stats["atool.mean"],
        "std": stats["atool.std"],
        "input": inp,
        "outputs": outputs,
        "heads": heads,
        "source_sha256": props["atool.source_sha256"],
        "model": model,
        "step": step,
        "prototypes": protos == "true",
        "prototype_source": proto_source,
    }
