"""Pictures the generative experiments share: a grid of grey images, and labelled rows of images (input |
corrupted | reconstruction ...), the figure every autoencoder and the VAE show their reconstructions with."""

from __future__ import annotations

import numpy as np
import torch


def grid(images: torch.Tensor, nrow: int) -> np.ndarray:
    """(n, 1, H, W) → one (rows·H, nrow·W) picture, white lines between the images."""
    from torchvision.utils import make_grid

    return make_grid(images, nrow=nrow, padding=1, pad_value=1.0)[0].numpy()


def labelled_rows(rows: list[tuple[str, torch.Tensor]], side: int = 28):
    """A figure with one row per (label, images): images (k, side·side) or (k, 1, side, side) in [0, 1], grey,
    the label left of the row. Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    k = len(rows[0][1])
    fig, axes = plt.subplots(len(rows), k, figsize=(1.05 * k + 1.2, 1.1 * len(rows)), squeeze=False)
    for r, (name, images) in enumerate(rows):
        for c in range(k):
            axes[r, c].imshow(images[c].reshape(side, side).numpy(), cmap="gray", vmin=0, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
    fig.tight_layout()
    return fig
