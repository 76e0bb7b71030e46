"""The vision architectures: shapes, exact parameter counts, the papers' numbers, torchvision parity,
and the MAC counter against torch's FlopCounterMode."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dldojo.engine.errors import DojoError
from dldojo.vision.archs import (
    ARCHITECTURES,
    ConvBNAct,
    DenseNet,
    DepthwiseSeparableConv,
    EfficientNet,
    MBConv,
    SqueezeExcitation,
    WideResNet,
    build_arch,
    cifar_resnet,
    compound_scaling,
    count_macs,
    count_params,
    densenet_bc,
    depthwise_separable_cost_ratio,
)

NAMES = sorted(ARCHITECTURES)
NUM_CLASSES = 7  # not 10 or 1000, so a classifier sized by a hard-coded constant would show


def macs_and_flop_counter_flops(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """Our MAC count and the FLOPs torch's own counter sees, from the same forward pass."""
    with FlopCounterMode(display=False) as counter:
        macs = count_macs(model, input_shape)
    return macs, counter.get_total_flops()


@pytest.fixture(autouse=True, scope="module")
def _one_intra_op_thread():
    # These forward passes are small; with 2 threads on a 2-core machine that is also busy with
    # something else, OpenMP's spinning threads made this file 5-10× slower (measured 89 s vs 9 s).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ---------------------------------------------------------------------------- forward shapes


@pytest.mark.parametrize("name", NAMES)
def test_forward_32px_gives_logits_and_macs_equal_flop_counter(name):
    model = build_arch(name, num_classes=NUM_CLASSES, in_channels=3)
    x = torch.randn(2, 3, 32, 32)

    model.train()  # dropout, stochastic depth and batch statistics active: the training-time path
    logits = model(x)
    assert logits.shape == (2, NUM_CLASSES)
    assert torch.isfinite(logits).all()

    macs, flops = macs_and_flop_counter_flops(model, (1, 3, 32, 32))
    assert 2 * macs == flops


@pytest.mark.parametrize("name", NAMES)
def test_forward_128px_gives_logits(name):
    # the stem meant for large images; plain_cnn and airbench (global max-pool) take any size as they are
    kwargs = {} if name == "plain_cnn" or name.startswith("airbench") else {"stem": "imagenet"}
    model = build_arch(name, num_classes=NUM_CLASSES, in_channels=3, **kwargs).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 128, 128))
    assert logits.shape == (2, NUM_CLASSES)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(("in_channels", "size"), [(1, 28), (3, 32), (1, 64)])
def test_plain_cnn_fits_mnist_and_cifar_shapes(in_channels, size):
    model = build_arch("plain_cnn", num_classes=10, in_channels=in_channels)
    assert model(torch.randn(3, in_channels, size, size)).shape == (3, 10)


@pytest.mark.parametrize("name", NAMES)
def test_in_channels_reaches_the_first_convolution(name):
    model = build_arch(name, num_classes=10, in_channels=1)
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == 1


def test_grayscale_28px_through_a_residual_network():
    model = build_arch("resnet20", num_classes=10, in_channels=1).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 28, 28)).shape == (1, 10)


# ---------------------------------------------------------------------------- parameter counts

# Computed once from these implementations (10 classes, 3 input channels, default "cifar" stem) and
# pinned: any change to an architecture shows up here.
EXPECTED_PARAMS = {
    "plain_cnn": 62_006,
    "resnet20": 269_722,
    "resnet56": 853_018,
    "preact_resnet164": 1_703_258,
    "resnet18": 11_173_962,
    "wrn16_4": 2_748_890,
    "mobilenet_v1": 3_217_226,
    "mobilenet_v2": 2_236_682,
    "densenet_bc_100_12": 769_162,
    "efficientnet_b0": 4_020_358,
    "efficientnet_lite0": 3_383_818,
    "airbench94": 1_972_792,
    "airbench93": 569_656,
}


def test_every_registered_architecture_has_a_pinned_parameter_count():
    assert set(EXPECTED_PARAMS) == set(ARCHITECTURES)


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_is_exact(name):
    assert count_params(build_arch(name, num_classes=10, in_channels=3)) == EXPECTED_PARAMS[name]


