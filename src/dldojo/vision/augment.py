"""Batch data augmentation and test-time augmentation for image classifiers.

Per-image random translation (a random crop of a reflect-padded image) and horizontal flips are the
augmentations of He et al. (2016) for CIFAR: `torchvision.transforms.v2.RandomCrop(32, padding=p,
padding_mode="reflect")` + `RandomHorizontalFlip()`. Applied image by image in Python they cost more
than a small network's training step on a CPU, so here they are applied to a whole batch at once:
images sharing a shift are cropped together (at most (2p+1)² slices per batch). The tests check the
result against torchvision's functional transforms image by image.

Alternating flip (Jordan 2024): instead of a fresh coin per image per epoch, every image is flipped on
a fixed random half of the epochs' parity, i.e. flipped in epoch e iff (flip_bit[i] + e) is odd. Over
two epochs the network sees both versions of every image exactly once.

SimCLR's views (`contrastive_views`, Chen et al. 2020): RandomResizedCrop(scale=(0.2, 1)) + horizontal
flip + ColorJitter(0.4, 0.4, 0.4, 0.1) with p = 0.8 + RandomGrayscale(0.2), for a whole batch at once.
The crops are `torchvision.ops.roi_align` boxes (adaptive sampling: an antialiased resize); brightness,
contrast and saturation are torchvision's formulas with one factor per image (tested equal); the hue
shift is a rotation of the YIQ chroma plane, the linear approximation of HSV's hue (keeps luma and greys).

Transfer learning's training crops (`random_resized_crops`): torchvision's RandomResizedCrop (area
fraction ~ U(scale, 1), antialiased resize) + RandomHorizontalFlip, image by image (the images are 128 px
uint8, the crops small, so the per-image calls are cheap next to the step of four networks). Mixing two
images of a batch: CutMix (`cut_mix`, Yun et al. 2019) pastes a box of a shuffled copy of the batch in,
mixup (`mix_up`, Zhang et al. 2018) blends the whole images; the loss weighs both labels by λ.

Test-time augmentation (`predict_tta`): level 0 = the image, 1 = the mean of the logits of the image
and its mirror, 2 = additionally the mirrored pair shifted by one pixel up-left and down-right.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align
from torchvision.transforms import v2


def random_shifts(n: int, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, 2) integer shifts (dy, dx) in [-pad, pad], uniformly."""
    return torch.randint(-pad, pad + 1, (n, 2), generator=generator)


def translate(images: torch.Tensor, shifts: torch.Tensor, pad: int) -> torch.Tensor:
    """Crop every image of (N, C, H, W) at its own offset from a reflect-padded copy.

    shift (dy, dx) = the crop's top-left corner at (pad + dy, pad + dx) of the padded image, i.e. the
    torchvision crop at (top, left) = (pad + dy, pad + dx). Same size out as in."""
    if pad == 0:
        return images
    n, c, h, w = images.shape
    padded = F.pad(images, (pad,) * 4, mode="reflect")
    out = torch.empty_like(images)
    for dy in range(-pad, pad + 1):
        rows = shifts[:, 0] == dy
        if not rows.any():
            continue
        band = padded[rows, :, pad + dy:pad + dy + h, :]
        cols = shifts[rows, 1]
        band_out = torch.empty((len(band), c, h, w), dtype=images.dtype)
        for dx in range(-pad, pad + 1):
            sel = cols == dx
            if sel.any():
                band_out[sel] = band[sel, :, :, pad + dx:pad + dx + w]
        out[rows] = band_out
    return out


def _per_image(v: torch.Tensor) -> torch.Tensor:
    """(N,) values or flags, shaped to broadcast over (N, C, H, W)."""
    return v.view(-1, 1, 1, 1)


