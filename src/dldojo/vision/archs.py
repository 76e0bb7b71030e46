"""CNN architectures of the curriculum, compact and readable, for 28/32 px and 128 px images.

Curriculum topic: image classification architectures (JDLA E資格 「CNNの代表的なモデル」) and their
computational cost.

    PlainCNN       LeCun et al., "Gradient-Based Learning Applied to Document Recognition" (1998)
    ResNet         He et al., "Deep Residual Learning for Image Recognition" (2016):  y = F(x) + x;
                   CIFAR depth 6n+2 (ResNet-20: n=3, 0.27M params; ResNet-56: n=9, 0.85M), basic and
                   bottleneck blocks; pre-activation from He et al., "Identity Mappings in Deep Residual
                   Networks" (2016): BN → ReLU → conv, so the shortcut path stays a pure identity
                   (ResNet-164, bottleneck: 1.7M params).
    WideResNet     Zagoruyko & Komodakis, "Wide Residual Networks" (2016): WRN-d-k has (d−4)/6
                   pre-activation basic blocks per stage, stage widths 16k, 32k, 64k (WRN-16-4: 2.7M).
    MobileNetV1    Howard et al. (2017): depthwise-separable conv = depthwise K×K + pointwise 1×1,
                   cost ratio to a standard conv 1/N + 1/K² (see `depthwise_separable_cost_ratio`).
    MobileNetV2    Sandler et al. (2018): inverted residual with linear bottleneck, 1×1 expand (×t) →
                   3×3 depthwise → 1×1 linear project, residual between the thin ends (the paper
                   reports 3.4M params; its reference implementations, torchvision's included, have
                   3,504,872 — 3.5M).
    DenseNet       Huang et al., "Densely Connected Convolutional Networks" (2017):
                   x_ℓ = H_ℓ([x_0, x_1, …, x_{ℓ−1}]), growth rate k, bottleneck (BN-ReLU-1×1 4k) and
                   transitions with compression θ = 0.5 ("BC"); DenseNet-BC (L=100, k=12): 0.8M params.
    AirbenchNet    Jordan, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU" (2024, arXiv:2404.00498):
                   a plain VGG-like net built for speed: a frozen 2×2 patch-whitening conv (its filters
                   are the eigenvectors of the training patches' covariance, scaled by λ^-½, and their
                   negatives), then three groups conv → max-pool → BN → GELU → conv → BN → GELU, a
                   global max-pool and a linear layer scaled by 1/9. airbench94: widths 64/256/256
                   (1.97M params), airbench93: 64/128/128.
    EfficientNet   Tan & Le (2019): MBConv (MobileNetV2 block + squeeze-excitation, Hu et al. 2018, +
                   stochastic depth, Huang et al. 2016) and compound scaling d = α^φ, w = β^φ, r = γ^φ
                   with α = 1.2, β = 1.1, γ = 1.15 (α·β²·γ² ≈ 2); EfficientNet-B0: 5.3M params.

Reference parameter counts above are the papers' (ImageNet models with 1000 classes, CIFAR models with
10); `tests/test_vision_archs.py` checks them, and checks ResNet-18, MobileNetV2, DenseNet-121 and
EfficientNet-B0/B1/B2 against torchvision's implementations layer for layer (parameter shapes, MACs).

Input size. Every model ends in global average pooling, so it accepts any input size. `stem` chooses
how early the resolution drops: "cifar" keeps full resolution at first (a 3×3 stride-1 stem, as in the
papers' CIFAR variants), "imagenet" uses the papers' ImageNet stem (ResNet/WRN/DenseNet: 7×7 stride-2
conv + 3×3 stride-2 max-pool, i.e. ÷4 at once; MobileNets/EfficientNet: a stride-2 3×3 conv, plus
their stride-2 24-channel stage for V2/EfficientNet). Use "cifar" for 28/32 px images and "imagenet"
for 128 px and up: at 128 px the "cifar" variants cost 16× their 32 px MACs (e.g. WRN-16-4: 6.3G).

Cost. `count_macs` counts multiply-accumulates of Conv2d and Linear layers with forward hooks:
conv MACs = output elements × (C_in / groups) × K_h × K_w, linear MACs = batch × in × out
(normalisation, activations, pooling and additions are not counted, as in most papers' FLOPs tables;
one MAC is two FLOPs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import StochasticDepth

from dldojo.engine.errors import DojoError, did_you_mean
from dldojo.vision.lite import LITE0_STAGES, efficientnet_lite0

Stem = Literal["cifar", "imagenet"]
STEMS = ("cifar", "imagenet")


# ============================================================================ shared pieces


def _check_stem(stem: str) -> None:
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a scaled channel count to a multiple of `divisor`, never dropping more than 10%.

    MobileNetV2 / EfficientNet convention (hardware likes multiples of 8); identical to torchvision's.
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class ConvBNAct(nn.Sequential):
    """Conv (no bias: BN has its own shift) → BatchNorm → activation (None for a linear output)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        activation: Callable[[], nn.Module] | None = nn.ReLU,
    ):
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False
            ),
            nn.BatchNorm2d(out_channels),
        ]
        if activation is not None:
            layers.append(activation())
        super().__init__(*layers)


