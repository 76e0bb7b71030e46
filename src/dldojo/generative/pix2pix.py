"""`pix2pix-flowers`: image-to-image translation with a conditional GAN, edges → photo on flowers-5.

Curriculum: 深層生成モデル — 条件付き GAN による画像変換 (pix2pix), U-Net, PatchGAN (JDLA E資格). Paper: Isola, Zhu,
Zhou & Efros 2017, "Image-to-Image Translation with Conditional Adversarial Networks" (CVPR); the U-Net:
Ronneberger, Fischer & Brox 2015; SSIM: Wang, Bovik, Sheikh & Simoncelli 2004.

The task. A generator G maps an input image x (here: the edge map of a photo) to an output image G(x) (the
photo); a discriminator D(x, y) sees the input together with a photo y and tells real pairs from generated ones.
pix2pix's objective (Isola et al., Eq. 4) is the conditional GAN loss plus an L1 term:

    G* = arg min_G max_D L_cGAN(G, D) + λ L_L1(G),   λ = 100
    L_cGAN(G, D) = E_{x,y}[log D(x, y)] + E_x[log(1 − D(x, G(x)))],   L_L1(G) = E_{x,y} ‖y − G(x)‖₁

D minimises ½ · [BCE(D(x, y), 1) + BCE(D(x, G(x)), 0)] ("we divide the objective by 2 while optimizing D, which
slows down the rate at which D learns relative to G", §3.3); G minimises BCE(D(x, G(x)), 1) + λ · mean|y − G(x)|
(the non-saturating form −log D(x, G(x)) of Goodfellow et al.). D(x, y) is a map of patch logits, and every
BCE is the mean over patches and images. There is no noise vector z: the paper's only source of randomness is
dropout in G, applied at training *and* at test time (§3.1, "we provide noise only in the form of dropout").
`loss` selects the ablation of the paper's Table 1 / Fig. 4: "l1+cgan" (the objective above), "l1" (λ L1 only;
no discriminator is trained) and "cgan" (the cGAN term only). The full preset trains all three (the other two as
sub-runs, found or trained first) and shows input | L1 | cGAN | L1+cGAN | target on the same held-out images.

Networks (§3.2 and the appendix; "Ck" = 4×4 Convolution-Norm-ReLU with k filters, stride 2; "CDk" adds 50 %
dropout). Generator: a U-Net, i.e. an encoder-decoder whose layer i is concatenated to decoder layer n − i
(skip connections carry the input's low-level structure, here the edges, straight to the output).
  encoder C64-C128-C256-C512-C512-… down to 1×1 (log₂ of the image side layers: six at 64 px), LeakyReLU 0.2, no
    norm on the first layer (the paper) nor on the 1×1 innermost one (as the authors' code: normalising one value
    gives 0);
  decoder: 4×4 transposed convs (stride 2) mirroring the encoder's widths back up (512-512-256-128-64 at 64 px),
    ReLU, every one but the first reading [previous output, skip], dropout 0.5 after the first three (the
    lowest-resolution ones, the paper's "CD" layers); a last transposed conv to the 3 colour channels, tanh.
Discriminator: the 70×70 PatchGAN, C64-C128-C256-C512 (4×4 convs, strides 2, 2, 2, 1; LeakyReLU 0.2; no norm on
  C64) and a last 4×4 conv to one logit per patch. Receptive field, from the output back through (kernel k,
  stride s): r ← s·r + (k − s): 1 → 4 → 7 → 16 → 34 → 70 (`receptive_field`). Its 4 input channels are the edge
  map and the photo, concatenated. Weights ~ N(0, 0.02), norm scales ~ N(1, 0.02) (the paper's init).
Normalisation. The paper uses BatchNorm with batch size 1 (facades) and, at test time, "the statistics of the
test batch": with one image per batch that is instance normalisation (Ulyanov et al. 2016) with a learned scale
and shift, the same at training and test time. `norm = "instance"` (default) is exactly that for any batch size
(a test checks InstanceNorm2d(affine) = BatchNorm2d on one image); `norm = "batch"` normalises over the minibatch
and always uses batch statistics (the paper's test-time rule for larger batches). Neither has running
statistics, so train() / eval() only switches dropout.
Optimisation: Adam, lr 2e-4, β = (0.5, 0.999), one D step then one G step per minibatch (§3.3).

Data. flowers-5 (`dldojo.data.images`, 4,317 photos at 128×128, the loader's fixed stratified 80/20 split:
3,453 training, 864 held-out photos). Photos are area-downsampled to `image_size` (64 by default: the 2×2 box
mean, rounded to 8 bits); the input is the photo's edge map by one fixed operator, `edge_map`: Canny
(skimage.feature.canny, σ = `edge_sigma` = 2, hysteresis thresholds 0.1 / 0.2 of the gradient magnitude) on the
BT.709 luma of the downsampled photo (skimage.color.rgb2gray), computed once per photo when the data is loaded,
fed to G as one channel in {−1, 1} and drawn as black lines on white. Photos are scaled to [−1, 1] (G's tanh).
Training pairs are mirrored left-right with probability ½ (the paper's random jitter is mirroring plus a 286 →
256 random crop; the crop is left out). Why 64×64: on 2 AVX2 cores a U-Net + PatchGAN step costs several times
more per image at 128×128, and the full preset's three arms should fit ~30 minutes; the flowers' shapes and
colours are still recognisable at 64 px. What that does to the PatchGAN: at 64 px its output is a 6×6 map whose
patches (70 px windows, output (i, j)'s starting at 8·(i, j) − 23, clipped to the image) span 47–63 px of the
64, so D judges overlapping large crops, close to the whole image; at the paper's 256 px its 30×30 patches each
see 27 % of the side. `d_layers = 2` gives the
34×34 PatchGAN for comparison. The presets halve every width (g_width = d_width = 32: 7.3 M + 0.7 M
parameters instead of 29.2 M + 2.8 M) for CPU time; the layer pattern and the 70×70 receptive field are kept.

Metrics (held-out pairs; the reported model is the last one, the held-out set chooses nothing): with G's test-
time dropout on (seeded), outputs mapped to [0, 1], targets the 8-bit photos / 255:
  test_l1   mean |ŷ − y| over pixels and channels, on the [0, 1] scale (the training L1 is on [−1, 1]: 2× this);
  test_psnr mean over images of 10 log₁₀(1 / MSE) dB (skimage.metrics.peak_signal_noise_ratio, data_range 1);
  test_ssim mean over images of SSIM (Wang et al. 2004) with skimage.metrics.structural_similarity's defaults:
            7×7 uniform windows, K₁ = 0.01, K₂ = 0.03, sample covariances, mean over the valid windows and channels;
  test_gradient_ratio  Σ|∇ŷ| / Σ|∇y| (finite differences): < 1 smoother than the photos (the blur of L1), > 1
            more high-frequency content than they have (noise, artefacts);
  test_color_l / _a / _b  the intersection Σ min(p, q) of the histograms of L*, a*, b* (CIE Lab) over all outputs
            and all photos: 1 = the same colour distribution (the paper's Fig. 7 analysis: L1 narrows it);
  test_l1_shuffled_input  L1 when every held-out photo is predicted from another photo's edges: the gap to
            test_l1 is what G takes from its input.
`psnr` and `ssim` are written out below and checked against scikit-image in the tests. The baselines that know
nothing of the input: the mean training photo (test_l1_mean_image, …) and the per-pixel median training photo
(test_l1_median_image, …), the best constant image for L1. Edges say little about colour, so the L1 of any
model stays close to these; the table and the pictures tell the arms apart.

Presets. smoke: 32 px, widths 8, 64 pairs (seconds; the tests). quick: the CPU widths, as many epochs (at most 4)
as fit 1.5 minutes with the evaluations (`engine.budget`), no ablation: it shows the start of training, where
the adversarial game is still settling and the L1 is above the input-blind baselines. full: 5 epochs per arm and
the three arms. Measured (`python benchmarks/run.py pix2pix-flowers --preset quick|full`, seed 0, 2 threads, AMD
EPYC Zen 2 with AVX2 only, commit 0c06590; results/pix2pix-flowers-{quick,full}.json), held-out L1 / PSNR / SSIM
on 864 pairs: quick (0.6 epochs, 74 s) 0.2167 / 11.81 dB / 0.102; full (1,296 s) L1 only 0.1947 / 12.92 / 0.211
(gradient ratio 0.49: blurred), cGAN only 0.3227 / 8.32 / 0.031 (4.15: artefacts), L1 + cGAN 0.2109 / 11.95 /
0.168 (1.10: as sharp as the photos); mean training photo 0.2062 / 12.66 / 0.184, median photo L1 0.2031.

Reference numbers: the paper reports no edges → flowers task; its numbers (FCN scores on Cityscapes, AMT
perceptual studies) are not comparable. Its qualitative finding (§4.2, Fig. 4), which the ablation puts to the
test here: L1 alone gives reasonable but blurry results, the cGAN alone sharper ones with visual artefacts, and
both together reduce the artefacts.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from types import SimpleNamespace
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dldojo.data import images as image_data
from dldojo.engine import budget
from dldojo.engine.errors import DojoError
from dldojo.engine.registry import Experiment, register
from dldojo.engine.run import RunContext
from dldojo.generative.gan import Minibatches

LOSSES = ("l1+cgan", "l1", "cgan")
SHOW_SEED = 0  # which held-out photos the figures show: the same for every run, seed and ablation arm


@dataclasses.dataclass
class Pix2PixConfig:
    RANGES: ClassVar[dict] = {
        "image_size": (32, 128), "edge_sigma": (0.1, 10.0), "g_width": (1, 512), "d_width": (1, 512),
        "d_layers": (1, 5), "dropout": (0.0, 0.99), "lambda_l1": (0.0, 1e4), "epochs": (0.01, 10**4),
        "batch_size": (1, 4096), "lr": (1e-7, 1.0), "beta1": (0.0, 0.999), "beta2": (0.0, 0.9999),
        "train_images": (0, 3453), "test_images": (0, 864), "eval_every": (0, 10**4), "eval_images": (1, 864),
        "show_images": (1, 32), "log_points": (1, 10**5), "time_budget_minutes": (0, 10**5)}
    """Allowed (low, high) of the numeric fields, checked before anything is created (`engine.config`)."""

    loss: Literal["l1+cgan", "l1", "cgan"] = "l1+cgan"
    """G's objective: l1+cgan (the paper's), l1 (λ·L1 only, no discriminator) or cgan (the cGAN term only)."""
    lambda_l1: float = 100.0
    """λ, the weight of the L1 term (the paper: 100)."""
    image_size: int = 64
    """Side of the images the model translates (a power of 2; the 128×128 photos are area-downsampled to it)."""
    edge_sigma: float = 2.0
    """σ of the Gaussian smoothing in the Canny edge detector that makes the input edge maps."""
    g_width: int = 64
    """Channels of the U-Net's first encoder layer (the paper: 64), doubled per layer up to 8×."""
    d_width: int = 64
    """Channels of the PatchGAN's first layer (the paper: 64), doubled per layer up to 8×."""
    d_layers: int = 3
    """PatchGAN depth after its first layer: 3 = C64-C128-C256-C512, the 70×70 one; 2 = 34×34, 1 = 16×16."""
    norm: Literal["instance", "batch"] = "instance"
    """instance: per image (the paper's BatchNorm at batch size 1); batch: over the minibatch, always batch stats."""
    dropout: float = 0.5
    """Dropout rate of the first three decoder layers (the paper: 0.5; 0 turns G's only noise off)."""
    test_dropout: bool = True
    """Keep dropout on at test time, as the paper does (seeded, so the metrics repeat); false = off."""
    flip: bool = True
    """Mirror each training pair left-right with probability ½ (the paper's jitter without its random crop)."""
    epochs: float = 5.0
    """Passes over the training pairs (fractions allowed); with a time budget, the most that may be trained."""
    batch_size: int = 4
    """Pairs per D and G step (the paper: 1 for facades, 4 for edges → shoes / handbags)."""
    lr: float = 2e-4
    """Adam learning rate of G and D (the paper: 2e-4)."""
    beta1: float = 0.5
    """Adam β₁ of G and D (the paper: 0.5)."""
    beta2: float = 0.999
    """Adam β₂ of G and D (the paper: 0.999)."""
    train_images: int = 0
    """flowers training photos used (class-stratified subset; 0 = all 3,453)."""
    test_images: int = 0
    """Held-out photos the final metrics are computed on (class-stratified subset; 0 = all 864)."""
    eval_every: float = 1.0
    """Epochs between held-out evaluations during training (on `eval_images` pairs); 0 = only at the end."""
    eval_images: int = 200
    """Held-out pairs of each evaluation during training (a fixed random subset of the held-out set)."""
    show_images: int = 8
    """Held-out pairs drawn in the input | output | target figures (fixed ones, the same in every run and arm)."""
    log_points: int = 200
    """Points of the training curves (losses, D's outputs): means over windows of iterations."""
    time_budget_minutes: float = 0.0
    """> 0: train as many epochs (at most `epochs`) as fit this many minutes on this machine, timed on a few
    iterations (engine/budget.py); ablation sub-runs get their own budget each. 0 = train exactly `epochs`."""
    ablation_runs: bool = False
    """With loss = l1+cgan: find or train the loss = l1 and loss = cgan runs (same settings otherwise) and report
    the three side by side (the full preset)."""

    def validate(self) -> None:
        if self.loss not in LOSSES:
            raise DojoError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.image_size & (self.image_size - 1):
            raise DojoError(f"image_size must be a power of 2 (32, 64 or 128), got {self.image_size}")
        if self.image_size < 3 * 2 ** self.d_layers:
            raise DojoError(f"image_size {self.image_size} is too small for a PatchGAN with d_layers = "
                            f"{self.d_layers}: it needs at least {3 * 2 ** self.d_layers} px; lower d_layers")


