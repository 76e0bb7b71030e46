"""What the foundations experiments share: image tensors with a validation split, evaluation, divergence."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dldojo.data import images as image_data
from dldojo.engine.errors import DojoError


@dataclasses.dataclass
class ImageData:
    """Normalised float tensors (N, C, H, W) and int64 labels of a train / validation / test split."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...]


def load_images(dataset: str, train_images: int, val_images: int, test_images: int) -> ImageData:
    """`val_images` training images (class-stratified, fixed seed) are held out for validation; of the rest,
    `train_images` (0 = all) are trained on; `test_images` (0 = all) of the official test set are reported.
    Pixels are standardised with the training images' channel mean and standard deviation."""
    train_all, test = image_data.load(dataset)
    if val_images >= len(train_all):
        raise DojoError(f"val_images {val_images} leaves no training images of {dataset} ({len(train_all)} in all)")
    train_index, val_index = image_data.stratified_split(train_all.labels, val_images / len(train_all), seed=1)
    train, val = train_all.subset(train_index), train_all.subset(val_index)
    train, test = train.head(train_images, seed=2), test.head(test_images, seed=3)
    mean, std = image_data.channel_stats(train.images)
    x_train, x_val, x_test = (image_data.to_tensor(s.images, mean, std) for s in (train, val, test))
    return ImageData(x_train, torch.as_tensor(train.labels), x_val, torch.as_tensor(val.labels), x_test,
                     torch.as_tensor(test.labels), train_all.classes)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2000) -> float:
    """Fraction of `x` classified as `y`, in eval mode (dropout off, BatchNorm with running statistics)."""
    was_training = model.training
    model.eval()
    correct = sum(int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
                  for i in range(0, len(x), batch_size))
    model.train(was_training)
    return correct / len(x)


class LossCurve:
    """The training-loss curve of one training: the mean loss over every `steps_per_epoch // points` steps, and
    the step at which the loss left the floats (`diverged_step`, 0 = never), kept as a result of that training
    instead of stopping the run; `last` holds the last 5 losses, the non-finite one included."""

    def __init__(self, steps_per_epoch: int, points: int):
        self.steps_per_epoch, self.every = steps_per_epoch, max(1, steps_per_epoch // points)
        self.points: list[tuple[float, float]] = []
        self.diverged_step = 0
        self.last: list[float] = []
        self._window: list[float] = []

    def add(self, epoch: int, i: int, value: float) -> bool:
        """Record the loss of step `i` of `epoch`; False (with `diverged_step` set) when it is not finite."""
        self.last = (self.last + [value])[-5:]
        if not math.isfinite(value):
            self.diverged_step = epoch * self.steps_per_epoch + i + 1
            return False
        self._window.append(value)
        if (i + 1) % self.every == 0 or i + 1 == self.steps_per_epoch:
            self.points.append((epoch + (i + 1) / self.steps_per_epoch, float(np.mean(self._window))))
            self._window = []
        return True


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, data: ImageData, batch_size: int, epoch: int,
                order: torch.Generator, curve: LossCurve, keep_going) -> bool:
    """One epoch of cross-entropy minibatch steps over a fresh permutation (from `order`) of the training images,
    `curve.steps_per_epoch` batches of `batch_size`; every loss goes into `curve` and `keep_going()` (the run's
    Ctrl-C / checkpoint hook) follows every finite one. False when a loss left the floats: the epoch ends there."""
    permutation = torch.randperm(len(data.x_train), generator=order)
    for i in range(curve.steps_per_epoch):
        index = permutation[i * batch_size:(i + 1) * batch_size]
        loss = F.cross_entropy(model(data.x_train[index]), data.y_train[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if not curve.add(epoch, i, loss.item()):
            return False
        keep_going()
    return True