def make_stem(in_channels: int, out_channels: int, stem: Stem, preact: bool) -> nn.Sequential:
    """The first layer(s) of ResNet / WRN / DenseNet.

    "cifar": one 3×3 stride-1 conv; in a pre-activation network it stays a bare conv because every
    block starts with its own BN-ReLU. "imagenet": 7×7 stride-2 conv, BN-ReLU, 3×3 stride-2 max-pool.
    """
    _check_stem(stem)
    if stem == "cifar":
        conv = nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False)
        if preact:
            return nn.Sequential(conv)
        return nn.Sequential(conv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 7, 2, 3, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),
    )


def init_weights(model: nn.Module) -> None:
    """He (Kaiming) normal init for convolutions, unit BN, small Gaussian for the classifier."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.01)
            nn.init.zeros_(module.bias)


# ============================================================================ plain CNN (LeNet)


class PlainCNN(nn.Module):
    """LeNet-5-style CNN: (conv 5×5 → ReLU → max-pool 2×2) × 2 → FC 120 → FC 84 → FC classes.

    The modern reading of LeCun et al. (1998): ReLU and max pooling instead of tanh and subsampling.
    Adaptive average pooling to 5×5 before the classifier makes the same weights fit 28×28×1 (MNIST,
    where the maps are already 5×5, so it is the identity), 32×32×3 (CIFAR, 6×6 maps) and larger.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2),  # padding 2 keeps 28×28, as LeNet's 32×32 input did
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(5),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(inplace=True),
            nn.Linear(120, 84),
            nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# ============================================================================ ResNet family


class ZeroPadShortcut(nn.Module):
    """He et al. (2016) shortcut option A: subsample by the stride and zero-pad the new channels.

    Parameter-free, which is how the CIFAR ResNets of the paper reach 0.27M (ResNet-20).
    """

    def __init__(self, extra_channels: int, stride: int):
        super().__init__()
        self.extra_channels = extra_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))