# ----- the networks -----

def norm_layer(kind: str, channels: int) -> nn.Module:
    """instance: InstanceNorm2d with a learned scale and shift (= BatchNorm on one image); batch: BatchNorm2d
    that always uses the statistics of the batch it sees (the paper's test-time rule), no running averages."""
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(channels, track_running_stats=False)
    raise DojoError(f"norm must be instance or batch, got {kind!r}")


class UNetGenerator(nn.Module):
    """G(x): encoder e_1 … e_n (4×4 convs, stride 2, down to 1×1), decoder d_1 … d_{n−1} (4×4 transposed convs,
    stride 2), d_j = ConvT(ReLU([d_{j−1}, e_{n−j}])) with d_0 = e_n (d_1 reads e_n alone), and the output
    G(x) = tanh(ConvT(ReLU([d_{n−1}, e_1])))."""

    def __init__(self, cfg: Pix2PixConfig, in_channels: int = 1, out_channels: int = 3):
        super().__init__()
        depth = int(math.log2(cfg.image_size))  # 64 px: 64 → 32 → 16 → 8 → 4 → 2 → 1, six encoder layers
        widths = [cfg.g_width * min(2 ** i, 8) for i in range(depth)]
        self.encoder = nn.ModuleList()
        previous = in_channels
        for i, width in enumerate(widths):
            normed = 0 < i < depth - 1  # no norm on the first layer (the paper) nor on the 1×1 innermost one
            self.encoder.append(nn.Sequential(nn.Conv2d(previous, width, 4, 2, 1, bias=not normed),
                                              *([norm_layer(cfg.norm, width)] if normed else [])))
            previous = width
        self.decoder = nn.ModuleList()
        for j, i in enumerate(reversed(range(depth - 1))):  # d_1 … d_{n−1} produce widths[n−2] … widths[0]
            inputs = widths[i + 1] * (1 if j == 0 else 2)      # d_1 reads e_n alone; the others [d_{j−1}, e_{n−j}]
            self.decoder.append(nn.Sequential(nn.ConvTranspose2d(inputs, widths[i], 4, 2, 1, bias=False),
                                              norm_layer(cfg.norm, widths[i]),
                                              *([nn.Dropout(cfg.dropout)] if j < 3 else [])))
        self.output = nn.ConvTranspose2d(2 * widths[0], out_channels, 4, 2, 1)
        # what `sample_images` needs to rebuild the held-out pairs of a reloaded run (not weights)
        self.image_size, self.edge_sigma, self.test_dropout = cfg.image_size, cfg.edge_sigma, cfg.test_dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x
        for i, layer in enumerate(self.encoder):  # e_i = Norm(Conv(LeakyReLU(e_{i−1}))), e_0 = x (no activation)
            h = layer(h if i == 0 else F.leaky_relu(h, 0.2))
            skips.append(h)
        for j, layer in enumerate(self.decoder):  # d_j = Dropout(Norm(ConvT(ReLU([d_{j−1}, e_{n−j}]))))
            h = layer(F.relu(h if j == 0 else torch.cat([h, skips[-1 - j]], 1)))
        return torch.tanh(self.output(F.relu(torch.cat([h, skips[0]], 1))))


