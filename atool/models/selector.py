"""LabOR's selector: an adapted model plus two classifier heads (DESIGN.md §4).

``SelectorModel`` wraps any registered model whose forward ends in
``{"out": self.classifier(features)}`` (every bundled model does). The heads
are two copies of that ``classifier`` module fed by the same features, so
they fit any architecture without knowing its layers: LR-ASPP's two-input
head, DeepLab's ASPP, DeepLabV3+'s final 1x1 conv.

Two variants:

* separate backbone (LabOR, the default): ``main`` is the adapted model,
  frozen, and gives ``out``; ``trunk`` is a copy of its backbone that the
  selector trains (MCD's feature generator) and feeds the heads. A query
  then runs two backbones.
* ``shared_backbone=True``: one frozen backbone (``trunk``) feeds both the
  adapted model's own classifier (``classifier``, frozen, gives ``out``) and
  the heads, so deployment runs one backbone pass and ``out`` is the adapted
  model's prediction. In eval mode LR-ASPP's classifier and heads run as one
  wider head (``atool.models.lraspp_heads``), which changes ``out`` only by
  float rounding.

The trunk is the model with its ``classifier`` (and ``aux_classifier``, if
any) replaced by ``nn.Identity``: its ``out`` is then the classifier's input.

Symmetry: two heads copied from one classifier get identical gradients under
a symmetric loss, and |p1 - p2| has a zero subgradient at 0, so they would
never separate. Head 2's logit convolutions (every Conv2d whose output has
the class count, e.g. all four ASPP-v2 branches) get Gaussian noise of
``head_noise`` times their weight's standard deviation at construction.

Output (all logits at the base model's stride, see ``atool.models``):
``{"out": N x C x h x w, "heads": [head1, head2], "aux": ...(if the base has it)}``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torchvision.models.segmentation.lraspp import LRASPPHead

from atool.core.errors import BadInput
from atool.models import MODELS
from atool.models.lraspp_heads import can_stack, classify_first_logits, stacked_logits


def logit_convs(head: nn.Module) -> list[nn.Conv2d]:
    """The convolutions of a classifier module that produce class logits.

    That is every Conv2d whose out_channels equals that of the last Conv2d
    (the class count); an empty list when the module has no Conv2d.
    """
    convs = [m for m in head.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        return []
    n = convs[-1].out_channels
    return [c for c in convs if c.out_channels == n]


@torch.no_grad()
def perturb_head(head: nn.Module, scale: float, seed: int = 0) -> int:
    """Add N(0, (scale * std(w))^2) noise to the logit convolutions of ``head`` (in place).

    Deterministic for a given ``seed``. Returns the number of convolutions perturbed.
    """
    gen = torch.Generator().manual_seed(int(seed))
    convs = logit_convs(head)
    for conv in convs:
        w = conv.weight
        std = float(w.std()) if w.numel() > 1 else 0.0
        if not std > 0:
            std = 1e-2
        noise = torch.randn(w.shape, generator=gen, dtype=torch.float32) * (scale * std)
        w.add_(noise.to(device=w.device, dtype=w.dtype))
    return len(convs)


class SelectorModel(nn.Module):
    """An adapted model with two selector heads; see the module docstring.

    ``base`` is used as is (not copied) for the frozen main model; pass a copy
    if the caller still needs it unchanged.
    """

    has_heads = True

    def __init__(self, base: nn.Module, shared_backbone: bool = False, head_noise: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        if isinstance(base, SelectorModel):
            raise BadInput("this model already has selector heads; give the adapted model (the one the selector should copy)")
        classifier = getattr(base, "classifier", None)
        if not isinstance(classifier, nn.Module):
            raise BadInput(
                f"{type(base).__name__} has no `classifier` module; selector heads attach to the input of model.classifier, "
                "so the model's forward must end in {'out': self.classifier(features)}"
            )
        if head_noise < 0:
            raise BadInput(f"head_noise must be 0 or more, got {head_noise}")
        self.shared_backbone = bool(shared_backbone)
        trunk = copy.deepcopy(base)
        trunk.classifier = nn.Identity()
        if isinstance(getattr(trunk, "aux_classifier", None), nn.Module):
            trunk.aux_classifier = nn.Identity()  # the selector never uses the trunk's auxiliary level
        head1, head2 = copy.deepcopy(classifier), copy.deepcopy(classifier)
        if head_noise > 0:
            perturb_head(head2, head_noise, seed)
        for p in list(head1.parameters()) + list(head2.parameters()):
            p.requires_grad_(True)
        self.heads = nn.ModuleList([head1, head2])
        if self.shared_backbone:
            self.trunk = trunk
            self.classifier = classifier  # the adapted model's own head: `out` is its prediction
            self.main = None
            self.aux_head = getattr(base, "aux_classifier", None) if isinstance(getattr(base, "aux_classifier", None), nn.Module) else None
            frozen = [self.trunk, self.classifier] + ([self.aux_head] if self.aux_head is not None else [])
        else:
            self.main = base
            self.trunk = trunk
            frozen = [self.main]
        for module in frozen:
            for p in module.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> "SelectorModel":
        """Heads (and the separate trunk) follow ``mode``; the frozen adapted parts stay in eval mode."""
        super().train(mode)
        for module in self._frozen_modules():
            module.eval()
        return self

    def _frozen_modules(self) -> list[nn.Module]:
        if self.shared_backbone:
            return [self.trunk, self.classifier] + ([self.aux_head] if self.aux_head is not None else [])
        return [self.main]

    def trainable_backbone(self) -> list[nn.Parameter]:
        """Parameters of the selector's own backbone (empty with a shared, frozen backbone)."""
        return [] if self.shared_backbone else [p for p in self.trunk.parameters()]

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.heads.parameters())

    def features(self, x: torch.Tensor) -> Any:
        """What the heads read: the classifier input of the trunk (a tensor, or a dict for LR-ASPP)."""
        return self.trunk(x)["out"]

    def head_logits(self, feats: Any) -> list[torch.Tensor]:
        """[head1, head2] logits, each N x C x h x w."""
        return [classify_first_logits(head, feats) if isinstance(head, LRASPPHead) else head(feats) for head in self.heads]

    def main_logits(self, x: torch.Tensor, feats: Any = None) -> torch.Tensor:
        """The adapted model's logits N x C x h x w (``feats`` reuses a shared trunk pass)."""
        if self.shared_backbone:
            return self.classifier(self.features(x) if feats is None else feats)
        return self.main(x)["out"]

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        if self.shared_backbone:
            t = self.trunk(x)
            feats = t["out"]
            together = [self.classifier, *self.heads]
            if not self.training and can_stack(together):
                # Deployment (export, the torch backend): the adapted classifier and both heads
                # run as one head three times as wide; see atool.models.lraspp_heads.
                out, *heads = stacked_logits(together, feats)
                result: dict[str, Any] = {"out": out, "heads": heads}
            else:
                result = {"out": self.classifier(feats), "heads": self.head_logits(feats)}
            if self.aux_head is not None and "aux" in t:
                result["aux"] = [self.aux_head(a) for a in t["aux"]]
            return result
        result = dict(self.main(x))
        feats = self.features(x)
        result["heads"] = stacked_logits(self.heads, feats) if not self.training and can_stack(self.heads) else self.head_logits(feats)
        return result