def make_shortcut(
    in_channels: int, out_channels: int, stride: int, kind: Literal["projection", "zero_pad"], preact: bool
) -> nn.Module:
    """Identity when shapes match; otherwise a 1×1 projection (option B) or zero padding (option A)."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    if kind == "zero_pad":
        return ZeroPadShortcut(out_channels - in_channels, stride)
    if kind == "projection":
        projection = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)
        # In a pre-activation block the projection sees an already normalised input.
        return projection if preact else nn.Sequential(projection, nn.BatchNorm2d(out_channels))
    raise ValueError(f"shortcut must be 'projection' or 'zero_pad', got {kind!r}")


class BasicBlock(nn.Module):
    """Two 3×3 convolutions plus a shortcut: y = F(x) + shortcut(x).

    post-activation (He et al. 2016a):  y = ReLU(BN(conv(ReLU(BN(conv(x))))) + shortcut(x))
    pre-activation  (He et al. 2016b):  y = conv(ReLU(BN(conv(ReLU(BN(x)))))) + shortcut(x)
    With pre-activation and `dropout` > 0 between the convolutions this is the Wide ResNet block.
    """

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int = 1,
        preact: bool = False,
        shortcut: Literal["projection", "zero_pad"] = "projection",
        dropout: float = 0.0,
    ):
        super().__init__()
        out_channels = width * self.expansion
        self.preact = preact
        self.bn1 = nn.BatchNorm2d(in_channels if preact else width)
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width if preact else out_channels)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(width, out_channels, 3, 1, 1, bias=False)
        self.shortcut = make_shortcut(in_channels, out_channels, stride, shortcut, preact)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preact:
            out = F.relu(self.bn1(x))
            # A changing shortcut (projection / padding) takes the normalised input; an identity keeps x.
            identity = x if isinstance(self.shortcut, nn.Identity) else self.shortcut(out)
            out = self.conv1(out)
            out = self.conv2(self.dropout(F.relu(self.bn2(out))))
            return out + identity
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(self.dropout(out)))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 → 1×1 expand (×4), plus a shortcut (He et al. 2016a, Fig. 5 right).

    The 3×3 conv runs on `width` channels, a quarter of the block's output, which makes deep networks
    (ResNet-50, ResNet-164) affordable. Stride sits on the 3×3 conv, as in torchvision ("v1.5").
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int = 1,
        preact: bool = False,
        shortcut: Literal["projection", "zero_pad"] = "projection",
        dropout: float = 0.0,
    ):
        super().__init__()
        out_channels = width * self.expansion
        self.preact = preact
        self.bn1 = nn.BatchNorm2d(in_channels if preact else width)
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width if preact else out_channels)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.shortcut = make_shortcut(in_channels, out_channels, stride, shortcut, preact)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preact:
            out = F.relu(self.bn1(x))
            identity = x if isinstance(self.shortcut, nn.Identity) else self.shortcut(out)
            out = self.conv1(out)
            out = self.conv2(F.relu(self.bn2(out)))
            out = self.conv3(self.dropout(F.relu(self.bn3(out))))
            return out + identity
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.dropout(out)))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Stem → stages of residual blocks (the first block of every stage after the first halves the
    resolution with stride 2) → [BN-ReLU if pre-activation] → global average pool → FC.

    `stage_depths` blocks per stage, `stage_widths` the blocks' inner width (output = width ×
    expansion). ResNet-18 is `ResNet(BasicBlock, (2, 2, 2, 2), (64, 128, 256, 512))`.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        stage_depths: Sequence[int],
        stage_widths: Sequence[int],
        num_classes: int = 10,
        in_channels: int = 3,
        stem: Stem = "cifar",
        stem_width: int | None = None,
        preact: bool = False,
        shortcut: Literal["projection", "zero_pad"] = "projection",
        dropout: float = 0.0,
    ):
        super().__init__()
        channels = stage_widths[0] if stem_width is None else stem_width
        self.stem = make_stem(in_channels, channels, stem, preact)
        stages = []
        for stage_index, (num_blocks, width) in enumerate(zip(stage_depths, stage_widths, strict=True)):
            blocks = []
            for block_index in range(num_blocks):
                stride = 2 if stage_index > 0 and block_index == 0 else 1
                blocks.append(block(channels, width, stride, preact, shortcut, dropout))
                channels = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        # Pre-activation blocks end on a conv, so the network normalises once more before pooling.
        self.final_norm = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True)) if preact else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.final_norm(self.stages(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def cifar_resnet(
    depth: int,
    num_classes: int = 10,
    in_channels: int = 3,
    block: Literal["basic", "bottleneck"] = "basic",
    preact: bool = False,
    shortcut: Literal["projection", "zero_pad"] = "zero_pad",
    stem: Stem = "cifar",
) -> ResNet:
    """He et al.'s CIFAR ResNet: 3 stages of widths 16, 32, 64 (×4 out for bottlenecks), n blocks each.

    Every block has 2 (basic) or 3 (bottleneck) weight layers, plus the first conv and the FC:
    depth = 6n + 2 (ResNet-20, 32, 44, 56, 110) or 9n + 2 (ResNet-164, 1001 with bottlenecks).
    The paper uses zero-padding shortcuts (option A) on CIFAR; "projection" is option B.
    """
    if block not in ("basic", "bottleneck"):
        raise ValueError(f"block must be 'basic' or 'bottleneck', got {block!r}")
    layers_per_block = 2 if block == "basic" else 3
    if (depth - 2) % (3 * layers_per_block) != 0:
        rule = "6n+2 (20, 32, 44, 56, 110)" if block == "basic" else "9n+2 (29, 56, 164)"
        raise ValueError(f"a CIFAR ResNet with {block} blocks needs depth = {rule}, got {depth}")
    n = (depth - 2) // (3 * layers_per_block)
    return ResNet(
        BasicBlock if block == "basic" else Bottleneck,
        (n, n, n),
        (16, 32, 64),
        num_classes,
        in_channels,
        stem=stem,
        preact=preact,
        shortcut=shortcut,
    )


def resnet18(num_classes: int = 10, in_channels: int = 3, stem: Stem = "cifar", preact: bool = False) -> ResNet:
    """ResNet-18: basic blocks (2, 2, 2, 2), widths 64–512, projection shortcuts (11.7M at 1000 classes).

    With stem="imagenet" it is layer-for-layer torchvision's `resnet18`; with "cifar" it is the
    common CIFAR variant (3×3 stem, no max-pool).
    """
    return ResNet(BasicBlock, (2, 2, 2, 2), (64, 128, 256, 512), num_classes, in_channels, stem=stem, preact=preact)


class WideResNet(ResNet):
    """WRN-d-k (Zagoruyko & Komodakis 2016): a pre-activation CIFAR ResNet made k times wider.

    n = (d − 4) / 6 basic blocks per stage (the paper's depth convention, d = 6n + 4), stage widths
    16k, 32k, 64k after a 16-channel stem, 1×1 projection shortcuts where the shape changes (also in
    the first block, 16 → 16k), dropout between the two convs of a block. k = 1 is a pre-activation
    ResNet with one extra projection.
    """

    def __init__(
        self,
        depth: int = 16,
        widen_factor: int = 4,
        num_classes: int = 10,
        in_channels: int = 3,
        dropout: float = 0.0,
        stem: Stem = "cifar",
    ):
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WRN depth must be 6n+4 (10, 16, 22, 28, 40), got {depth}")
        n = (depth - 4) // 6
        k = widen_factor
        super().__init__(
            BasicBlock,
            (n, n, n),
            (16 * k, 32 * k, 64 * k),
            num_classes,
            in_channels,
            stem=stem,
            stem_width=16,
            preact=True,
            shortcut="projection",
            dropout=dropout,
        )


# ============================================================================ MobileNet v1 / v2


class DepthwiseSeparableConv(nn.Module):
    """Depthwise K×K conv (one filter per input channel, groups = M) → BN-ReLU → pointwise 1×1 conv
    (mixes M input channels into N outputs) → BN-ReLU (Howard et al. 2017, Fig. 3)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, kernel_size: int = 3):
        super().__init__()
        self.depthwise = ConvBNAct(in_channels, in_channels, kernel_size, stride, groups=in_channels)
        self.pointwise = ConvBNAct(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


# (output channels, stride) of MobileNet v1's 13 depthwise-separable layers (Howard et al. 2017, Table 1).
MOBILENET_V1_LAYERS = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2), (1024, 1),
)  # fmt: skip