class PatchDiscriminator(nn.Module):
    """D(x, y): [x, y] → C64 (no norm) → C128 → C256 → C512 (stride 1) → 1 logit per 70×70 patch, LeakyReLU 0.2."""

    def __init__(self, cfg: Pix2PixConfig, in_channels: int = 1 + 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, cfg.d_width, 4, 2, 1), nn.LeakyReLU(0.2)]
        previous = cfg.d_width
        for n in range(1, cfg.d_layers + 1):
            width = cfg.d_width * min(2 ** n, 8)
            stride = 2 if n < cfg.d_layers else 1
            layers += [nn.Conv2d(previous, width, 4, stride, 1, bias=False), norm_layer(cfg.norm, width),
                       nn.LeakyReLU(0.2)]
            previous = width
        layers.append(nn.Conv2d(previous, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, y], 1))


def receptive_field(layers: list[tuple[int, int]]) -> int:
    """Side of the input window one output pixel sees through convs of (kernel k, stride s), input to output:
    from the output back, r ← s·r + (k − s), starting at r = 1."""
    r = 1
    for k, s in reversed(layers):
        r = s * r + (k - s)
    return r


def conv_layers(D: PatchDiscriminator) -> list[tuple[int, int]]:
    return [(m.kernel_size[0], m.stride[0]) for m in D.modules() if isinstance(m, nn.Conv2d)]