def flip(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror (left-right) the images where `mask` (N,) is true."""
    return torch.where(_per_image(mask), images.flip(-1), images)


def augment_batch(images: torch.Tensor, pad: int, flip_mask: torch.Tensor | None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Random translation by up to `pad` pixels, then the given flips (None = no flipping)."""
    if pad:
        images = translate(images, random_shifts(len(images), pad, generator), pad)
    if flip_mask is not None:
        images = flip(images, flip_mask)
    return images


def alternating_flip_mask(flip_bits: torch.Tensor, epoch: int) -> torch.Tensor:
    """Alternating flip: image i is mirrored in epoch e iff flip_bit[i] + e is odd."""
    return (flip_bits.long() + epoch) % 2 == 1


def random_resized_boxes(n: int, height: int, width: int, scale: tuple[float, float] = (0.2, 1.0),
                         ratio: tuple[float, float] = (3 / 4, 4 / 3),
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, 4) crop boxes (x0, y0, x1, y1) in pixels: area fraction ~ U(scale), log aspect ~ U(log ratio),
    clipped to the image. torchvision draws again instead; here 16 % of the boxes of a square image are
    clipped (large, elongated ones), which makes those crops a little smaller than drawn."""
    area = torch.empty(n).uniform_(*scale, generator=generator) * height * width
    aspect = torch.empty(n).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator).exp()
    crop_w, crop_h = (area * aspect).sqrt().clamp(max=width), (area / aspect).sqrt().clamp(max=height)
    x0 = torch.rand(n, generator=generator) * (width - crop_w)
    y0 = torch.rand(n, generator=generator) * (height - crop_h)
    return torch.stack([x0, y0, x0 + crop_w, y0 + crop_h], 1)


def resized_crops(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Crop box i of image i and resize it to size × size (bilinear, averaged over the box's pixels)."""
    indexed = torch.cat([torch.arange(len(boxes), dtype=boxes.dtype).unsqueeze(1), boxes], 1)
    return roi_align(images, indexed.to(images.dtype), output_size=size, sampling_ratio=-1, aligned=True)


def grey(x: torch.Tensor) -> torch.Tensor:
    """Luma with torchvision's rgb_to_grayscale weights, (N, 1, H, W)."""
    return (0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


# RGB -> YIQ (its luma row = grey's weights, so a hue rotation keeps grey(x)), and back
_YIQ = torch.tensor([[0.2989, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_INV = torch.linalg.inv(_YIQ)


def colour_jitter(x: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor, saturation: torch.Tensor,
                  hue: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast, saturation (factors, 1 = unchanged) and hue (a turn fraction, 0 = unchanged),
    one value per image of (N, 3, H, W) floats in [0, 1], in that order, clamped after each step."""
    x = (x * _per_image(brightness)).clamp(0, 1)
    mean = grey(x).mean((1, 2, 3), keepdim=True)
    x = ((x - mean) * _per_image(contrast) + mean).clamp(0, 1)
    luma = grey(x)
    x = ((x - luma) * _per_image(saturation) + luma).clamp(0, 1)
    angle = hue * 2 * math.pi
    rotation = torch.zeros(len(x), 3, 3)
    rotation[:, 0, 0] = 1
    rotation[:, 1, 1], rotation[:, 1, 2] = angle.cos(), -angle.sin()
    rotation[:, 2, 1], rotation[:, 2, 2] = angle.sin(), angle.cos()
    colour = _YIQ_INV @ rotation @ _YIQ
    return torch.einsum("nij,njhw->nihw", colour, x).clamp(0, 1)


def contrastive_views(images: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """One SimCLR view of every uint8 image of (N, 3, H, W), as floats in [0, 1] (see the module docstring)."""
    n, _, h, w = images.shape
    x = resized_crops(images.float() / 255, random_resized_boxes(n, h, w, generator=generator), size)
    x = flip(x, torch.rand(n, generator=generator) < 0.5)

    def factors(strength: float) -> torch.Tensor:
        return torch.empty(n).uniform_(1 - strength, 1 + strength, generator=generator)

    jittered = colour_jitter(x, factors(0.4), factors(0.4), factors(0.4),
                             torch.empty(n).uniform_(-0.1, 0.1, generator=generator))
    x = torch.where(_per_image(torch.rand(n, generator=generator) < 0.8), jittered, x)
    return torch.where(_per_image(torch.rand(n, generator=generator) < 0.2), grey(x).expand_as(x), x)


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, size, size), antialiased bilinear (torchvision)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return v2.functional.resize(images, [size, size], antialias=True)


def random_resized_crops(images: torch.Tensor, size: int, scale: float) -> torch.Tensor:
    """torchvision's RandomResizedCrop(size, scale=(scale, 1), antialias) + RandomHorizontalFlip of every
    image of (N, C, H, W), each with its own draw (torch's global generator)."""
    crop = v2.Compose([v2.RandomResizedCrop(size, scale=(scale, 1.0), antialias=True), v2.RandomHorizontalFlip()])
    return torch.stack([crop(image) for image in images])


def cut_mix(x: torch.Tensor, probability: float) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """CutMix (Yun et al. 2019): with `probability`, paste a box of a shuffled copy of the batch into it.

    The box has area fraction 1 − λ with λ ~ U(0, 1) (Beta(1, 1)); it returns (images, the pasted images'
    batch order, λ adjusted to the box actually cut), so the loss is λ·CE(y) + (1 − λ)·CE(y[order]).
    Returns (x, None, 1.0) for batches that are not mixed."""
    if probability <= 0 or torch.rand(()) >= probability:
        return x, None, 1.0
    h, w = x.shape[-2:]
    lam = float(torch.rand(()))
    cut_h, cut_w = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
    cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
    order = torch.randperm(len(x))
    x = x.clone()
    x[..., top:bottom, left:right] = x[order][..., top:bottom, left:right]
    return x, order, 1 - (bottom - top) * (right - left) / (h * w)


def mix_up(x: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """mixup (Zhang et al. 2018): (λ·x + (1 − λ)·x[order], order, λ) with λ ~ Beta(α, α); (x, None, 1.0) for
    α = 0."""
    if alpha <= 0:
        return x, None, 1.0
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    order = torch.randperm(len(x))
    return lam * x + (1 - lam) * x[order], order, lam


def predict_tta(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, level: int = 0,
                mirror: bool = True, with_plain: bool = False):
    """Logits averaged over test-time augmentations (level 0 / 1 / 2, see the module docstring).

    With `mirror=False` (digits: a mirrored 2 is not a 2) level 1 adds nothing and level 2 averages the
    image with its two one-pixel shifts. `with_plain=True` returns (tta_logits, logits_of_the_image)."""
    plain = logits = model(x).float()
    if level == 0:
        return (logits, plain) if with_plain else logits

    def views(inputs: torch.Tensor) -> torch.Tensor:
        out = model(inputs).float()
        return 0.5 * (out + model(inputs.flip(-1)).float()) if mirror else out

    if mirror:
        logits = 0.5 * (logits + model(x.flip(-1)).float())
    if level >= 2:
        h, w = x.shape[-2:]
        padded = F.pad(x, (1,) * 4, mode="reflect")
        shifted = 0.5 * (views(padded[:, :, 0:h, 0:w]) + views(padded[:, :, 2:h + 2, 2:w + 2]))
        logits = 0.5 * logits + 0.5 * shifted
    return (logits, plain) if with_plain else logits