# The papers' reported sizes, in millions, as they round them. CIFAR models have 10 classes, ImageNet
# models 1000 and the ImageNet stem.
PUBLISHED_PARAMS_M = [
    ("resnet20", 10, "cifar", 0.27, "He et al. 2016, Table 6"),
    ("resnet56", 10, "cifar", 0.85, "He et al. 2016, Table 6"),
    ("preact_resnet164", 10, "cifar", 1.7, "He et al. 2016b (Identity Mappings)"),
    ("wrn16_4", 10, "cifar", 2.7, "Zagoruyko & Komodakis 2016"),
    ("densenet_bc_100_12", 10, "cifar", 0.8, "Huang et al. 2017, Table 2"),
    ("resnet18", 1000, "imagenet", 11.7, "torchvision model card"),
    ("mobilenet_v1", 1000, "imagenet", 4.2, "Howard et al. 2017, Tables 4 and 8"),
    # Sandler et al. 2018 print 3.4M; the reference implementations (TF-slim, torchvision) have 3.5M.
    ("mobilenet_v2", 1000, "imagenet", 3.5, "torchvision model card"),
    ("efficientnet_b0", 1000, "imagenet", 5.3, "Tan & Le 2019, Table 2"),
    ("efficientnet_lite0", 1000, "imagenet", 4.7, "TensorFlow efficientnet/lite README (Lite0: 4.7M)"),
]


@pytest.mark.parametrize(("name", "num_classes", "stem", "millions", "source"), PUBLISHED_PARAMS_M)
def test_parameter_count_matches_the_paper(name, num_classes, stem, millions, source):
    count = count_params(build_arch(name, num_classes=num_classes, in_channels=3, stem=stem))
    decimals = len(str(millions).split(".")[1])
    assert round(count / 1e6, decimals) == millions, f"{count:,} vs {millions}M ({source})"


# ---------------------------------------------------------------------------- torchvision parity


def _sorted_parameter_shapes(model: nn.Module) -> list[tuple[int, ...]]:
    return sorted(tuple(p.shape) for p in model.parameters())


TORCHVISION_TWINS = [
    ("resnet18", {}, "resnet18"),
    ("mobilenet_v2", {}, "mobilenet_v2"),
    ("efficientnet_b0", {}, "efficientnet_b0"),
    ("efficientnet_b0", {"width_multiplier": 1.0, "depth_multiplier": 1.1}, "efficientnet_b1"),
    ("efficientnet_b0", {"width_multiplier": 1.1, "depth_multiplier": 1.2}, "efficientnet_b2"),
]


@pytest.mark.parametrize(("name", "kwargs", "torchvision_name"), TORCHVISION_TWINS)
def test_same_layers_and_macs_as_torchvision(name, kwargs, torchvision_name):
    ours = build_arch(name, num_classes=1000, in_channels=3, stem="imagenet", **kwargs)
    theirs = getattr(torchvision.models, torchvision_name)(weights=None)
    # Same multiset of parameter tensors: same layers with the same shapes, not just the same total.
    assert _sorted_parameter_shapes(ours) == _sorted_parameter_shapes(theirs)
    assert count_params(ours) == count_params(theirs)

    shape = (1, 3, 64, 64)
    their_macs, their_flops = macs_and_flop_counter_flops(theirs, shape)
    assert count_macs(ours, shape) == their_macs
    # Our counter on torchvision's own model agrees with torch's FlopCounterMode.
    assert 2 * their_macs == their_flops


def test_densenet121_config_is_torchvision_densenet121():
    ours = DenseNet((6, 12, 24, 16), growth_rate=32, num_classes=1000, stem_width=64, stem="imagenet")
    theirs = torchvision.models.densenet121(weights=None)
    assert _sorted_parameter_shapes(ours) == _sorted_parameter_shapes(theirs)
    assert count_params(ours) == count_params(theirs) == 7_978_856
    assert count_macs(ours, (1, 3, 64, 64)) == count_macs(theirs, (1, 3, 64, 64))