def selector_checkpoint(adapted: str | Path, out: str | Path, head_noise: float = 0.5, seed: int = 0) -> Path:
    """Write an untrained shared-backbone selector around the checkpoint ``adapted`` to ``out``.

    Its heads are copies of the adapted classifier (head 2 perturbed), as
    ``atool train selector --shared-backbone`` starts from; the benchmarks time
    it against the adapted model, since the cost does not depend on training.
    """
    from atool.core.checkpoint import save_checkpoint
    from atool.models.checkpoint import load_checkpoint, model_from_checkpoint

    ck = load_checkpoint(adapted)
    sel = SelectorModel(model_from_checkpoint(ck), shared_backbone=True, head_noise=head_noise, seed=seed)
    save_checkpoint(out, model=sel, model_name="selector", classes=ck["classes"], step=0,
                    model_args={"base": ck["model"]["name"], "base_args": ck["model"]["args"], "shared_backbone": True})
    return Path(out)


@MODELS.register("selector")
def selector(
    num_classes: int,
    base: str = "lraspp_mobilenet_v3_small",
    base_args: dict[str, Any] | None = None,
    shared_backbone: bool = False,
    backbone_weights: str | None = None,
) -> nn.Module:
    """Rebuild a selector around a freshly built ``base`` model (weights come from the checkpoint).

    ``model_args`` of a selector checkpoint are ``{"base", "base_args", "shared_backbone"}``.
    """
    if base == "selector" or base not in MODELS:
        raise BadInput(f"selector base model {base!r} is not a registered model; valid: {', '.join(n for n in MODELS.names() if n != 'selector')}")
    args = dict(base_args or {})
    if backbone_weights:
        args["backbone_weights"] = backbone_weights
    return SelectorModel(MODELS.get(base)(num_classes=num_classes, **args), shared_backbone=shared_backbone)