class MobileNetV1(nn.Module):
    """MobileNet v1: a 3×3 conv then 13 depthwise-separable convs, global pool, FC (4.2M at 1000 classes).

    `width_multiplier` α thins every layer (channels × α); "cifar" stem: the first conv has stride 1.
    """

    def __init__(
        self, num_classes: int = 10, in_channels: int = 3, width_multiplier: float = 1.0, stem: Stem = "cifar"
    ):
        super().__init__()
        _check_stem(stem)
        channels = make_divisible(32 * width_multiplier)
        layers: list[nn.Module] = [ConvBNAct(in_channels, channels, 3, stride=1 if stem == "cifar" else 2)]
        for out_channels, stride in MOBILENET_V1_LAYERS:
            out_channels = make_divisible(out_channels * width_multiplier)
            layers.append(DepthwiseSeparableConv(channels, out_channels, stride))
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class InvertedResidual(nn.Module):
    """MobileNetV2 block (Sandler et al. 2018): 1×1 expand ×t → ReLU6 → 3×3 depthwise → ReLU6 → 1×1
    project, *linear* (no ReLU: the thin bottleneck would lose information), residual if shapes match.

    "Inverted" because the residual connects the narrow ends while the wide middle is depthwise.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden_channels = int(round(in_channels * expand_ratio))
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(in_channels, hidden_channels, 1, activation=nn.ReLU6))
        layers += [
            ConvBNAct(hidden_channels, hidden_channels, 3, stride, groups=hidden_channels, activation=nn.ReLU6),
            ConvBNAct(hidden_channels, out_channels, 1, activation=None),  # linear bottleneck
        ]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.use_residual else self.block(x)


# (expansion t, output channels c, repeats n, first stride s) — Sandler et al. (2018), Table 2.
MOBILENET_V2_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV2(nn.Module):
    """MobileNetV2: 3×3 conv 32 → 17 inverted residual blocks → 1×1 conv 1280 → pool → dropout → FC.

    With stem="imagenet" it matches torchvision's `mobilenet_v2` layer for layer (3.5M params at 1000
    classes). "cifar" removes two of the five stride-2 steps (the stem and the 24-channel stage), so a
    32 px image ends at 4×4 rather than 1×1.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        width_multiplier: float = 1.0,
        dropout: float = 0.2,
        stem: Stem = "cifar",
    ):
        super().__init__()
        _check_stem(stem)
        small_input = stem == "cifar"
        channels = make_divisible(32 * width_multiplier)
        layers: list[nn.Module] = [ConvBNAct(in_channels, channels, 3, 1 if small_input else 2, activation=nn.ReLU6)]
        for expand_ratio, out_channels, repeats, first_stride in MOBILENET_V2_STAGES:
            out_channels = make_divisible(out_channels * width_multiplier)
            if small_input and out_channels == make_divisible(24 * width_multiplier):
                first_stride = 1
            for repeat in range(repeats):
                stride = first_stride if repeat == 0 else 1
                layers.append(InvertedResidual(channels, out_channels, stride, expand_ratio))
                channels = out_channels
        last_channels = make_divisible(1280 * max(1.0, width_multiplier))
        layers.append(ConvBNAct(channels, last_channels, 1, activation=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last_channels, num_classes))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