def test_stochastic_depth_rates_match_torchvision_efficientnet():
    ours = EfficientNet(1000, stem="imagenet", stochastic_depth_prob=0.2)
    theirs = torchvision.models.efficientnet_b0(weights=None)
    our_rates = [m.stochastic_depth.p for m in ours.modules() if isinstance(m, MBConv)]
    their_rates = [m.stochastic_depth.p for m in theirs.modules() if type(m).__name__ == "MBConv"]
    assert our_rates == pytest.approx(their_rates)
    assert our_rates[0] == 0.0 and our_rates[-1] == pytest.approx(0.2 * 15 / 16)  # linear in block index


def test_squeeze_excitation_matches_torchvision():
    ours = SqueezeExcitation(16, 4)
    theirs = torchvision.ops.SqueezeExcitation(16, 4, activation=nn.SiLU)
    theirs.load_state_dict(
        {"fc1.weight": ours.reduce.weight, "fc1.bias": ours.reduce.bias,
         "fc2.weight": ours.expand.weight, "fc2.bias": ours.expand.bias}
    )  # fmt: skip
    x = torch.randn(2, 16, 5, 5)
    torch.testing.assert_close(ours(x), theirs(x))


def test_stochastic_depth_drops_whole_residual_branches_only_in_training():
    block = MBConv(16, 16, kernel_size=3, stride=1, expand_ratio=6, stochastic_depth_prob=0.5).eval()
    x = torch.randn(64, 16, 4, 4)
    with torch.no_grad():
        branch = block.block(x)
        torch.testing.assert_close(block(x), x + branch)  # eval: the expected value, no randomness
        block.train()
        block.block.eval()  # keep BN in eval so only stochastic depth differs
        residual = block(x) - x
    dropped = residual.flatten(1).abs().amax(dim=1) == 0
    assert 10 < dropped.sum() < 54  # about half of the 64 samples lose their branch
    # Survivors are scaled by 1 / (1 − p) so the expectation matches eval.
    torch.testing.assert_close(residual[~dropped], branch[~dropped] / 0.5)


# ---------------------------------------------------------------------------- MAC counter


def test_count_macs_by_hand():
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)  # 32×32 → 16×16
    assert count_macs(conv, (3, 32, 32)) == (8 * 16 * 16) * 3 * 3 * 3
    grouped = nn.Conv2d(8, 16, 3, padding=1, groups=4)  # each output sees 8/4 = 2 input channels
    assert count_macs(grouped, (2, 8, 10, 10)) == (2 * 16 * 10 * 10) * 2 * 3 * 3
    linear = nn.Linear(20, 5)
    assert count_macs(linear, (4, 20)) == 4 * 20 * 5


def test_count_macs_restores_training_mode_and_removes_hooks():
    model = build_arch("resnet20")
    model.train()
    count_macs(model, (3, 32, 32))
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())


# ---------------------------------------------------------------------------- depthwise separable cost


