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

Test-time augmentation (`predict_tta`): level 0 = the image, 1 = the mean of the logits of the image
and its mirror, 2 = additionally the mirrored pair shifted by one pixel up-left and down-right.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


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


def flip(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror (left-right) the images where `mask` (N,) is true."""
    return torch.where(mask.view(-1, 1, 1, 1), images.flip(-1), images)


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
