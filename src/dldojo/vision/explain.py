"""Explaining an image classifier's prediction: Grad-CAM, LIME and KernelSHAP (`dldojo explain`).

Curriculum topic: explainability of deep models (JDLA E資格 「説明可能AI (XAI)」: Grad-CAM, LIME, SHAP).

Grad-CAM — Selvaraju, Cogswell, Das, Vedantam, Parikh & Batra, "Grad-CAM: Visual Explanations from
Deep Networks via Gradient-based Localization" (ICCV 2017). For the class score y^c (the logit, before
the softmax) and the K feature maps A^k (u × v) of a convolutional layer:

    α_k^c = (1 / Z) Σ_i Σ_j ∂y^c / ∂A^k_ij          (global-average-pooled gradients, Z = u·v)
    L^c   = ReLU( Σ_k α_k^c A^k )                     (u × v, then bilinearly upsampled to H × W)

Written here from the definition and tested equal to captum's `LayerGradCam` (+ ReLU, then
`LayerAttribution.interpolate(..., "bilinear")`). When the layer feeds global average pooling and a
linear layer (ResNet), α_k^c = w_k^c / Z and Grad-CAM is CAM (Zhou et al. 2016) up to that constant.
The default layer is the last spatial block of each architecture (`default_target_layer`).

LIME — Ribeiro, Singh & Guestrin, "'Why Should I Trust You?': Explaining the Predictions of Any
Classifier" (KDD 2016). Interpretable features z ∈ {0, 1}^M switch M superpixels on (the image's
pixels) or off (the baseline); N samples z ~ Bernoulli(0.5)^M are scored by the model, f(z) = p(c | x_z),
and a weighted ridge regression (α = 1) is fitted, min_g Σ_z π(z) (f(z) − g(z))² + α ‖w‖²,
with lime_image's similarity kernel π(z) = exp(−d(z, 1)² / (2σ²)), d = cosine distance between z
and the all-ones vector (1 − √(k / M) for k superpixels on), σ = 0.25. The attribution of a
superpixel is its weight in g.

KernelSHAP — Lundberg & Lee, "A Unified Approach to Interpreting Model Predictions" (NeurIPS 2017):
the same regression without a penalty, coalitions sampled with the Shapley kernel
π(z) = (M − 1) / (C(M, |z|) · |z| · (M − |z|)); its solution approximates the Shapley values φ_i,
which add up to f(x) − f(baseline) (the empty and full coalitions get weight 10⁶, so this holds to
~1e-4). Both run through `captum.attr` (`Lime` with captum's `SkLearnRidge` surrogate, `KernelShap`
with its default `SkLearnLinearRegression`) over SLIC superpixels (Achanta et al. 2012,
`skimage.segmentation.slic`).

Baselines ("off" superpixels): "mean" (default) fills them with the image's own mean colour, so a
switched-off region carries no edges or texture but keeps the overall brightness; "zeros" fills them
with 0 in the normalised input, i.e. the training set's mean colour. Both explain the predicted
probability p(c | x) of the target class c.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dldojo.engine.errors import DojoError, did_you_mean
from dldojo.vision import archs
from dldojo.vision.lite import EfficientNetLite, preprocess

METHODS = {
    "gradcam": "Grad-CAM: ReLU of the gradient-weighted sum of the last conv block's feature maps, upsampled",
    "lime": "LIME: weighted ridge regression of the class probability on which superpixels are kept",
    "shap": "KernelSHAP: Shapley values of the superpixels, estimated by kernel-weighted regression",
}
METHOD_TITLES = {"gradcam": "Grad-CAM", "lime": "LIME", "shap": "KernelSHAP"}
BASELINES = ("mean", "zeros")
LIME_KERNEL_WIDTH = 0.25  # σ of lime_image (Ribeiro et al.'s reference implementation)
LIME_RIDGE_ALPHA = 1.0  # lime_image's Ridge(alpha=1)


# ============================================================================ Grad-CAM


def default_target_layer(model: nn.Module) -> str:
    """Dotted name of the last spatial block, the usual Grad-CAM layer: the most semantic feature maps
    that still have a spatial layout.

    AirbenchNet: the last conv group; ResNet: the last stage (after the final BN-ReLU for
    pre-activation networks, WRN included); MobileNet v1/v2, EfficientNet (and -Lite): the last feature
    block (MobileNetV2/EfficientNet's 1×1 head conv); DenseNet: `features`, i.e. the last dense block after
    its BN-ReLU; PlainCNN: the ReLU after the last conv (before the pooling). Anything else: the last
    Conv2d.
    """
    if isinstance(model, archs.AirbenchNet):
        return f"groups.{len(model.groups) - 1}"
    if isinstance(model, archs.ResNet):
        return "final_norm" if not isinstance(model.final_norm, nn.Identity) else f"stages.{len(model.stages) - 1}"
    if isinstance(model, archs.DenseNet):
        return "features"
    if isinstance(model, (archs.MobileNetV1, archs.MobileNetV2, archs.EfficientNet, EfficientNetLite)):
        return f"features.{len(model.features) - 1}"
    if isinstance(model, archs.PlainCNN):
        last_conv = max(i for i, m in enumerate(model.features) if isinstance(m, nn.Conv2d))
        after = last_conv + 1
        keep = after < len(model.features) and isinstance(model.features[after], nn.ReLU)
        return f"features.{after if keep else last_conv}"
    convs = [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]
    if not convs:
        raise DojoError(f"{type(model).__name__} has no Conv2d layer: Grad-CAM needs convolutional feature maps.")
    return convs[-1]


def resolve_layer(model: nn.Module, layer: nn.Module | str | None) -> tuple[str, nn.Module]:
    """(name, module) of the Grad-CAM layer: the default, a dotted name (e.g. "groups.1") or a module."""
    if isinstance(layer, nn.Module):
        names = [name for name, module in model.named_modules() if module is layer]
        return (names[0] if names else type(layer).__name__), layer
    name = default_target_layer(model) if layer is None else layer
    try:
        return name, model.get_submodule(name)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        blocks = [n for n in names if n.count(".") <= 1]
        raise DojoError(f"{type(model).__name__} has no layer {name!r}.{did_you_mean(name, names)} "
                        f"The default is {default_target_layer(model)!r}; other blocks: "
                        f"{', '.join(blocks[:12])}{', ...' if len(blocks) > 12 else ''}.") from None


def _targets(target: int | Sequence[int] | torch.Tensor, batch: int) -> torch.Tensor:
    target = torch.as_tensor(target, dtype=torch.long).reshape(-1)
    return target.expand(batch) if target.numel() == 1 else target


def grad_cam(model: nn.Module, x: torch.Tensor, target: int | Sequence[int] | torch.Tensor,
             layer: nn.Module | str | None = None) -> torch.Tensor:
    """Grad-CAM heat maps L^c (N, H, W) of `x` (N, C, H, W) for class `target` (one int or one per image).

    The model should be in eval mode (BN statistics fixed, so images do not interact). `layer` is a
    module of `model` or its dotted name; by default `default_target_layer(model)`. The maps are ≥ 0,
    in the units of y^c·A (not normalised), upsampled with bilinear interpolation (align_corners=False).
    """
    name, module = resolve_layer(model, layer)
    activations: list[torch.Tensor] = []

    def keep_activation(_module, _inputs, output):
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            raise DojoError(f"layer {name!r} outputs {tuple(getattr(output, 'shape', ()))}, not (N, K, u, v) "
                            "feature maps; pick a convolutional block")
        # A^k as a leaf: ∂y^c/∂A^k is then defined even for a frozen model, and the clone lets later
        # in-place operations (ReLU(inplace=True)) run on a copy, not on the maps we keep.
        A = output.detach().requires_grad_(True)
        activations.append(A)
        return A.clone()

    handle = module.register_forward_hook(keep_activation)
    try:
        with torch.enable_grad():
            logits = model(x)
            if len(activations) != 1:
                raise DojoError(f"layer {name!r} ran {len(activations)} times in one forward pass; Grad-CAM "
                                "needs a layer that runs once")
            A = activations[0]
            y_c = logits.gather(1, _targets(target, len(x)).view(-1, 1)).sum()  # images independent in eval mode
            (dy_dA,) = torch.autograd.grad(y_c, A)
    finally:
        handle.remove()
    alpha = dy_dA.mean(dim=(2, 3), keepdim=True)  # α_k^c: (N, K, 1, 1)
    cam = F.relu((alpha * A).sum(dim=1, keepdim=True))  # L^c = ReLU(Σ_k α_k^c A^k): (N, 1, u, v)
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return cam[:, 0].detach()


# ============================================================================ superpixels, LIME, KernelSHAP


def default_n_segments(image_size: int) -> int:
    """About 25 superpixels of ~6×6 px on 28/32 px images; 60 of ~16×16 px on 128 px images."""
    return 25 if image_size <= 48 else 60


def superpixels(image: np.ndarray, n_segments: int | None = None) -> np.ndarray:
    """SLIC superpixels of an (H, W, C) uint8 image: int64 labels 0..M−1, (H, W).

    Colour images are clustered in CIELAB with compactness 10 (skimage's default); grayscale ones on
    their [0, 1] intensity, where the same balance of colour and distance needs a compactness of 0.1.
    Both are smoothed first (Gaussian σ = 1 px), which keeps noise and JPEG artefacts from shattering
    the segments of a 32 px image. An image SLIC cannot split (e.g. one flat colour: fewer than a
    quarter of the segments asked for) gets a regular grid of about `n_segments` squares instead.
    """
    from skimage.segmentation import slic

    h, w, c = image.shape
    n_segments = default_n_segments(max(h, w)) if n_segments is None else n_segments
    if n_segments < 2:
        raise DojoError(f"need at least 2 superpixels, got n_segments={n_segments}")
    pixels = image.astype(np.float64) / 255
    if c == 1:
        labels = slic(pixels[..., 0], n_segments=n_segments, compactness=0.1, sigma=1.0, channel_axis=None,
                      start_label=0)
    else:
        labels = slic(pixels, n_segments=n_segments, compactness=10.0, sigma=1.0, channel_axis=-1, start_label=0)
    if len(np.unique(labels)) < max(2, n_segments // 4):
        side = max(1, round(math.sqrt(h * w / n_segments)))
        labels = (np.arange(h)[:, None] // side) * (-(-w // side)) + np.arange(w)[None, :] // side
    return np.unique(labels, return_inverse=True)[1].reshape(h, w).astype(np.int64)  # labels 0..M−1, no gaps


def lime_similarity(_original, _perturbed, interpretable: torch.Tensor, **_kwargs) -> torch.Tensor:
    """π(z) = exp(−d² / (2σ²)), d = cosine distance of z to all-ones = 1 − √(k/M), σ = 0.25 (lime_image)."""
    k, m = interpretable.sum().item(), interpretable.numel()
    distance = 1.0 - math.sqrt(k / m)
    return torch.tensor([math.exp(-distance**2 / (2 * LIME_KERNEL_WIDTH**2))])


def baseline_image(x: torch.Tensor, kind: str = "mean") -> torch.Tensor:
    """What a switched-off superpixel shows: the image's mean colour ("mean") or 0 in normalised units
    ("zeros", the training set's mean colour)."""
    if kind == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).contiguous()
    if kind == "zeros":
        return torch.zeros_like(x)
    raise DojoError(f"unknown baseline {kind!r}.{did_you_mean(kind, BASELINES)} Choose one of: {', '.join(BASELINES)}.")


@dataclasses.dataclass
class SuperpixelAttribution:
    """Attributions of one image for one class: captum's per-pixel output and the segmentation."""

    method: str
    attributions: np.ndarray  # (C, H, W), as returned by captum (constant on each superpixel)
    segments: np.ndarray  # (H, W) int labels 0..M−1

    @property
    def map(self) -> np.ndarray:
        """(H, W) attribution per pixel (the same for every channel)."""
        return self.attributions.mean(0)

    @property
    def per_segment(self) -> np.ndarray:
        """(M,) the attribution of every superpixel."""
        flat = self.map.ravel()
        counts = np.bincount(self.segments.ravel())
        return np.bincount(self.segments.ravel(), weights=flat) / np.maximum(counts, 1)


def probability_function(model: nn.Module):
    """x ↦ softmax(model(x)): LIME and KernelSHAP explain the predicted probability."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.softmax(model(x).float(), dim=1)

    return forward


def superpixel_attribution(method: str, model: nn.Module, x: torch.Tensor, target: int, segments: np.ndarray, *,
                           n_samples: int = 300, baseline: str = "mean", seed: int = 0,
                           batch_size: int = 50) -> SuperpixelAttribution:
    """LIME ("lime") or KernelSHAP ("shap") attributions of one image x (1, C, H, W) for class `target`,
    with the superpixels `segments` (H, W) as interpretable features (captum.attr.Lime / KernelShap).

    The sampling is seeded (`seed`) without touching the global torch RNG.
    """
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import KernelShap, Lime

    if x.dim() != 4 or len(x) != 1:
        raise ValueError(f"one image (1, C, H, W) expected, got {tuple(x.shape)}")
    forward = probability_function(model)
    if method == "lime":
        explainer = Lime(forward, interpretable_model=SkLearnRidge(alpha=LIME_RIDGE_ALPHA),
                         similarity_func=lime_similarity)
    elif method == "shap":
        explainer = KernelShap(forward)  # captum's default surrogate: sklearn LinearRegression
    else:
        raise DojoError(f"unknown superpixel method {method!r}: use 'lime' or 'shap'")
    feature_mask = torch.as_tensor(segments, dtype=torch.long)[None, None]  # (1, 1, H, W): all channels together
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        attributions = explainer.attribute(x, baselines=baseline_image(x, baseline), target=int(target),
                                           feature_mask=feature_mask.expand_as(x), n_samples=n_samples,
                                           perturbations_per_eval=batch_size)
    return SuperpixelAttribution(method, attributions[0].detach().double().numpy(), segments)


# ============================================================================ images, classes, methods


def load_image(path: str | Path, image_size: int, in_channels: int) -> np.ndarray:
    """Any image file → uint8 (image_size, image_size, in_channels): centre-cropped to a square, resized
    (Lanczos), converted to grey ("L") or RGB."""
    from PIL import Image, ImageOps

    def fit(image):
        return ImageOps.fit(image.convert("L" if in_channels == 1 else "RGB"), (image_size, image_size),
                            method=Image.Resampling.LANCZOS)

    pixels = _read_image(path, fit)
    return pixels[..., None] if pixels.ndim == 2 else pixels


def load_photo(path: str | Path, resize: int, crop: int) -> np.ndarray:
    """Any image file → uint8 (crop, crop, 3) as ImageNet models are evaluated: RGB, shorter side resized to
    `resize`, the centre crop × crop (`lite.preprocess`)."""
    return preprocess(_read_image(path, lambda image: image.convert("RGB")), resize, crop)


def _read_image(path: str | Path, convert) -> np.ndarray:
    """`convert(PIL image)` of the file (EXIF orientation applied) as a writable uint8 array, or a one-line error."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DojoError(f"image {path} does not exist (pass a PNG or JPEG file with --image)")
    try:
        with Image.open(path) as image:
            image = convert(ImageOps.exif_transpose(image))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DojoError(f"cannot read {path} as an image ({exc}); pass a PNG or JPEG file") from None
    return np.array(image, dtype=np.uint8)  # a writable copy


def normalise(pixels: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (H, W, C) → (1, C, H, W) float, (pixel / 255 − mean) / std, as in training."""
    from dldojo.data.images import to_tensor

    return to_tensor(pixels[None], np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32))


def parse_methods(method: str) -> list[str]:
    """"gradcam" | "lime" | "shap" | "all" (or a comma-separated list) → method names."""
    names = list(METHODS) if method == "all" else [m.strip().lower() for m in method.split(",") if m.strip()]
    for name in names:
        if name not in METHODS:
            raise DojoError(f"unknown explanation method {name!r}.{did_you_mean(name, [*METHODS, 'all'])} "
                            f"Choose one of: {', '.join(METHODS)}, all.")
    return names or list(METHODS)


def resolve_target(target: str | int | None, classes: Sequence[str], predicted: int) -> int:
    """A class name (case-insensitive) or index → index; None → the predicted class."""
    if target is None:
        return predicted
    text = str(target).strip()
    lowered = {name.lower(): i for i, name in enumerate(classes)}
    if text.lower() in lowered:
        return lowered[text.lower()]
    if re.fullmatch(r"-?\d+", text):
        index = int(text)
        if 0 <= index < len(classes):
            return index
    listing = ", ".join(f"{i}={name}" for i, name in enumerate(classes[:20]))
    if len(classes) > 20:  # ImageNet: 1000 names
        listing += f", ... ({len(classes)} classes, 0-{len(classes) - 1})"
    raise DojoError(f"unknown target class {text!r}.{did_you_mean(text, classes)} "
                    f"Pass a class name or index; this model's classes: {listing}.")


# ============================================================================ figures


def _show_image(ax, pixels: np.ndarray) -> None:
    if pixels.shape[-1] == 1:
        ax.imshow(pixels[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(pixels, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _plot_heat(ax, pixels: np.ndarray, heat: np.ndarray, segments: np.ndarray | None):
    """Grad-CAM: heat map (jet) over the image; superpixel methods: signed attributions (red = for the
    class, blue = against) over a faded image, with the superpixel boundaries."""
    grey = pixels.mean(-1)
    if segments is None:
        _show_image(ax, pixels)
        return ax.imshow(heat, cmap="jet", alpha=0.5, vmin=0, vmax=max(float(heat.max()), 1e-12),
                         interpolation="bilinear")
    from skimage.segmentation import find_boundaries

    ax.imshow(grey, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    limit = max(float(np.abs(heat).max()), 1e-12)
    im = ax.imshow(heat, cmap="RdBu_r", alpha=0.65, vmin=-limit, vmax=limit, interpolation="nearest")
    # Boundaries drawn on a finer grid than the image, so they stay thin lines on a 32 px image.
    scale = max(1, 256 // max(segments.shape))
    fine = np.kron(segments, np.ones((scale, scale), dtype=segments.dtype))
    edges = np.ma.masked_where(~find_boundaries(fine, mode="inner"), np.ones(fine.shape))
    h, w = segments.shape
    ax.imshow(edges, cmap="gray_r", vmin=0, vmax=1, alpha=0.6, interpolation="nearest",
              extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def explanation_figure(pixels: np.ndarray, maps: dict[str, tuple[np.ndarray, np.ndarray | None]],
                       predicted: str, probability: float, target: str, target_probability: float):
    """One row: the original (with the prediction) and one overlay per method (with the target class)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 1 + len(maps), figsize=(3.2 * (1 + len(maps)), 3.6), squeeze=False)
    axes = axes[0]
    _show_image(axes[0], pixels)
    axes[0].set_title(f"input\npredicted: {predicted} ({probability:.2f})", fontsize=9)
    for ax, (method, (heat, segments)) in zip(axes[1:], maps.items()):
        im = _plot_heat(ax, pixels, heat, segments)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=7)
        detail = "" if segments is None else f", {int(segments.max()) + 1} superpixels"
        ax.set_title(f"{METHOD_TITLES[method]}{detail}\ntarget: {target} (p = {target_probability:.2f})", fontsize=9)
    fig.tight_layout()
    return fig


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "class"


# ============================================================================ the command


@dataclasses.dataclass
class ExplainResult:
    paths: list[Path]
    top: list[tuple[str, float]]  # the top-5 predicted classes with their probabilities
    target: int
    target_name: str
    layer: str | None  # the Grad-CAM layer, when Grad-CAM ran
    n_segments: int | None  # the number of superpixels, when LIME / SHAP ran


def explain(run_dir: str | Path | None, image_path: str | Path, method: str = "all", target: str | int | None = None,
            out_dir: str | Path | None = None, n_samples: int = 300, n_segments: int | None = None,
            layer: str | None = None, baseline: str = "mean", seed: int = 0, model: str | None = None) -> ExplainResult:
    """Explain a finished classifier run's prediction on one image file — or, with `model` (and no run), a
    pre-trained ImageNet classifier's (`vision/pretrained.py`: efficientnet_lite0, torchvision:NAME) with its
    1000 class names; write one PNG per method (and a side-by-side PNG when several ran) to `out_dir`
    (default RUN_DIR/explain, or explain/MODEL in the current folder)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dldojo.vision import pretrained
    from dldojo.vision.common import load_classifier

    methods = parse_methods(method)  # fail on a typo before loading anything
    if baseline not in BASELINES:
        baseline_image(torch.zeros(1, 1, 1, 1), baseline)  # raises the helpful error
    if n_samples < 2:
        raise DojoError(f"--samples must be at least 2, got {n_samples}")
    if (run_dir is None) == (model is None):
        raise DojoError("explain a run (RUN_DIR) or a pre-trained model (--model NAME, e.g. efficientnet_lite0), "
                        "one of the two")
    if model is not None:
        pretrained.check_name(model)
        net = pretrained.load(model)
        network, classes, mean, std = net.model, net.classes, net.mean, net.std
        pixels = load_photo(image_path, net.resize, net.crop)
        default_out = Path("explain") / _safe(model)
    else:
        network, meta = load_classifier(run_dir)  # engine.reload.load_run: a finished vision run with a classifier
        classes, mean, std = list(meta["classes"]), meta["mean"], meta["std"]
        pixels = load_image(image_path, int(meta["image_size"]), int(meta["in_channels"]))
        default_out = Path(run_dir) / "explain"
    x = normalise(pixels, mean, std)
    probabilities = probability_function(network)(x)[0]
    predicted = int(probabilities.argmax())
    c = resolve_target(target, classes, predicted)
    top = [(classes[i], float(probabilities[i])) for i in probabilities.argsort(descending=True)[:5].tolist()]

    maps: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    layer_name, segments = None, None
    for name in methods:
        if name == "gradcam":
            layer_name = resolve_layer(network, layer)[0]
            maps[name] = (grad_cam(network, x, c, layer_name)[0].numpy(), None)
        else:
            if segments is None:
                segments = superpixels(pixels, n_segments)
            result = superpixel_attribution(name, network, x, c, segments, n_samples=n_samples, baseline=baseline,
                                            seed=seed)
            maps[name] = (result.map, segments)

    out_dir = Path(out_dir) if out_dir is not None else default_out
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{_safe(Path(image_path).stem)}-{_safe(classes[c])}"
    labels = (classes[predicted], float(probabilities[predicted]), classes[c], float(probabilities[c]))
    figures = [(f"{stem}-{name}.png", {name: value}) for name, value in maps.items()]
    if len(maps) > 1:
        figures.append((f"{stem}-{'-'.join(maps) if len(maps) < len(METHODS) else 'all'}.png", maps))
    paths = []
    for filename, panels in figures:
        fig = explanation_figure(pixels, panels, *labels)
        fig.savefig(out_dir / filename, dpi=120, bbox_inches="tight")
        plt.close(fig)
        paths.append(out_dir / filename)
    return ExplainResult(paths, top, c, classes[c], layer_name,
                         None if segments is None else int(segments.max()) + 1)