@pytest.mark.parametrize(("K", "M", "N", "size"), [(3, 32, 64, 16), (3, 16, 16, 8), (5, 8, 24, 12), (7, 4, 100, 9)])
def test_depthwise_separable_cost_ratio_measured_on_modules(K, M, N, size):
    standard = nn.Conv2d(M, N, K, padding=K // 2, bias=False)
    separable = nn.Sequential(
        nn.Conv2d(M, M, K, padding=K // 2, groups=M, bias=False),  # depthwise: K²·M·H·W
        nn.Conv2d(M, N, 1, bias=False),  # pointwise: M·N·H·W
    )
    measured = count_macs(separable, (M, size, size)) / count_macs(standard, (M, size, size))
    assert measured == pytest.approx(depthwise_separable_cost_ratio(K, M, N), rel=1e-12)
    assert measured == pytest.approx(1 / N + 1 / K**2, rel=1e-12)
    # The form (K² + M)/(K²·M) is the same formula with its M = our N (output channels).
    assert measured == pytest.approx((K**2 + N) / (K**2 * N), rel=1e-12)
    # The BN-ReLU block used in MobileNet costs the same multiply-accumulates.
    block_macs = count_macs(DepthwiseSeparableConv(M, N, kernel_size=K), (M, size, size))
    assert block_macs == count_macs(separable, (M, size, size))


def test_mobilenet_v1_against_its_standard_convolution_twin():
    """Howard et al. 2017, Table 4: MobileNet 569M mult-adds / 4.2M params; the same network with
    standard 3×3 convs 4866M / 29.3M. (Our count includes the 1.0M of the FC layer in both; the
    paper's two figures round to within 0.1% of ours, apparently not counting it the same way.)"""
    separable = build_arch("mobilenet_v1", num_classes=1000, stem="imagenet")
    standard = build_arch("mobilenet_v1", num_classes=1000, stem="imagenet")
    for name, block in list(standard.features.named_children()):
        if isinstance(block, DepthwiseSeparableConv):
            depthwise, pointwise = block.depthwise[0], block.pointwise[0]
            standard.features._modules[name] = ConvBNAct(
                depthwise.in_channels, pointwise.out_channels, 3, depthwise.stride[0]
            )
    separable_macs = count_macs(separable, (3, 224, 224))
    standard_macs = count_macs(standard, (3, 224, 224))
    assert separable_macs / 1e6 == pytest.approx(569, rel=1e-3)
    assert standard_macs / 1e6 == pytest.approx(4866, rel=1e-3)
    assert round(count_params(separable) / 1e6, 1) == 4.2
    assert round(count_params(standard) / 1e6, 1) == 29.3
    assert 8 < standard_macs / separable_macs < 9  # the "8 to 9 times less computation" of the paper


# ---------------------------------------------------------------------------- compound scaling


def test_compound_scaling_multipliers():
    base = compound_scaling(0)
    assert (base.depth_multiplier, base.width_multiplier, base.resolution_multiplier, base.resolution) == (1, 1, 1, 224)
    phi1 = compound_scaling(1)
    assert (phi1.depth_multiplier, phi1.width_multiplier, phi1.resolution_multiplier) == pytest.approx((1.2, 1.1, 1.15))
    assert phi1.resolution == 258
    # The constraint α·β²·γ² ≈ 2: each unit of φ about doubles the FLOPs.
    assert phi1.flops_multiplier == pytest.approx(2, rel=0.05)
    assert compound_scaling(3).flops_multiplier == pytest.approx(phi1.flops_multiplier**3)


def test_compound_scaled_network_costs_about_the_predicted_multiple():
    scaling = compound_scaling(1, base_resolution=128)
    b0_macs = count_macs(EfficientNet(10, stem="imagenet"), (3, 128, 128))
    scaled = EfficientNet(
        10, width_multiplier=scaling.width_multiplier, depth_multiplier=scaling.depth_multiplier, stem="imagenet"
    )
    ratio = count_macs(scaled, (3, scaling.resolution, scaling.resolution)) / b0_macs
    # Repeats are rounded *up* (a stage of 1 block becomes 2 at d = 1.2), so the real network grows
    # faster than α·β²·γ² ≈ 1.92 predicts: ≈ 2.57 here. Leaving out the depth or the resolution
    # scaling gives ≈ 1.72 / 1.71 and fails the lower bound; width scaling is pinned by the
    # torchvision EfficientNet-B2 parity test above.
    assert scaling.flops_multiplier < ratio < 1.5 * scaling.flops_multiplier


# ---------------------------------------------------------------------------- registry and errors


def test_unknown_architecture_suggests_close_names():
    with pytest.raises(DojoError, match="Did you mean 'resnet20'"):
        build_arch("resnet2")
    with pytest.raises(DojoError, match="Known architectures"):
        build_arch("vgg16")


def test_invalid_depths_are_rejected_with_the_rule():
    with pytest.raises(ValueError, match="6n\\+2"):
        cifar_resnet(21)
    with pytest.raises(ValueError, match="9n\\+2"):
        cifar_resnet(30, block="bottleneck")
    with pytest.raises(ValueError, match="6n\\+4"):
        WideResNet(depth=15)
    with pytest.raises(ValueError, match="6n\\+4"):
        densenet_bc(depth=99)
    with pytest.raises(ValueError, match="stem must be"):
        build_arch("mobilenet_v2", stem="tiny")