def init_weights(module: nn.Module, generator: torch.Generator) -> None:
    """The paper's init: conv weights ~ N(0, 0.02); norm scales ~ N(1, 0.02); biases 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, 0.02, generator=generator)
        elif isinstance(m, nn.InstanceNorm2d | nn.BatchNorm2d) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02, generator=generator)
        if getattr(m, "bias", None) is not None:
            nn.init.zeros_(m.bias)


def build_model(cfg: Pix2PixConfig, run: Any = None) -> UNetGenerator:
    """The generator (what a finished run is reloaded as; `dldojo sample` translates held-out edges with it)."""
    return UNetGenerator(cfg)


# ----- the losses -----

def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """½ · [BCE(D(x, y), 1) + BCE(D(x, G(x)), 0)] = −½ · mean[log D(x, y) + log(1 − D(x, G(x)))] over patches:
    D's ascent of L_cGAN, halved as in the paper (§3.3)."""
    return 0.5 * (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                  + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def generator_loss(fake_logits: torch.Tensor | None, fake: torch.Tensor, target: torch.Tensor, loss: str,
                   lambda_l1: float) -> tuple[torch.Tensor, dict[str, float]]:
    """G's objective and its terms: cGAN = BCE(D(x, G(x)), 1) = −mean log D(x, G(x)) (non-saturating), L1 =
    mean|y − G(x)| (images in [−1, 1]); l1+cgan: cGAN + λ·L1, l1: λ·L1, cgan: cGAN."""
    if loss not in LOSSES:
        raise DojoError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    l1 = (target - fake).abs().mean()
    terms = {"l1": l1.item()}
    total = lambda_l1 * l1 if loss != "cgan" else 0.0
    if loss != "l1":
        gan = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
        terms["gan"] = gan.item()
        total = total + gan
    return total, terms


# ----- data: paired (edges, photo) images -----

def edge_map(photos: torch.Tensor, sigma: float) -> torch.Tensor:
    """The fixed edge operator: uint8 photos (N, 3, H, W) → bool edges (N, 1, H, W), Canny (σ, hysteresis
    thresholds 0.1 and 0.2 of the gradient magnitude of the [0, 1] image) on the BT.709 luma of each photo."""
    from skimage.color import rgb2gray
    from skimage.feature import canny

    luma = rgb2gray(photos.permute(0, 2, 3, 1).numpy() / 255.0)  # (N, H, W): 0.2125 R + 0.7154 G + 0.0721 B
    edges = [canny(image, sigma=sigma, low_threshold=0.1, high_threshold=0.2) for image in luma]
    return torch.from_numpy(np.stack(edges))[:, None]


def downsample(images: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (N, H, W, 3) → uint8 (N, 3, size, size): the mean of each (H/size)² block, rounded."""
    x = image_data.as_uint8_tensor(images).permute(0, 3, 1, 2).float()
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="area")
    return x.round().clamp(0, 255).to(torch.uint8)


@dataclasses.dataclass
class Pairs:
    """Edge maps (N, 1, H, W) bool, photos (N, 3, H, W) uint8, flower classes (N,)."""

    edges: torch.Tensor
    photos: torch.Tensor
    labels: torch.Tensor
    _colours: dict | None = dataclasses.field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.photos)

    def colours(self) -> dict[str, np.ndarray]:
        """The photos' L*, a*, b* histograms (`lab_histograms`), computed once."""
        if self._colours is None:
            self._colours = lab_histograms(self.photos.float() / 255)
        return self._colours


def make_pairs(split: image_data.ImageSplit, size: int, sigma: float) -> Pairs:
    photos = downsample(split.images, size)
    return Pairs(edge_map(photos, sigma), photos, torch.as_tensor(split.labels))


def load_pairs(cfg: Pix2PixConfig) -> tuple[Pairs, Pairs]:
    """(training, held-out) pairs from the flowers loader's fixed stratified 80/20 split."""
    train, test = image_data.load("flowers")
    if cfg.image_size > train.images.shape[1]:
        raise DojoError(f"image_size {cfg.image_size} exceeds the photos' {train.images.shape[1]} px; lower it")
    train, test = train.head(cfg.train_images, seed=1), test.head(cfg.test_images, seed=2)
    if cfg.batch_size > len(train):
        raise DojoError(f"batch_size {cfg.batch_size} exceeds the {len(train)} training photos; lower it")
    return make_pairs(train, cfg.image_size, cfg.edge_sigma), make_pairs(test, cfg.image_size, cfg.edge_sigma)


def as_input(edges: torch.Tensor) -> torch.Tensor:
    """bool edges → G's input in {−1, 1} (edge = 1)."""
    return edges.float() * 2 - 1


def as_target(photos: torch.Tensor) -> torch.Tensor:
    """uint8 photos → [−1, 1] (the range of G's tanh)."""
    return photos.float() / 127.5 - 1


def edges_picture(edges: torch.Tensor) -> torch.Tensor:
    """bool edges (N, 1, H, W) → RGB pictures in [0, 1]: black lines on white."""
    return (1 - edges.float()).expand(-1, 3, -1, -1)


def derangement(n: int) -> torch.Tensor:
    """A fixed permutation without fixed points (one random cycle, SHOW_SEED): pairs every held-out photo with
    another photo's edges."""
    cycle = torch.randperm(n, generator=torch.Generator().manual_seed(SHOW_SEED))
    partner = torch.empty_like(cycle)
    partner[cycle] = cycle.roll(1)
    return partner


def fixed_subset(pairs: Pairs, k: int) -> Pairs:
    """k held-out pairs drawn at random with SHOW_SEED, not with the run's seed: the same in every run and arm
    (a smaller k gives the first of the same ones)."""
    index = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(SHOW_SEED))[:k]
    return Pairs(pairs.edges[index], pairs.photos[index], pairs.labels[index])


# ----- translation and the held-out metrics -----

@torch.no_grad()
def translate(G: UNetGenerator, edges: torch.Tensor, dropout_seed: int | None, batch_size: int = 64) -> torch.Tensor:
    """G(x) in [0, 1] for bool edge maps. With `dropout_seed` G runs as in training (dropout on, its masks from
    that seed: the paper's test-time noise), else with dropout off; either way the caller's random state is kept."""
    was_training = G.training
    G.train(dropout_seed is not None)
    outputs = []
    with torch.random.fork_rng(devices=[]):
        if dropout_seed is not None:
            torch.manual_seed(dropout_seed)
        for i in range(0, len(edges), batch_size):
            outputs.append(G(as_input(edges[i:i + batch_size])))
    G.train(was_training)
    return ((torch.cat(outputs) + 1) / 2).clamp(0, 1)


def psnr(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per image (N,): 10 log₁₀(1 / MSE) dB for images in [0, 1] (skimage's peak_signal_noise_ratio, data_range 1)."""
    mse = (prediction.double() - target.double()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1 / mse)


def ssim(prediction: torch.Tensor, target: torch.Tensor, window: int = 7, k1: float = 0.01,
         k2: float = 0.03) -> torch.Tensor:
    """Per image (N,): the mean over channels and valid 7×7 windows of SSIM (Wang et al. 2004) for images in [0, 1],
    SSIM = (2 μ_x μ_y + C₁)(2 σ_xy + C₂) / ((μ_x² + μ_y² + C₁)(σ_x² + σ_y² + C₂)), C_i = (K_i · 1)², with
    uniform windows and sample (co)variances, i.e. skimage.metrics.structural_similarity's defaults."""
    x, y = prediction, target  # float32 in the runs, float64 in the parity test
    c1, c2 = k1 ** 2, k2 ** 2

    def mean(image: torch.Tensor) -> torch.Tensor:  # the mean over every 7×7 window inside the image
        return F.avg_pool2d(image, window, stride=1)

    mu_x, mu_y = mean(x), mean(y)
    unbiased = window ** 2 / (window ** 2 - 1)
    var_x = unbiased * (mean(x * x) - mu_x ** 2)
    var_y = unbiased * (mean(y * y) - mu_y ** 2)
    cov_xy = unbiased * (mean(x * y) - mu_x * mu_y)
    s = (2 * mu_x * mu_y + c1) * (2 * cov_xy + c2) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(1)


def gradient_sum(images: torch.Tensor) -> float:
    """Σ |∂x| + |∂y| over horizontal and vertical neighbour differences."""
    return ((images[..., 1:] - images[..., :-1]).abs().sum()
            + (images[..., 1:, :] - images[..., :-1, :]).abs().sum()).item()


LAB_BINS = {"l": (0.0, 100.0, 50), "a": (-110.0, 110.0, 55), "b": (-110.0, 110.0, 55)}  # (low, high, bins)


def lab_histograms(images: torch.Tensor) -> dict[str, np.ndarray]:
    """The distributions of L*, a* and b* (CIE Lab, skimage.color.rgb2lab) over every pixel of the images,
    as normalised histograms with the bins of LAB_BINS."""
    from skimage.color import rgb2lab

    if images.stride(0) == 0:  # one image repeated (`expand`, a constant baseline): the histograms of that one
        images = images[:1]

    lab = rgb2lab(images.permute(0, 2, 3, 1).double().numpy(), channel_axis=-1).reshape(-1, 3)
    return {name: np.histogram(np.clip(lab[:, c], low, high), bins=bins, range=(low, high))[0] / len(lab)
            for c, (name, (low, high, bins)) in enumerate(LAB_BINS.items())}


def histogram_intersection(p: np.ndarray, q: np.ndarray) -> float:
    """Σ_i min(p_i, q_i) of two normalised histograms: 1 when the distributions agree, 0 when disjoint."""
    return float(np.minimum(p, q).sum())


def image_metrics(prediction: torch.Tensor, target: torch.Tensor,
                  target_colours: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    """Images in [0, 1]: L1 (mean over pixels), PSNR and SSIM (means over images), gradient ratio, and how well
    the outputs' colours match the targets' over the whole set: the intersections of their L*, a*, b*
    histograms (the paper's Fig. 7 analysis of what the cGAN term does to the colour distribution)."""
    metrics = {"l1": (prediction - target).abs().mean().item(), "psnr": psnr(prediction, target).mean().item(),
               "ssim": ssim(prediction, target).mean().item(),
               "gradient_ratio": gradient_sum(prediction) / max(gradient_sum(target), 1e-12)}
    ours, theirs = lab_histograms(prediction), target_colours or lab_histograms(target)
    metrics.update({f"color_{name}": histogram_intersection(ours[name], theirs[name]) for name in LAB_BINS})
    return metrics


def evaluate(G: UNetGenerator, pairs: Pairs, dropout_seed: int | None) -> dict[str, float]:
    return image_metrics(translate(G, pairs.edges, dropout_seed), pairs.photos.float() / 255, pairs.colours())


@torch.no_grad()
def sample_images(model: UNetGenerator, n: int, *, label: int | None, generator: torch.Generator) -> torch.Tensor:
    """n held-out flowers translated by G: each image is one row input edges | G(edges) | photo, (n, 3, H, 3H) in
    [0, 1]. The n photos are drawn from the held-out split (never trained on) by `generator`, which also seeds
    G's test-time dropout; `label` (0 daisy, 1 dandelion, 2 rose, 3 sunflower, 4 tulip) restricts them to one
    class (G itself is not conditioned on the class). The family's convention for `dldojo sample`."""
    _, test = image_data.load("flowers")
    candidates = torch.arange(len(test))
    if label is not None:
        if not 0 <= label < len(test.classes):
            raise DojoError(f"label selects the flower class of the held-out photos: 0..{len(test.classes) - 1} "
                            f"({', '.join(test.classes)}), got {label}")
        candidates = candidates[torch.as_tensor(test.labels) == label]
    if n > len(candidates):
        raise DojoError(f"only {len(candidates)} held-out photos to translate; ask for at most that many (-n)")
    index = candidates[torch.randperm(len(candidates), generator=generator)[:n]].sort().values.numpy()
    pairs = make_pairs(test.subset(index), model.image_size, model.edge_sigma)
    dropout_seed = int(torch.randint(2 ** 31, (1,), generator=generator)) if model.test_dropout else None
    output = translate(model, pairs.edges, dropout_seed)
    return torch.cat([edges_picture(pairs.edges), output, pairs.photos.float() / 255], dim=-1)


# ----- one training iteration: a D step, then a G step -----

def train_iteration(G: UNetGenerator, D: PatchDiscriminator | None, opt_g: torch.optim.Optimizer,
                    opt_d: torch.optim.Optimizer | None, batches: Minibatches, flips: torch.Generator,
                    cfg: Pix2PixConfig) -> dict[str, float]:
    """One minibatch of pairs: D descends ½[BCE(D(x, y), 1) + BCE(D(x, G(x)), 0)], then G descends its loss.
    Returns the losses, G's terms and D's mean outputs on real and generated pairs."""
    edges, photos = batches()
    x, y = as_input(edges), as_target(photos)
    if cfg.flip:  # mirror a random half of the pairs, input and target together
        mirror = (torch.rand(len(x), generator=flips) < 0.5)[:, None, None, None]
        x, y = torch.where(mirror, x.flip(-1), x), torch.where(mirror, y.flip(-1), y)
    fake = G(x)  # dropout on: G's noise
    out: dict[str, float] = {}

    if D is not None:  # 1. D step: real pairs → 1, generated pairs → 0 (G's output detached)
        real_logits, fake_logits = D(x, y), D(x, fake.detach())
        loss_d = discriminator_loss(real_logits, fake_logits)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        out.update(loss_d=loss_d.item(), d_real=torch.sigmoid(real_logits).mean().item(),
                   d_fake=torch.sigmoid(fake_logits).mean().item())

    # 2. G step: D is only differentiated through (its parameters get no gradients)
    if D is not None:
        D.requires_grad_(False)
        fake_logits = D(x, fake)
        D.requires_grad_(True)
    else:
        fake_logits = None
    loss_g, terms = generator_loss(fake_logits, fake, y, cfg.loss, cfg.lambda_l1)
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    out.update(loss_g=loss_g.item(), **{f"g_{k}": v for k, v in terms.items()})
    return out


def budgeted_epochs(ctx: RunContext, cfg: Pix2PixConfig, G: UNetGenerator, D: PatchDiscriminator | None,
                    train: Pairs, test: Pairs, eval_pairs: Pairs) -> float:
    """The epochs (≤ cfg.epochs) that fit cfg.time_budget_minutes: iterations timed on throwaway copies of G, D and
    their optimisers, the evaluations (every `eval_every` epochs and the final one on all held-out pairs) too."""
    g, d = copy.deepcopy(G), copy.deepcopy(D)
    opt_g = torch.optim.Adam(g.parameters(), cfg.lr, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(d.parameters(), cfg.lr, betas=(cfg.beta1, cfg.beta2)) if d is not None else None
    trial = Minibatches(train.edges, train.photos, cfg.batch_size, torch.Generator().manual_seed(0))
    flips = torch.Generator().manual_seed(0)
    step_seconds = budget.seconds_per_call(lambda: train_iteration(g, d, opt_g, opt_d, trial, flips, cfg))
    probe = Pairs(test.edges[:64], test.photos[:64], test.labels[:64])
    per_pair = budget.seconds_per_call(lambda: evaluate(g, probe, 0), calls=1) / len(probe)
    elapsed = ctx.wall_seconds  # loading, edge maps and this probe
    iterations_per_epoch = len(train) // cfg.batch_size
    epochs = budget.epochs_within(60 * cfg.time_budget_minutes, elapsed, cap=cfg.epochs,
                                  epoch_seconds=step_seconds * iterations_per_epoch,
                                  eval_seconds=per_pair * len(eval_pairs), eval_every=cfg.eval_every,
                                  final_seconds=per_pair * (2 * len(test) + len(eval_pairs)))
    if not ctx.quiet:
        print(f"[dldojo] time budget {cfg.time_budget_minutes:g} min: {epochs:g} of at most {cfg.epochs:g} epochs "
              f"({step_seconds * 1000:.0f} ms per iteration of {cfg.batch_size} pairs, "
              f"{per_pair * 1000:.1f} ms per held-out pair)", flush=True)
    return epochs


# ----- figures and tables -----

OBJECTIVES = {"l1+cgan": "L1 + cGAN (pix2pix)", "l1": "L1 only (λ·L1)", "cgan": "cGAN only"}


def table_row(name: str, m: dict[str, float]) -> dict[str, str]:
    return {"objective": name, "held-out L1": f"{m['l1']:.4f}", "PSNR (dB)": f"{m['psnr']:.2f}",
            "SSIM": f"{m['ssim']:.4f}", "gradient ratio": f"{m['gradient_ratio']:.3f}",
            "colour L* / a* / b*": f"{m['color_l']:.3f} / {m['color_a']:.3f} / {m['color_b']:.3f}"}


def picture_row(images: torch.Tensor) -> np.ndarray:
    """(k, 3, H, W) in [0, 1] → one (H, k·W + k − 1, 3) picture with grey lines between the images."""
    from torchvision.utils import make_grid

    grid = make_grid(images, nrow=len(images), padding=1, pad_value=0.75)  # grey: the edge pictures are white
    return grid[:, 1:-1, 1:-1].permute(1, 2, 0).numpy()


def rows_figure(rows: list[tuple[str, torch.Tensor]], title: str):
    """A figure of labelled rows of images (k, 3, H, W) each."""
    import matplotlib.pyplot as plt

    k = len(rows[0][1])
    fig, axes = plt.subplots(len(rows), 1, figsize=(1.25 * k + 1.2, 1.3 * len(rows) + 0.4), squeeze=False)
    for ax, (name, images) in zip(axes[:, 0], rows):
        ax.imshow(picture_row(images), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(name, fontsize=8, rotation=0, ha="right", va="center")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def save_figures(ctx: RunContext, cfg: Pix2PixConfig, s: SimpleNamespace, shown: Pairs, eval_pairs: Pairs,
                 mean_photo: dict[str, float], output: torch.Tensor, arms: dict[str, torch.Tensor]) -> None:
    import matplotlib.pyplot as plt

    target = shown.photos.float() / 255
    fig = rows_figure([("input (edges)", edges_picture(shown.edges)), ("output G(x)", output), ("target", target)],
                      f"held-out pairs: input | output | target (loss = {cfg.loss}, {cfg.image_size} px)")
    ctx.save_figure(fig, "translations")

    if arms:  # the ablation on the same held-out inputs
        rows = [("input (edges)", edges_picture(shown.edges))]
        rows += [({"l1": "L1", "cgan": "cGAN", "l1+cgan": "L1 + cGAN"}[k], v) for k, v in arms.items()]
        fig = rows_figure(rows + [("target", target)], "ablation of the objective (the paper's Fig. 4): "
                                                       "the same held-out inputs, each model with its own G")
        ctx.save_figure(fig, "ablation")

    if s.evals:  # outputs for the first four shown inputs at every evaluation (up to 6 shown)
        picks = s.evals if len(s.evals) <= 6 else [s.evals[round(i)] for i in np.linspace(0, len(s.evals) - 1, 6)]
        rows = [("input", edges_picture(shown.edges[:4]))]
        rows += [(f"epoch {r['epoch']:g}", r["outputs"].float() / 255) for r in picks] + [("target", target[:4])]
        ctx.save_figure(rows_figure(rows, "outputs for the same held-out inputs during training"), "outputs_by_epoch")

    # training curves (means over windows of iterations): G's L1 term, and with a discriminator its game
    curve = {key: [p.get(key, math.nan) for p in s.curve]
             for key in ("iteration", "loss_d", "g_gan", "g_l1", "d_real", "d_fake")}
    uses_d = cfg.loss != "l1"
    fig, axes = plt.subplots(1, 3 if uses_d else 1, figsize=(15 if uses_d else 5.5, 3.6), squeeze=False)
    axes = axes[0]
    axes[0].plot(curve["iteration"], curve["g_l1"], label="mean|y − G(x)|, images in [−1, 1]")
    axes[0].set(xlabel="iteration", ylabel="L1", title="G's L1 term" + (
        f" (× λ = {cfg.lambda_l1:g} in G's loss)" if cfg.loss != "cgan" else " (watched, not trained on)"))
    if uses_d:
        axes[1].plot(curve["iteration"], curve["loss_d"], label="D: ½[BCE(D(x, y), 1) + BCE(D(x, G(x)), 0)]")
        axes[1].plot(curve["iteration"], curve["g_gan"], label="G: BCE(D(x, G(x)), 1)")
        axes[1].axhline(math.log(2), color="grey", ls=":", lw=1, label="both at D ≡ ½: log 2")
        axes[1].set(xlabel="iteration", ylabel="loss", title="adversarial terms")
        axes[2].plot(curve["iteration"], curve["d_real"], label="D(x, y), real pairs")
        axes[2].plot(curve["iteration"], curve["d_fake"], label="D(x, G(x)), generated (D step)")
        axes[2].axhline(0.5, color="grey", ls=":", lw=1)
        axes[2].set(xlabel="iteration", ylabel="mean patch output", ylim=(0, 1), title="discriminator outputs")
    for a in axes:
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    fig.tight_layout()
    ctx.save_figure(fig, "losses")

    # held-out metrics at every evaluation (the same `eval_images` pairs each time), the mean photo's for scale
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.2))
    for a, (key, name, unit) in zip(axes, (("l1", "L1", " ([0, 1])"), ("psnr", "PSNR", " (dB)"), ("ssim", "SSIM", ""),
                                           ("gradient_ratio", "gradient ratio", " Σ|∇ŷ| / Σ|∇y|"))):
        a.plot([r["epoch"] for r in s.evals], [r[key] for r in s.evals], marker="o", label="G")
        a.axhline(mean_photo[key], color="C1", ls="--", lw=1, label="mean training photo")
        a.set(xlabel="epoch", ylabel=name + unit, title=f"held-out {name}, {len(eval_pairs)} pairs")
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    axes[3].axhline(1.0, color="grey", ls=":", lw=1)
    fig.tight_layout()
    ctx.save_figure(fig, "held_out_metrics")


# ----- the run -----

def run(ctx: RunContext, cfg: Pix2PixConfig) -> dict[str, float]:
    # 1. data: (edges, photo) pairs of the fixed split; the held-out pairs that evaluations and figures use
    started = time.perf_counter()
    train, test = load_pairs(cfg)
    data_seconds = time.perf_counter() - started
    eval_pairs, shown = fixed_subset(test, cfg.eval_images), fixed_subset(test, cfg.show_images)

    # 2. models, optimisers, the declared loop state
    G = UNetGenerator(cfg)
    D = PatchDiscriminator(cfg) if cfg.loss != "l1" else None  # loss = l1: no adversary at all
    init = ctx.rng("init", "torch")
    for module in (G, D):
        if module is not None:
            init_weights(module, init)
    opt_g = torch.optim.Adam(G.parameters(), cfg.lr, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(D.parameters(), cfg.lr, betas=(cfg.beta1, cfg.beta2)) if D is not None else None
    batches = Minibatches(train.edges, train.photos, cfg.batch_size, ctx.rng("data", "torch"))
    flips = ctx.rng("flip", "torch")
    s = SimpleNamespace(G=G, D=D, opt_g=opt_g, opt_d=opt_d, batches=batches, window={}, curve=[], evals=[],
                        train_seconds=0.0, eval_seconds=0.0)
    iterations_per_epoch = len(train) // cfg.batch_size
    epochs = cfg.epochs
    if cfg.time_budget_minutes:
        epochs = ctx.decide("epochs", lambda: budgeted_epochs(ctx, cfg, G, D, train, test, eval_pairs))
    total = max(1, math.ceil(epochs * iterations_per_epoch))
    eval_at = {min(total, max(1, round(e * iterations_per_epoch)))
               for e in (np.arange(cfg.eval_every, epochs, cfg.eval_every) if cfg.eval_every else [])} | {total}
    log_every = max(1, math.ceil(total / cfg.log_points))
    ctx.add_facts(epochs=epochs, iterations=total, train_pairs=len(train), test_pairs=len(test),
                  generator_params=sum(p.numel() for p in G.parameters()),
                  discriminator_params=sum(p.numel() for p in D.parameters()) if D is not None else 0,
                  patch_receptive_field=receptive_field(conv_layers(D)) if D is not None else 0,
                  edge_pixel_fraction=round(train.edges.float().mean().item(), 4), resolution=cfg.image_size)

    # 3. the loop: a D step and a G step per minibatch; held-out metrics every `eval_every` epochs
    step = ctx.restore(s)
    bar = ctx.progress(total, initial=step, unit="it")
    clock = time.perf_counter()
    while step < total:
        G.train()
        out = train_iteration(G, D, opt_g, opt_d, batches, flips, cfg)
        ctx.check_finite(out["loss_g"] + out.get("loss_d", 0.0), step, hint="Lower lr.")
        for key, value in {**out, "n": 1}.items():
            s.window[key] = s.window.get(key, 0.0) + value
        step += 1
        if step % log_every == 0 or step == total:  # means over the window since the last point
            n = s.window.pop("n")
            point = {key: value / n for key, value in s.window.items()}
            s.curve.append({"iteration": step, **point})
            s.window = {}
            ctx.log(step, **{f"train_{key}": value for key, value in point.items()})
            bar.set_postfix({key: f"{point[key]:.3f}" for key in ("g_l1", "loss_d") if key in point})

        if step in eval_at:  # metrics on `eval_images` fixed held-out pairs, the outputs for four fixed inputs
            s.train_seconds += time.perf_counter() - clock
            clock = time.perf_counter()
            metrics = evaluate(G, eval_pairs, ctx.seed_for(f"dropout/{step}") if cfg.test_dropout else None)
            outputs = translate(G, shown.edges[:4], ctx.seed_for("dropout/shown") if cfg.test_dropout else None)
            s.evals.append({"iteration": step, "epoch": round(step / iterations_per_epoch, 2), **metrics,
                            "outputs": (outputs * 255).round().to(torch.uint8)})
            ctx.log(step, epoch=step / iterations_per_epoch, **{f"eval_{k}": v for k, v in metrics.items()})
            s.eval_seconds += time.perf_counter() - clock
            clock = time.perf_counter()
        bar.update(1)
        ctx.tick(step, s)
    bar.close()
    s.train_seconds += time.perf_counter() - clock

    # 4. the last model on every held-out pair; the same photos from other photos' edges (does G use its input?);
    #    the input-blind baselines: the mean and the per-pixel median training photo (the best constant for L1)
    clock = time.perf_counter()
    shown_seed = ctx.seed_for("dropout/shown") if cfg.test_dropout else None
    test_seed = ctx.seed_for("dropout/test") if cfg.test_dropout else None
    final = evaluate(G, test, test_seed)
    targets = test.photos.float() / 255
    shuffled = translate(G, test.edges[derangement(len(test))], test_seed)
    photos = train.photos.float() / 255
    constants = {"mean": photos.mean(0, keepdim=True), "median": photos.median(0, keepdim=True).values}
    eval_targets = eval_pairs.photos.float() / 255
    baselines = {k: image_metrics(v.expand_as(targets), targets, test.colours()) for k, v in constants.items()}
    metrics = {f"test_{k}": v for k, v in final.items()}
    metrics["test_l1_shuffled_input"] = (shuffled - targets).abs().mean().item()
    metrics.update({f"test_{k}_{name}_image": v for name, b in baselines.items() for k, v in b.items()
                    if k in ("l1", "psnr", "ssim")})
    metrics.update({f"train_{k}": v for k, v in s.curve[-1].items() if k != "iteration"})
    output = translate(G, shown.edges, shown_seed)
    eval_seconds = s.eval_seconds + time.perf_counter() - clock

    # 5. the ablation: the same recipe with loss = l1 and loss = cgan, sub-runs found or trained first
    arms: dict[str, torch.Tensor] = {}
    rows = [table_row("mean training photo (ignores the input)", baselines["mean"]),
            table_row("per-pixel median training photo (ignores the input)", baselines["median"])]
    if cfg.ablation_runs and cfg.loss == "l1+cgan":
        same = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
        subruns = {}
        for loss in ("l1", "cgan"):
            sub = ctx.requires(ctx.experiment, preset=ctx.preset, **{**same, "loss": loss, "ablation_runs": False})
            subruns[loss] = str(sub.run_dir)
            arms[loss] = translate(sub.model, shown.edges, shown_seed)
            sub_metrics = {k: sub.metrics[f"test_{k}"] for k in final}
            metrics.update({f"test_{k}_loss_{loss}": v for k, v in sub_metrics.items()})
            rows.append(table_row(OBJECTIVES[loss], sub_metrics))
        ctx.add_facts(ablation_subruns=subruns)
        arms["l1+cgan"] = output
    rows.append(table_row(OBJECTIVES[cfg.loss], final))
    ctx.save_table("ablation" if arms else "held_out_results", rows, caption=(
        f"{len(test)} held-out pairs at {cfg.image_size}×{cfg.image_size}: L1 on the [0, 1] scale, PSNR and SSIM "
        f"averaged over images, gradient ratio Σ|∇ŷ| / Σ|∇y| (1 = as sharp as the photos), colour: intersections "
        f"of the L*, a*, b* histograms of all outputs and all photos (1 = the same colour distribution)"
        + ("; G's test-time dropout on (seeded), as in the paper." if cfg.test_dropout else ".")))

    ctx.add_timings(data_seconds=data_seconds, train_seconds=s.train_seconds, eval_seconds=eval_seconds,
                    train_pairs_per_second=total * cfg.batch_size / max(s.train_seconds, 1e-9))
    ctx.save_weights(G.state_dict())
    if D is not None:
        ctx.save_weights(D.state_dict(), name="discriminator")
    mean_photo = image_metrics(constants["mean"].expand_as(eval_targets), eval_targets, eval_pairs.colours())
    save_figures(ctx, cfg, s, shown, eval_pairs, mean_photo, output, arms)
    return metrics


# ----- presets and registration -----

CPU = {"g_width": 32, "d_width": 32}  # half the paper's widths (7.3 M + 0.7 M parameters at 64 px): see the docstring
PRESETS = {
    "smoke": {"image_size": 32, "g_width": 8, "d_width": 8, "train_images": 64, "test_images": 16, "epochs": 2.0,
              "batch_size": 8, "eval_every": 1.0, "eval_images": 8, "show_images": 4, "log_points": 8},
    "quick": {**CPU, "epochs": 4.0, "eval_every": 0.3, "time_budget_minutes": 1.5},
    "full": {**CPU, "ablation_runs": True},  # 5 epochs per arm, the l1 and cgan arms as sub-runs
}

register(Experiment(
    name="pix2pix-flowers",
    topic="Conditional GANs for image-to-image translation: pix2pix (U-Net generator with skip connections, "
          "70×70 PatchGAN, cGAN + λ·L1) on edges → photo of flowers-5, with the L1 / cGAN / both ablation",
    paper="Isola, Zhu, Zhou & Efros 2017 (Image-to-Image Translation with Conditional Adversarial Networks); "
          "Ronneberger et al. 2015 (U-Net); Wang et al. 2004 (SSIM)",
    config_cls=Pix2PixConfig, presets=PRESETS, run=run, build_model=build_model,
    metric="test_l1", direction="min", datasets=("flowers",),
))