# ============================================================================ DenseNet


class DenseLayer(nn.Module):
    """H_ℓ of DenseNet-B: BN-ReLU-1×1 conv (bottleneck to 4k channels) → BN-ReLU-3×3 conv (k new maps).

    Its output is concatenated to its input, so the block's channel count grows by k per layer.
    """

    def __init__(self, in_channels: int, growth_rate: int, bottleneck_factor: int = 4):
        super().__init__()
        bottleneck_channels = bottleneck_factor * growth_rate
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, bottleneck_channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(bottleneck_channels)
        self.conv2 = nn.Conv2d(bottleneck_channels, growth_rate, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new_features = self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x))))))
        return torch.cat([x, new_features], dim=1)  # [x_0, …, x_{ℓ−1}] ++ x_ℓ


class Transition(nn.Sequential):
    """Between dense blocks: BN-ReLU-1×1 conv compressing channels by θ, then 2×2 average pool."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.AvgPool2d(2, 2),
        )


class DenseNet(nn.Module):
    """DenseNet-BC: stem → (dense block → transition) × … → dense block → BN-ReLU → pool → FC.

    `block_config` is the number of layers per dense block; the stem has `2k` channels unless
    `stem_width` is given. DenseNet-121 is block_config (6, 12, 24, 16), k = 32, stem_width 64,
    stem="imagenet" — torchvision's `densenet121` layer for layer.
    """

    def __init__(
        self,
        block_config: Sequence[int] = (16, 16, 16),
        growth_rate: int = 12,
        num_classes: int = 10,
        in_channels: int = 3,
        compression: float = 0.5,
        stem_width: int | None = None,
        stem: Stem = "cifar",
    ):
        super().__init__()
        channels = 2 * growth_rate if stem_width is None else stem_width
        layers: list[nn.Module] = [make_stem(in_channels, channels, stem, preact=True)]
        for block_index, num_layers in enumerate(block_config):
            for _ in range(num_layers):
                layers.append(DenseLayer(channels, growth_rate))
                channels += growth_rate
            if block_index < len(block_config) - 1:
                compressed = int(math.floor(compression * channels))
                layers.append(Transition(channels, compressed))
                channels = compressed
        layers += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def densenet_bc(
    depth: int = 100, growth_rate: int = 12, num_classes: int = 10, in_channels: int = 3, stem: Stem = "cifar"
) -> DenseNet:
    """CIFAR DenseNet-BC (Huang et al. 2017): 3 dense blocks of (L − 4) / 6 bottleneck layers each.

    L counts the stem conv, 2 convs per bottleneck layer, the 2 transition convs and the FC.
    DenseNet-BC (L=100, k=12): 0.8M parameters.
    """
    if (depth - 4) % 6 != 0:
        raise ValueError(f"DenseNet-BC depth must be 6n+4 (40, 100, 190, 250), got {depth}")
    n = (depth - 4) // 6
    return DenseNet((n, n, n), growth_rate, num_classes, in_channels, compression=0.5, stem=stem)


# ============================================================================ EfficientNet


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018): reweight channels by a gate computed from their means.

        s = σ(W₂ δ(W₁ · GAP(x))),   y = s ⊙ x
    (δ = SiLU in EfficientNet, ReLU in the SE paper; W₁, W₂ are 1×1 convs with bias.)
    """

    def __init__(self, channels: int, squeeze_channels: int, activation: Callable[[], nn.Module] = nn.SiLU):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze_channels, 1)
        self.activation = activation()
        self.expand = nn.Conv2d(squeeze_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = F.adaptive_avg_pool2d(x, 1)  # (N, C, 1, 1): the "squeeze"
        gate = torch.sigmoid(self.expand(self.activation(self.reduce(squeezed))))  # the "excitation"
        return x * gate


class MBConv(nn.Module):
    """EfficientNet's mobile inverted bottleneck: [1×1 expand ×t] → K×K depthwise → SE → 1×1 project.

    SiLU (swish) activations; SE squeezes to a quarter of the block's *input* channels; when the
    residual applies, stochastic depth drops the whole residual branch for random samples in training
    (torchvision's `StochasticDepth`, "row" mode) — an ensemble of shallower networks.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        expand_ratio: int,
        se_ratio: float = 0.25,
        stochastic_depth_prob: float = 0.0,
    ):
        super().__init__()
        hidden_channels = make_divisible(in_channels * expand_ratio)
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if hidden_channels != in_channels:
            layers.append(ConvBNAct(in_channels, hidden_channels, 1, activation=nn.SiLU))
        layers += [
            ConvBNAct(
                hidden_channels, hidden_channels, kernel_size, stride, groups=hidden_channels, activation=nn.SiLU
            ),
            SqueezeExcitation(hidden_channels, max(1, int(in_channels * se_ratio))),
            ConvBNAct(hidden_channels, out_channels, 1, activation=None),
        ]
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_residual:
            return x + self.stochastic_depth(self.block(x))
        return self.block(x)


# (expansion t, kernel, first stride, output channels, repeats) — Tan & Le (2019), Table 1 (B0); the Lite
# variants keep B0's stages, so the table lives once, in vision/lite.py
EFFICIENTNET_B0_STAGES = LITE0_STAGES


class EfficientNet(nn.Module):
    """EfficientNet: 3×3 conv 32 → 16 MBConv blocks (B0) → 1×1 conv 1280 → pool → dropout → FC.

    `width_multiplier` scales channels (rounded to multiples of 8), `depth_multiplier` scales the
    repeats per stage (rounded up); see `compound_scaling`. `stochastic_depth_prob` is the drop rate
    of the last block, increased linearly from 0 at the first (0.2 in the paper, 0 disables it).
    With stem="imagenet" and multipliers 1.0 it matches torchvision's `efficientnet_b0` layer for
    layer (5.3M params at 1000 classes); "cifar" keeps stride 1 in the stem and the 24-channel stage.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        width_multiplier: float = 1.0,
        depth_multiplier: float = 1.0,
        dropout: float = 0.2,
        stochastic_depth_prob: float = 0.2,
        stem: Stem = "cifar",
    ):
        super().__init__()
        _check_stem(stem)
        small_input = stem == "cifar"
        stages = [
            (t, kernel, stride, make_divisible(channels * width_multiplier), math.ceil(repeats * depth_multiplier))
            for t, kernel, stride, channels, repeats in EFFICIENTNET_B0_STAGES
        ]
        total_blocks = sum(repeats for *_, repeats in stages)

        channels = make_divisible(32 * width_multiplier)
        layers: list[nn.Module] = [ConvBNAct(in_channels, channels, 3, 1 if small_input else 2, activation=nn.SiLU)]
        block_index = 0
        for stage_index, (expand_ratio, kernel, first_stride, out_channels, repeats) in enumerate(stages):
            if small_input and stage_index == 1:
                first_stride = 1
            for repeat in range(repeats):
                drop_prob = stochastic_depth_prob * block_index / total_blocks
                stride = first_stride if repeat == 0 else 1
                block = MBConv(
                    channels, out_channels, kernel, stride, expand_ratio, se_ratio=0.25, stochastic_depth_prob=drop_prob
                )
                layers.append(block)
                channels = out_channels
                block_index += 1
        head_channels = 4 * channels  # 1280 for B0
        layers.append(ConvBNAct(channels, head_channels, 1, activation=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(head_channels, num_classes))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


@dataclasses.dataclass(frozen=True)
class CompoundScaling:
    """Multipliers of EfficientNet's compound scaling for one φ."""

    phi: float
    depth_multiplier: float  # d = α^φ: layers per stage
    width_multiplier: float  # w = β^φ: channels per layer
    resolution_multiplier: float  # r = γ^φ: image side
    resolution: int  # base resolution × r, rounded
    flops_multiplier: float  # (α·β²·γ²)^φ ≈ 2^φ: FLOPs grow with d, w², r²


def compound_scaling(
    phi: float, alpha: float = 1.2, beta: float = 1.1, gamma: float = 1.15, base_resolution: int = 224
) -> CompoundScaling:
    """Tan & Le (2019), eq. 3: d = α^φ, w = β^φ, r = γ^φ subject to α·β²·γ² ≈ 2, α, β, γ ≥ 1.

    α, β, γ come from a small grid search on B0 at φ = 1; φ is then the user's compute budget: each
    step of φ roughly doubles the FLOPs. (The released B1–B7 use hand-rounded multipliers, e.g. B1 =
    width 1.0, depth 1.1, 240 px, rather than this formula's exact values.)
    """
    return CompoundScaling(
        phi=phi,
        depth_multiplier=alpha**phi,
        width_multiplier=beta**phi,
        resolution_multiplier=gamma**phi,
        resolution=round(base_resolution * gamma**phi),
        flops_multiplier=(alpha * beta**2 * gamma**2) ** phi,
    )


# ============================================================================ cost: parameters, MACs


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block the model is in eval mode (BatchNorm uses its running statistics and does not update
    them, no dropout); afterwards it is back in the mode it had."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (BN's running statistics are buffers, not parameters, so not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of all Conv2d and Linear layers for one forward pass of `input_shape`.

    `input_shape` is (C, H, W) for one image or (N, C, H, W) for a batch. Forward hooks see each
    layer's actual output, so strides, padding and groups need no separate bookkeeping:
        conv:   MACs = output elements × (C_in / groups) × K_h × K_w
        linear: MACs = output elements × in_features
    Biases, normalisation, activations, pooling and residual additions are not counted (the usual
    convention; FLOPs = 2 × MACs, which is what `torch.utils.flop_counter.FlopCounterMode` reports).
    """
    if len(input_shape) == 3:
        input_shape = (1, *input_shape)
    total_macs = 0

    def conv_hook(module: nn.Conv2d, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total_macs
        kernel_h, kernel_w = module.kernel_size
        total_macs += output.numel() * (module.in_channels // module.groups) * kernel_h * kernel_w

    def linear_hook(module: nn.Linear, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total_macs
        total_macs += output.numel() * module.in_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    parameter = next(model.parameters(), None)
    try:  # eval: no BN statistics update, no dropout / stochastic depth: a pure measurement
        with eval_mode(model), torch.no_grad():
            model(torch.zeros(input_shape, device=parameter.device if parameter is not None else None))
    finally:
        for handle in handles:
            handle.remove()
    return total_macs


def depthwise_separable_cost_ratio(K: int, M: int, N: int) -> float:
    """Cost of a depthwise-separable conv relative to a standard K×K conv (Howard et al. 2017, eq. 5).

    Notation of the MobileNet paper: K = kernel size (D_K), M = input channels, N = output channels,
    H×W = output feature map (D_F × D_F), stride 1 with "same" padding:
        standard:             K²·M·N·H·W
        depthwise separable:  K²·M·H·W  (depthwise)  +  M·N·H·W  (pointwise)
        ratio = (K²·M + M·N) / (K²·M·N) = 1/N + 1/K²
    H·W and the input channels M cancel. The issue writes the ratio as (K² + M)/(K²·M) = 1/M + 1/K²:
    the same formula with its M denoting the number of *output* channels (our N). For a 3×3 kernel and
    many output channels the separable conv costs a little more than 1/9 of the standard one.
    """
    return (K * K * M + M * N) / (K * K * M * N)


# ============================================================================ airbench (plain, built for speed)


class AirbenchBatchNorm(nn.BatchNorm2d):
    """BatchNorm without a learned scale (γ fixed at 1, only β learns), as airbench: the next conv can
    absorb any scale, so γ only adds a redundant degree of freedom. Running statistics use momentum 0.4
    (airbench writes 0.6 for the kept fraction) so they settle within the few hundred steps of a run."""

    def __init__(self, num_features: int, momentum: float = 0.4, eps: float = 1e-12):
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.weight.requires_grad_(False)


class AirbenchConvGroup(nn.Module):
    """conv 3×3 → max-pool 2 → BN → GELU → conv 3×3 → BN → GELU. Convs start as identity (Dirac) on the
    channels they share with their input, an implicit residual connection (airbench)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = AirbenchBatchNorm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = AirbenchBatchNorm(out_channels)
        self.activ = nn.GELU()
        for conv in (self.conv1, self.conv2):
            nn.init.dirac_(conv.weight.data[:conv.in_channels])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activ(self.norm1(self.pool(self.conv1(x))))
        return self.activ(self.norm2(self.conv2(x)))


class AirbenchNet(nn.Module):
    """Patch-whitening conv → GELU → 3 conv groups → global max-pool → linear / 9 (Jordan 2024).

    The whitening conv has 2·C·k² output channels for k×k patches of C channels: the eigenvectors of
    the patch covariance Σ (one filter each, divided by √(λ + ε)) and their negatives, so that after
    GELU both signs of every whitened direction survive. Its weights are set from training images by
    `init_whitening` and stay frozen; only its bias trains (for the first epochs, see the experiment).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, widths: Sequence[int] = (64, 256, 256),
                 whiten_kernel: int = 2, scaling_factor: float = 1 / 9, head_bias: bool = False):
        super().__init__()
        whiten_width = 2 * in_channels * whiten_kernel**2
        self.whiten = nn.Conv2d(in_channels, whiten_width, whiten_kernel, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)
        nn.init.zeros_(self.whiten.bias)
        self.activ = nn.GELU()
        chans = [whiten_width, *widths]
        self.groups = nn.Sequential(*[AirbenchConvGroup(a, b) for a, b in zip(chans[:-1], chans[1:])])
        self.head = nn.Linear(widths[-1], num_classes, bias=head_bias)  # a bias: transfer's folded head
        self.scaling_factor = scaling_factor

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the whitening filters from (normalised) training images, (N, C, H, W)."""
        c, (h, w) = images.shape[1], self.whiten.kernel_size
        patches = images.float().unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c * h * w)
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
        filters = (eigenvectors.T / torch.sqrt(eigenvalues + eps)[:, None]).flip(0).reshape(-1, c, h, w)
        self.whiten.weight.copy_(torch.cat([filters, -filters]))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last conv group's activation map (Grad-CAM's usual target layer is `groups[-1]`)."""
        # The whitening filters are large (1/sqrt(eigenvalue + eps)) and of opposite signs, so in bf16 their
        # sums cancel badly (MNIST's flat background stopped training); this small layer stays in fp32.
        with torch.autocast(x.device.type, enabled=False):
            x = self.whiten(x.to(self.whiten.weight.dtype))
        return self.groups(self.activ(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_max_pool2d(self.features(x), 1).flatten(1)
        return self.head(x) * self.scaling_factor


# ============================================================================ registry


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "plain_cnn": PlainCNN,
    "resnet20": functools.partial(cifar_resnet, 20),
    "resnet56": functools.partial(cifar_resnet, 56),
    "preact_resnet164": functools.partial(cifar_resnet, 164, block="bottleneck", preact=True, shortcut="projection"),
    "resnet18": resnet18,
    "wrn16_4": functools.partial(WideResNet, 16, 4),
    "mobilenet_v1": MobileNetV1,
    "mobilenet_v2": MobileNetV2,
    "densenet_bc_100_12": functools.partial(densenet_bc, 100, 12),
    "efficientnet_b0": EfficientNet,
    "efficientnet_lite0": efficientnet_lite0,  # ImageNet weights: pretrained=True (vision/lite.py)
    "airbench94": AirbenchNet,
    "airbench93": functools.partial(AirbenchNet, widths=(64, 128, 128)),
}


def build_arch(name: str, num_classes: int = 10, in_channels: int = 3, **kwargs) -> nn.Module:
    """Build a registered architecture by name; `kwargs` go to its constructor (e.g. stem="imagenet")."""
    if name not in ARCHITECTURES:
        raise DojoError(
            f"unknown architecture {name!r}.{did_you_mean(name, ARCHITECTURES)} "
            f"Known architectures: {', '.join(sorted(ARCHITECTURES))}."
        )
    return ARCHITECTURES[name](num_classes=num_classes, in_channels=in_channels, **kwargs)
