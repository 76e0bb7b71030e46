"""Pieces every image-classification experiment shares: tensors, bf16, evaluation, saving a classifier.

A trained classifier is saved as `model.safetensors` plus `classifier.json` (architecture name and
keyword arguments, number of classes, input channels and size, normalisation mean / std, class
names). `build_classifier(cfg, run)` is the `build_model` of every experiment that saves one, so
`engine.reload.load_run(run_dir).model` rebuilds it anywhere; `load_classifier(run_dir)` adds the
metadata — `dldojo explain`, the transfer experiment and the tests use it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from dldojo.data.images import ImageSplit, channel_stats, to_tensor
from dldojo.engine.errors import DojoError
from dldojo.engine.reload import LoadedRun, load_run
from dldojo.engine.run import RunContext, cpu_has_fast_bf16
from dldojo.vision import archs
from dldojo.vision.augment import predict_tta

BF16 = Literal["auto", "on", "off"]


def use_bf16(setting: BF16) -> bool:
    return setting == "on" or (setting == "auto" and cpu_has_fast_bf16())


def autocast(enabled: bool):
    """bf16 autocast on the CPU (convolutions and matmuls in bf16, reductions and BN stats in fp32)."""
    return torch.autocast("cpu", dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def normalised_tensors(train: ImageSplit, *others: ImageSplit) -> tuple[np.ndarray, np.ndarray, list[torch.Tensor]]:
    """Channel mean / std of the training images, and every split as normalised float NCHW tensors."""
    mean, std = channel_stats(train.images)
    return mean, std, [to_tensor(s.images, mean, std) for s in (train, *others)]


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, *, batch_size: int = 1000, tta: int = 0, mirror: bool = True,
                   bf16: bool = False, channels_last: bool = False, with_plain: bool = False):
    """Logits of `x` in eval mode, in batches, with test-time augmentation level `tta`
    (`with_plain`: also the logits without augmentation, from the same passes)."""
    outs, plains = [], []
    with archs.eval_mode(model):
        for start in range(0, len(x), batch_size):
            batch = x[start:start + batch_size]
            if channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            with autocast(bf16):
                logits, plain = predict_tta(model, batch, tta, mirror, with_plain=True)
            outs.append(logits)
            plains.append(plain)
    return (torch.cat(outs), torch.cat(plains)) if with_plain else torch.cat(outs)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(1) == labels).float().mean().item()


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (labels, pred), 1)
    return matrix


def report_classifier(ctx: RunContext, split: ImageSplit, logits: torch.Tensor, title: str = "test") -> None:
    """Per-class accuracy table, confusion matrix and a grid of test images with predictions."""
    import matplotlib.pyplot as plt

    pred = logits.argmax(1).numpy()
    labels = split.labels
    k = len(split.classes)
    matrix = confusion_matrix(pred, labels, k)
    ctx.save_table("per_class_accuracy", [
        {"class": name, "images": int(matrix[i].sum()), "accuracy": float(matrix[i, i] / max(1, matrix[i].sum())),
         "most confused with": split.classes[int(np.argmax(np.where(np.arange(k) == i, -1, matrix[i])))]}
        for i, name in enumerate(split.classes)], caption=f"{title} accuracy per class")

    fig, ax = plt.subplots(figsize=(0.55 * k + 2.5, 0.55 * k + 2))
    ax.imshow(matrix / np.maximum(1, matrix.sum(1, keepdims=True)), cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            if matrix[i, j]:
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if matrix[i, j] > 0.5 * matrix[i].sum() else "black")
    ax.set_xticks(range(k), split.classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), split.classes, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=f"confusion matrix ({title})")
    ctx.save_figure(fig, "confusion_matrix")

    probs = torch.softmax(logits.float(), 1).numpy()
    wrong = np.flatnonzero(pred != labels)
    right = np.flatnonzero(pred == labels)
    rng = np.random.default_rng(0)
    show = np.concatenate([rng.permutation(right)[:12], rng.permutation(wrong)[:12]])
    cols = 8
    rows = -(-len(show) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.9 * rows), squeeze=False)
    for ax, i in zip(axes.flat, show):
        image = split.images[i]
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None)
        ok = pred[i] == labels[i]
        ax.set_title(f"{split.classes[pred[i]]} {probs[i, pred[i]]:.2f}" + ("" if ok else f"\n(true {split.classes[labels[i]]})"),
                     fontsize=7, color="green" if ok else "red")
        ax.axis("off")
    for ax in list(axes.flat)[len(show):]:
        ax.axis("off")
    fig.suptitle("test images: predicted class and probability (first rows right, then wrong)", fontsize=9)
    fig.tight_layout()
    ctx.save_figure(fig, "predictions")


def model_table(ctx: RunContext, model: nn.Module, arch: str, input_shape: tuple[int, int, int]) -> None:
    """Parameters and multiply-accumulates of the model for one input: a report table and the summary's facts."""
    params, macs = archs.count_params(model), archs.count_macs(model, input_shape)
    ctx.save_table("model", [{"architecture": arch, "input": "×".join(map(str, input_shape)), "parameters": params,
                              "MACs per image": macs, "trainable parameters": archs.count_params(model, True)}])
    ctx.add_facts(params=params, macs=macs)


CLASSIFIER_FILE = "classifier.json"


def save_classifier(ctx: RunContext, model: nn.Module, *, arch: str, arch_kwargs: dict[str, Any], num_classes: int,
                    in_channels: int, image_size: int, mean, std, classes, dataset: str) -> None:
    """The weights (model.safetensors) and what `build_classifier` needs to rebuild them (classifier.json)."""
    ctx.save_weights(model.state_dict())
    ctx.save_json(CLASSIFIER_FILE, {
        "arch": arch, "arch_kwargs": arch_kwargs, "num_classes": num_classes, "in_channels": in_channels,
        "image_size": image_size, "mean": [float(v) for v in mean], "std": [float(v) for v in std],
        "classes": list(classes), "dataset": dataset})


def classifier_meta(run: LoadedRun) -> dict[str, Any]:
    """What a run saved about its classifier (classifier.json), or a one-line error naming what it is."""
    if not run.path(CLASSIFIER_FILE).exists():
        raise DojoError(f"{run.run_dir} holds no trained image classifier (no {CLASSIFIER_FILE}: a run of "
                        f"{run.experiment.name}); pass a run of mnist-cnn, fashion-cnn, cifar10-<arch>, "
                        f"pretrain-cifar10 or transfer-flowers (`dldojo runs` lists them).")
    return run.read_json(CLASSIFIER_FILE)


def build_classifier(cfg: Any, run: LoadedRun) -> nn.Module:
    """`build_model` of the vision experiments that save a classifier: its architecture, fresh weights."""
    meta = classifier_meta(run)
    return archs.build_arch(meta["arch"], num_classes=meta["num_classes"], in_channels=meta["in_channels"],
                            **meta["arch_kwargs"])


def load_classifier(run_dir: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """A finished vision run's classifier (eval mode) and its metadata (classifier.json)."""
    run = load_run(run_dir, family="vision")
    meta = classifier_meta(run)
    return run.model, meta
