"""``TrainConfig``: every setting of one ``atool train`` run (also importable from ``atool.core.config``).

Each field is a ``--field-name`` option of ``atool train`` and a key of its
YAML presets; the help text lives in the field's metadata.
"""

from __future__ import annotations

from dataclasses import dataclass

from atool.core.config import _parse_size, setting
from atool.core.errors import BadInput

OPTIMIZERS = ("sgd", "adamw")
AMP_DTYPES = ("bf16", "fp16")
TEACHERS = ("model", "init")


@dataclass
class TrainConfig:
    """Everything one ``atool train`` run needs. Paths are strings so the config serialises as YAML."""

    method: str = setting("source", "Training method (atool train METHOD).")
    out: str = setting("model.pt", "Checkpoint to write (.pt); required, here or in --config.", metavar="PATH", show_default=False)
    source: str | None = setting(None, "Labeled source dataset folder (images/, labels/, classes.txt).", metavar="PATH")
    source_labels: str | None = setting(None, "Label folder for --source  [default: SOURCE/labels]", metavar="PATH")
    target: str | None = setting(None, "Target dataset folder (images/).", metavar="PATH")
    target_labels: str | None = setting(None, "Sparse target labels: an `atool ingest` output folder or a folder of label PNGs.", metavar="PATH")
    val: str | None = setting(None, "Labeled dataset evaluated at each checkpoint and at the end.", metavar="PATH")
    init: str | None = setting(None, "Start from this checkpoint's weights (fresh optimiser, step 0).", metavar="PATH")
    resume: bool = setting(False, "Continue OUT if it exists: weights, optimisers and step.")
    model: str = setting("lraspp_mobilenet_v3_small", "Model name from the registry.")
    weights: str | None = setting(None, "ImageNet backbone weights (torchvision-format state dict file).", metavar="PATH", cli=("--backbone-weights",))
    iters: int = setting(2000, "Training steps.")
    batch_size: int = setting(8, "Images per batch (per process under torchrun).")
    crop: tuple[int, int] = setting((256, 128), "Random crop WxH.")
    flip: bool = setting(True, "Random horizontal flips.")
    optimizer: str = setting("sgd", "Optimiser of the model.", choices=OPTIMIZERS)
    lr: float = setting(2.5e-4, "Base learning rate.")
    head_lr_mult: float = setting(1.0, "LR multiplier of everything outside the model's `backbone` (ADVENT/DeepLab-v2: 10 for the ASPP classifiers).")
    momentum: float = setting(0.9, "SGD momentum.")
    weight_decay: float = setting(5e-4, "Weight decay.")
    poly_power: float = setting(0.9, "Power of the poly LR schedule.")
    warmup_iters: int = setting(0, "Linear LR warm-up steps.")
    # ADVENT (DESIGN.md §4)
    lambda_adv: float = setting(1e-3, "Adversarial entropy weight (advent, adapt).")
    lr_d: float = setting(1e-4, "Discriminator learning rate (Adam).")
    disc_channels: int = setting(64, "Width of the discriminator's first conv (64-128-256-512 in ADVENT).")
    # adapt (active-points G2): weights of the target sparse labels
    oracle_weight: float = setting(1.0, "Loss weight of the annotated target points (adapt).")
    pseudo_weight: float = setting(1.0, "Loss weight of pseudo labels (adapt: pseudo points; self_training: pseudo CE).")
    crop_on_labels: bool = setting(False, "Target crops always hold a labelled pixel (sparse target labels).")
    grown_weight: float = setting(
        0.0, "Loss mass of each click's grown region (ingest --expand), in clicks, spread over its pixels; "
        "0: every grown pixel weighs like a click.")
    click_balance: float = setting(
        0.0, "Class-balanced CE on the target labels: a labelled pixel of class c weighs (N / (K n_c)) ** this, "
        "n_c its class's labelled pixels in the target set; 0: off, 1: every class the same total.")
    seed: int = setting(0, "Seed of initialisation, sampling and augmentation.")
    workers: int = setting(0, "Data-loader processes; 0 decodes in the training process.")
    cache: bool = setting(True, "Keep decoded images in memory (small datasets).")
    log_every: int = setting(50, "Log losses every N steps.")
    checkpoint_every: int = setting(0, "Also checkpoint every N steps; 0: only at the end.")
    eval_every: int = setting(0, "Evaluate --val every N steps; 0: only at the end.")
    progress: bool | None = setting(None, "Progress bar  [default: only when stderr is a terminal]")
    # Training engine (issue 3 item 7)
    poly_iters: int = setting(0, "Horizon of the poly schedule; 0: iters (ADVENT: 250k horizon, stopped early at 120k).")
    stop_after: int = setting(0, "Run at most this many steps in this invocation, checkpoint and exit (continue with --resume); 0: no limit.")
    amp: bool = setting(False, "Mixed precision on CUDA (ignored with a log line on CPU).")
    amp_dtype: str = setting("bf16", "Mixed-precision type (fp16 uses a GradScaler).", choices=AMP_DTYPES)
    freeze_bn: bool = setting(False, "BatchNorm uses running statistics and does not learn (atool.models.batchnorm).")
    source_size: tuple[int, int] | None = setting(None, "Resize source images to WxH before cropping (ADVENT: 1280x720).")
    target_size: tuple[int, int] | None = setting(None, "Resize target images to WxH before cropping (ADVENT: 1024x512).")
    target_crop: tuple[int, int] | None = setting(None, "Target random crop WxH  [default: --crop]")
    # Multi-level outputs (AdaptSegNet/ADVENT): weights of the auxiliary level
    lambda_adv_aux: float = setting(2e-4, "Adversarial weight of the auxiliary level (multi-level advent).")
    lambda_seg_aux: float = setting(0.1, "Segmentation loss weight of the auxiliary level.")
    # MinEnt (ADVENT §3.1): weights of the target entropy, main and auxiliary level
    lambda_ent: float = setting(1e-3, "Target entropy weight (minent).")
    lambda_ent_aux: float = setting(2e-4, "Target entropy weight of the auxiliary level (minent).")
    # self_training: on-the-fly pseudo labels (loss weight: pseudo_weight)
    pseudo_threshold: float = setting(0.9, "Keep pseudo labels with softmax confidence >= this (self_training).")
    class_balanced: bool = setting(False, "CBST-style per-class thresholds, capped at --pseudo-threshold (self_training).")
    class_balanced_portion: float = setting(0.5, "Per class, the most confident portion of its predicted pixels kept (self_training).")
    teacher: str = setting("model", "Who makes the pseudo labels: the model being trained (eval mode) or a frozen copy of --init.", choices=TEACHERS)
    # intrada: entropy ranking of the target set into easy (pseudo-labelled) and hard parts
    easy_ratio: float = setting(0.67, "Fraction of target images in the easy split (intrada's lambda).")
    intrada_split: str | None = setting(None, "Folder for the easy/hard split (intrada)  [default: OUT without suffix + .intrada]", metavar="PATH")
    # selector (LabOR, atool/train/methods/selector.py)
    shared_backbone: bool = setting(False, "Selector heads on the frozen adapted features (one backbone pass at query time) or on a trained copy (LabOR).",
                                    cli=(" /--separate-backbone",))
    discrepancy_weight: float | None = setting(None, "Weight of the heads' L1 discrepancy (selector)  [default: 1.0 separate backbone, 0.1 shared]")
    selector_warmup: int = setting(100, "Steps of pseudo-label training before the discrepancy steps start (selector).")
    head_noise: float = setting(0.1, "Head 2's logit convs get noise of this times their weight std: breaks the heads' symmetry (selector).")

    def validate(self) -> None:
        if self.iters < 0:
            raise BadInput(f"iters must be >= 0, got {self.iters}")
        if self.batch_size < 1:
            raise BadInput(f"batch size must be >= 1, got {self.batch_size}")
        if self.lr <= 0:
            raise BadInput(f"lr must be > 0, got {self.lr}")
        if self.head_lr_mult <= 0:
            raise BadInput(f"head_lr_mult must be > 0, got {self.head_lr_mult}")
        if not 0 <= self.click_balance <= 1:  # also refuses NaN
            raise BadInput(f"click_balance must be in [0, 1], got {self.click_balance}")
        for name in ("oracle_weight", "pseudo_weight", "grown_weight"):
            if not getattr(self, name) >= 0:  # also refuses NaN
                raise BadInput(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.optimizer not in OPTIMIZERS:
            raise BadInput(f"optimizer must be sgd or adamw, got {self.optimizer!r}")
        w, h = self.crop
        if w < 16 or h < 16:
            raise BadInput(f"crop must be at least 16x16, got {w}x{h}")
        for key in ("source_size", "target_size", "target_crop"):
            value = getattr(self, key)
            if value is not None:
                w, h = _parse_size(value, key)
                if w < 16 or h < 16:
                    raise BadInput(f"{key} must be at least 16x16, got {w}x{h}")
                setattr(self, key, (w, h))
        if self.amp_dtype not in AMP_DTYPES:
            raise BadInput(f"amp_dtype must be bf16 or fp16, got {self.amp_dtype!r}")
        if self.teacher not in TEACHERS:
            raise BadInput(f"teacher must be model or init, got {self.teacher!r}")
        for key in ("pseudo_threshold", "class_balanced_portion"):
            if not 0 < getattr(self, key) <= 1:
                raise BadInput(f"{key} must be in (0, 1], got {getattr(self, key)}")
        if not 0 < self.easy_ratio < 1:
            raise BadInput(f"easy_ratio must be in (0, 1), got {self.easy_ratio}")
        if self.poly_iters < 0 or self.stop_after < 0:
            raise BadInput(f"poly_iters and stop_after must be >= 0, got {self.poly_iters} and {self.stop_after}")
