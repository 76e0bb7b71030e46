"""`ae-stacked`: greedy layer-wise pre-training with autoencoders, then fine-tuning with 100 / 1,000 / all labels,
against the same network trained end to end from random initial weights.

Curriculum: 積層オートエンコーダ (stacked autoencoder), 事前学習とファインチューニング — the curriculum's historical
answer to vanishing gradients in deep sigmoid networks (JDLA E資格). Papers: Hinton, Osindero & Teh 2006 (greedy
layer-wise pre-training, with RBMs); Bengio, Lamblin, Popovici & Larochelle 2007, "Greedy Layer-Wise Training of
Deep Networks" (NeurIPS; with autoencoders); Vincent et al. 2008 (stacked denoising autoencoders); Erhan et al.
2010, "Why Does Unsupervised Pre-training Help Deep Learning?" (JMLR).

Network: an MLP encoder 784 → 500 → 250 → 100 (`hidden_sizes`) with sigmoid units (`activation`; the historical
setting; "relu" to compare) and a softmax layer 100 → 10 on top.

Greedy layer-wise pre-training on all training images, without their labels. With h_0 = x, for l = 1 … L:
    train the one-layer autoencoder   h_l = f(W_l h_{l−1} + b_l),   ĥ_{l−1} = W'_l h_l + c_l
    on the reconstruction loss between h_{l−1} and ĥ_{l−1} (the cross-entropy to sigmoid(ĥ_{l−1}) when h_{l−1}
    lies in [0, 1]: pixels or sigmoid codes; the squared error for ReLU codes), then freeze W_l, b_l, compute
    h_l for every training image and train layer l + 1 on those codes.
The frozen layers' codes are computed once, without gradients, and the next layer trains on them: no gradient
can reach a frozen layer (tests check that its weights do not move). The decoders W'_l are untied and are
discarded for fine-tuning. `pretrain_corruption` > 0 masks that fraction of each layer's input during
pre-training (stacked denoising autoencoders, Vincent et al. 2008); 0, the default, gives plain autoencoders
(Bengio et al. 2007).

Fine-tuning, two arms with everything equal but the hidden layers' initial weights:
    pretrained  the pre-trained W_l, b_l;  scratch  the draws the pre-training started from (PyTorch's default
    U(±1/√n_in) for every weight and bias, from one named random stream)
both with the same softmax-layer initial weights, Adam (`finetune_lr`), the same minibatches of min(128, n)
labelled images in the same order, `finetune_steps` steps, cross-entropy, every weight trained. For each label
count n (`label_counts`; 0 = every training image) the labelled images are a fixed class-stratified subset:
n/10 per class (the remainder to the lowest classes), the first of one seeded permutation per class (seed
`label_seed`, the same for every run seed), so the subsets are nested (the 100 are among the 1,000). There is no
validation set to stop on with 100 labels: the reported model of each arm is the last one; the test set chooses
nothing. A third column, `frozen`, trains only a logistic regression (scikit-learn) on the pre-trained top codes
of the same n images: what pre-training alone gives, without fine-tuning.

Metrics (n = 100, 1000, ..., "all"): `test_accuracy_<n>_pretrained`, `test_accuracy_<n>_scratch`,
`test_accuracy_gain_<n>` (pretrained − scratch), `test_accuracy_<n>_frozen`, `train_accuracy_<n>_<arm>` (on the
n labelled images); per layer `test_recon_layer<l>` and `test_recon_layer<l>_untrained` (the loss per input unit
on the test images' codes, after and before pre-training) and `test_bce_stack` (nats per image: a test image
encoded by all layers and decoded by all decoders). Primary metric: `test_accuracy_100_pretrained`.

Time budget (quick): a step of each layer's autoencoder and of the classifier are timed on throwaway copies;
`pretrain_share` of what is left after loading, probing and the final evaluation goes to pre-training (the same
number of epochs for every layer), the rest to the 2 × len(label_counts) fine-tunings in equal steps. The
choice is in the summary's facts (`schedule`).

Sampling (`dldojo sample RUN_DIR`): the reloaded model is the pre-trained stack (encoders and decoders). It has
no prior over its top codes: a Gaussian N(μ̂, Σ̂) fitted to the training images' top codes after pre-training
stands in for one, and the samples are the decoders' outputs at codes drawn from it (pixel means, blurred; see
ae-mnist for why this is not a generative model).

Measured (`python benchmarks/run.py ae-stacked --preset full` / `--preset quick`, seed 0, 2 threads, AMD EPYC Zen 2
with AVX2 only, commit cd01b37; full: 20 pre-training epochs per layer and 5,000 steps per fine-tuning, 298 s of
wall, results/ae-stacked-full.json; quick: what the 1.5-minute budget allows, 90 s, results/ae-stacked-quick.json),
test accuracy pre-trained / scratch / frozen + logistic regression, full (quick): 100 labels 0.770 / 0.736 / 0.657
(0.770 / 0.732 / 0.686), 1,000 labels 0.885 / 0.879 / 0.807 (0.889 / 0.876 / 0.828), all 60,000 labels 0.979 /
0.978 / 0.917 (0.965 / 0.959 / 0.914). Pre-training helps most
where labels are few, and the gap closes as they grow; with 100 labels both arms learn their training images by
heart (train accuracy 1.0). Reference numbers: the papers report full-label MNIST errors of deeper,
longer-trained networks tuned on a validation set; nothing here is tuned, so none is quoted.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dldojo.data import images as image_data
from dldojo.engine import budget
from dldojo.engine.errors import DojoError
from dldojo.engine.registry import Experiment, register
from dldojo.engine.reload import LoadedRun
from dldojo.engine.run import RunContext
from dldojo.generative.autoencoder import (IMAGE_SHAPE, IMAGE_SIZE, corrupt, fit_code_gaussian, first_of_each_class,
                                           linear_probe)
from dldojo.generative.pictures import grid, labelled_rows

NUM_CLASSES = 10
ARMS = ("pretrained", "scratch")
CURVE_TEST_IMAGES = 2000  # the fine-tuning curves' test accuracy is measured on the first 2,000 test images


@dataclasses.dataclass
class StackedConfig:
    RANGES: ClassVar[dict] = {
        "hidden_sizes": (1, 8192), "pretrain_epochs": (0.1, 10000), "pretrain_lr": (1e-7, 1.0),
        "pretrain_corruption": (0, 1), "label_counts": (0, 60000), "label_seed": (0, 2**31 - 1),
        "finetune_steps": (1, 10**7), "finetune_lr": (1e-7, 1.0), "batch_size": (1, 60000),
        "train_images": (0, 60000), "test_images": (0, 10000), "curve_points": (0, 1000),
        "time_budget_minutes": (0, 10**5), "pretrain_share": (0.05, 0.95)}
    """Allowed (low, high) of the numeric fields, checked before anything is created (`engine.config`)."""

    dataset: Literal["mnist", "fashion-mnist"] = "mnist"
    """The images: 'mnist' (digits) or 'fashion-mnist' (Zalando articles, same size and format)."""
    hidden_sizes: tuple[int, ...] = (500, 250, 100)
    """Widths of the encoder's hidden layers, each pre-trained as one autoencoder (input 784, softmax on the last)."""
    activation: Literal["sigmoid", "relu"] = "sigmoid"
    """The hidden units' nonlinearity f: 'sigmoid' (the historical setting) or 'relu'."""
    pretrain_epochs: float = 10.0
    """Pre-training passes over the training images per layer; with a time budget, the most that may be trained."""
    pretrain_lr: float = 1e-3
    """Adam learning rate of the layer-wise autoencoders."""
    pretrain_corruption: float = 0.0
    """Fraction of each layer's inputs masked to 0 during pre-training (stacked denoising autoencoders); 0 = off."""
    label_counts: tuple[int, ...] = (100, 1000, 0)
    """Numbers of labelled training images to fine-tune with (class-stratified, nested); 0 = all of them."""
    label_seed: int = 0
    """Seed of the labelled subsets: the same images for every run seed."""
    finetune_steps: int = 3000
    """Adam steps of every fine-tuning (each arm, each label count); with a time budget, the most."""
    finetune_lr: float = 1e-3
    """Adam learning rate of the fine-tuning (both arms)."""
    batch_size: int = 128
    """Images per step: pre-training, and fine-tuning with min(batch_size, labelled images)."""
    train_images: int = 0
    """Training images (class-stratified; 0 = all 60,000): the unlabelled pre-training set and the label pool."""
    test_images: int = 0
    """Test images the accuracies and reconstruction losses are reported on (class-stratified; 0 = all 10,000)."""
    curve_points: int = 10
    """Points of each fine-tuning's curve (test accuracy on the first 2,000 test images); 0 = only the end."""
    time_budget_minutes: float = 0.0
    """Pre-train and fine-tune as long as fits this many minutes on this machine (at most `pretrain_epochs` and
    `finetune_steps`); 0 = exactly those."""
    pretrain_share: float = 0.4
    """With a time budget: the share of the training time that goes to pre-training (the rest to fine-tuning)."""

    def validate(self) -> None:
        if not self.hidden_sizes:
            raise DojoError("hidden_sizes needs at least one width (one pre-trained layer)")
        if not self.label_counts or len(set(self.label_counts)) != len(self.label_counts):
            raise DojoError(f"label_counts must be distinct numbers of labels, got {self.label_counts}")
        if any(0 < n < NUM_CLASSES for n in self.label_counts):
            raise DojoError(f"label_counts: every count must be >= {NUM_CLASSES} (one label per class) or 0 (all)")


# ----- the networks -----

def nonlinearity(name: str) -> nn.Module:
    return nn.Sigmoid() if name == "sigmoid" else nn.ReLU()


def loss_kind(layer: int, activation: str) -> str:
    """'bce' where the layer's input lies in [0, 1] (the pixels, or sigmoid codes), else 'mse' (ReLU codes)."""
    return "bce" if layer == 0 or activation == "sigmoid" else "mse"


class LayerAutoencoder(nn.Module):
    """One greedy layer: h = f(W x + b) (the encoder, kept) and the reconstruction W' h + c (the decoder: logits
    for a 'bce' layer, values for an 'mse' layer)."""

    def __init__(self, n_in: int, n_out: int, activation: str, kind: str):
        super().__init__()
        self.encoder = nn.Linear(n_in, n_out)
        self.decoder = nn.Linear(n_out, n_in)
        self.f = nonlinearity(activation)
        self.kind = kind

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(self.encoder(x))

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """The reconstruction in the input's own range: sigmoid(W' h + c) for 'bce', W' h + c for 'mse'."""
        out = self.decoder(h)
        return torch.sigmoid(out) if self.kind == "bce" else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """W' f(W x + b) + c: what `layer_loss` compares with x."""
        return self.decoder(self.encode(x))


class StackedAutoencoder(nn.Module):
    """The pre-trained layers (what a run reloads as); buffers: the Gaussian fitted to the top codes."""

    def __init__(self, cfg: StackedConfig):
        super().__init__()
        widths = (IMAGE_SIZE, *cfg.hidden_sizes)
        self.layers = nn.ModuleList(
            LayerAutoencoder(widths[l], widths[l + 1], cfg.activation, loss_kind(l, cfg.activation))
            for l in range(len(cfg.hidden_sizes)))
        self.register_buffer("code_mean", torch.zeros(widths[-1]))
        self.register_buffer("code_scale_tril", torch.eye(widths[-1]))

    @torch.no_grad()
    def codes(self, x: torch.Tensor, depth: int, batch_size: int = 5000) -> torch.Tensor:
        """h_depth: x encoded by the first `depth` layers (h_0 = x), without gradients: the frozen layers' output."""
        out = []
        for i in range(0, len(x), batch_size):
            h = x[i:i + batch_size]
            for layer in self.layers[:depth]:
                h = layer.encode(h)
            out.append(h)
        return torch.cat(out)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The top code h_L."""
        return self.codes(x, len(self.layers))

    @torch.no_grad()
    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """h_L decoded by every decoder, top to bottom: pixel values in [0, 1] (the first layer's sigmoid)."""
        for layer in reversed(self.layers):
            h = layer.decode(h)
        return h


class Classifier(nn.Module):
    """h_l = f(W_l h_{l−1} + b_l) for the hidden layers, then logits W_out h_L + b_out (softmax in the loss)."""

    def __init__(self, cfg: StackedConfig):
        super().__init__()
        widths = (IMAGE_SIZE, *cfg.hidden_sizes)
        self.hidden = nn.ModuleList(nn.Linear(widths[l], widths[l + 1]) for l in range(len(cfg.hidden_sizes)))
        self.out = nn.Linear(widths[-1], NUM_CLASSES)
        self.f = nonlinearity(cfg.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = self.f(layer(x))
        return self.out(x)


def default_init_(linear: nn.Linear, generator: torch.Generator) -> None:
    """PyTorch's nn.Linear default, W and b ~ U(−1/√n_in, 1/√n_in), drawn from `generator` (weight, then bias)."""
    bound = 1 / math.sqrt(linear.in_features)
    with torch.no_grad():
        linear.weight.uniform_(-bound, bound, generator=generator)
        linear.bias.uniform_(-bound, bound, generator=generator)


def initial_stack(cfg: StackedConfig, hidden_seed: int, decoder_seed: int) -> StackedAutoencoder:
    """The stack before pre-training: its encoders get the draws of `hidden_seed` (the scratch arm's), in order."""
    stack = StackedAutoencoder(cfg)
    hidden, decoders = torch.Generator().manual_seed(hidden_seed), torch.Generator().manual_seed(decoder_seed)
    for layer in stack.layers:
        default_init_(layer.encoder, hidden)
        default_init_(layer.decoder, decoders)
    return stack


def init_classifier_(classifier: Classifier, hidden_seed: int, softmax_seed: int,
                     stack: StackedAutoencoder | None = None) -> None:
    """Scratch: the hidden layers from the draws of `hidden_seed`; pretrained (`stack` given): the pre-trained
    encoders' weights. The softmax layer from `softmax_seed` in both arms."""
    hidden = torch.Generator().manual_seed(hidden_seed)
    for layer in classifier.hidden:
        default_init_(layer, hidden)
    default_init_(classifier.out, torch.Generator().manual_seed(softmax_seed))
    if stack is not None:
        for layer, pretrained in zip(classifier.hidden, stack.layers):
            layer.load_state_dict(pretrained.encoder.state_dict())


def build_model(cfg: StackedConfig, run: LoadedRun | None = None) -> StackedAutoencoder:
    return StackedAutoencoder(cfg)


@torch.no_grad()
def sample_images(model: StackedAutoencoder, n: int, *, label: int | None, generator: torch.Generator) -> torch.Tensor:
    """n decodings of top codes h ~ N(μ̂, Σ̂), the Gaussian fitted to the training images' top codes after
    pre-training (the stack has no prior of its own), (n, 1, 28, 28) in [0, 1]."""
    if label is not None:
        raise DojoError("ae-stacked is not conditional (its sampler draws top codes from one Gaussian fitted to all "
                        "training codes): drop --label (label=None).")
    eps = torch.randn((n, len(model.code_mean)), generator=generator)
    return model.decode(model.code_mean + eps @ model.code_scale_tril.T).clamp(0, 1).view(n, *IMAGE_SHAPE)


# ----- the two kinds of step -----

def layer_loss(output: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean per input unit: cross-entropy of sigmoid(output) to the target ('bce') or squared error ('mse')."""
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(output, target)
    return F.mse_loss(output, target)


def pretrain_step(layer: LayerAutoencoder, optimizer: torch.optim.Optimizer, h: torch.Tensor, corruption: float,
                  noise: torch.Generator) -> float:
    """One Adam step of a layer's autoencoder on the frozen codes h (a masked copy as input when corruption > 0)."""
    h_input = corrupt(h, "masking", corruption, noise) if corruption > 0 else h
    loss = layer_loss(layer(h_input), h, layer.kind)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def finetune_step(classifier: Classifier, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    """One Adam step on the softmax cross-entropy, every weight of the network trained."""
    loss = F.cross_entropy(classifier(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


@torch.no_grad()
def layer_recon(layer: LayerAutoencoder, h: torch.Tensor, batch_size: int = 5000) -> float:
    """The layer's reconstruction loss per input unit on h (mean over images and units)."""
    total = 0.0
    for i in range(0, len(h), batch_size):
        chunk = h[i:i + batch_size]
        total += layer_loss(layer(chunk), chunk, layer.kind).item() * len(chunk)
    return total / len(h)


@torch.no_grad()
def accuracy(classifier: Classifier, x: torch.Tensor, y: torch.Tensor, batch_size: int = 5000) -> float:
    correct = sum((classifier(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
                  for i in range(0, len(x), batch_size))
    return correct / len(x)


# ----- data -----

@dataclasses.dataclass
class Digits:
    x_train: torch.Tensor  # (N, 784) in [0, 1]
    y_train: torch.Tensor  # (N,) int64
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_digits(cfg: StackedConfig) -> Digits:
    train, test = image_data.load(cfg.dataset)
    train, test = train.head(cfg.train_images, seed=2), test.head(cfg.test_images, seed=3)
    x_train, x_test = (image_data.to_tensor(s.images).flatten(1) for s in (train, test))  # /255 only
    if cfg.batch_size > len(x_train):
        raise DojoError(f"batch_size {cfg.batch_size} exceeds the {len(x_train)} training images; lower it")
    return Digits(x_train, torch.as_tensor(train.labels), x_test, torch.as_tensor(test.labels))


def label_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of n labelled images: n // 10 per class (the remainder to the lowest classes), the first of
    one permutation per class drawn from `seed` — nested: the subset of 100 is part of the subset of 1,000.
    n = 0 (or every image): all indices."""
    if n == 0 or n >= len(labels):
        return np.arange(len(labels))
    classes = np.unique(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for c, label in enumerate(classes):
        members = np.flatnonzero(labels == label)
        members = members[rng.permutation(len(members))]  # drawn for every class whatever n is: nested subsets
        k = n // len(classes) + (c < n % len(classes))
        if k > len(members):
            raise DojoError(f"{n} labels need {k} images of class {label}, the training images hold {len(members)}; "
                            f"lower label_counts or raise train_images")
        chosen.append(members[:k])
    return np.sort(np.concatenate(chosen))


def count_name(n: int) -> str:
    return "all" if n == 0 else str(n)


# ----- the schedule: phases, and what fits a time budget -----

@dataclasses.dataclass(frozen=True)
class Phase:
    name: str       # "pretrain/layer1", "finetune/100/pretrained", ...
    steps: int
    layer: int = 0  # pretrain: the layer's index (0-based)
    labels: int = 0  # finetune: the label count (0 = all)
    arm: str = ""


def make_phases(cfg: StackedConfig, pretrain_epochs: float, finetune_steps: int, n_train: int) -> list[Phase]:
    steps_per_epoch = n_train // cfg.batch_size
    pretrain = [Phase(f"pretrain/layer{l + 1}", max(1, round(pretrain_epochs * steps_per_epoch)), layer=l)
                for l in range(len(cfg.hidden_sizes))]
    finetune = [Phase(f"finetune/{count_name(n)}/{arm}", finetune_steps, labels=n, arm=arm)
                for n in cfg.label_counts for arm in ARMS]
    return pretrain + finetune


def budgeted_schedule(ctx: RunContext, cfg: StackedConfig, data: Digits, subsets: dict[int, np.ndarray]) -> dict:
    """{"pretrain_epochs", "finetune_steps"} that fit the budget: the steps timed on throwaway copies, the probes
    and the final evaluation counted, `pretrain_share` of the rest to pre-training (engine/budget.py's method)."""
    stack = StackedAutoencoder(cfg)
    widths = (IMAGE_SIZE, *cfg.hidden_sizes)
    b, n = cfg.batch_size, len(data.x_train)
    noise = torch.Generator().manual_seed(0)
    pretrain_epoch_seconds = 0.0
    for l, layer in enumerate(stack.layers):
        h = torch.rand(b, widths[l])
        optimizer = torch.optim.Adam(layer.parameters(), cfg.pretrain_lr)
        step = budget.seconds_per_call(lambda: pretrain_step(layer, optimizer, h, cfg.pretrain_corruption, noise))
        pretrain_epoch_seconds += step * (n // b)
    pretrain_epoch_seconds += budget.seconds_per_call(lambda: stack.codes(data.x_test, len(stack.layers)), calls=1)
    classifier = Classifier(cfg)
    optimizer = torch.optim.Adam(classifier.parameters(), cfg.finetune_lr)
    x, y = data.x_train[:b], data.y_train[:b]
    finetune_step_seconds = budget.seconds_per_call(lambda: finetune_step(classifier, optimizer, x, y))
    test_seconds = budget.seconds_per_call(lambda: accuracy(classifier, data.x_test, data.y_test), calls=1)
    codes = torch.rand(min(2000, n), widths[-1]).numpy()
    labels = np.arange(len(codes)) % NUM_CLASSES
    probe_seconds = budget.seconds_per_call(lambda: linear_probe(codes, labels, codes[:500], labels[:500]), calls=1)
    probe_seconds *= sum(len(index) for index in subsets.values()) / len(codes)
    finetunings = len(ARMS) * len(subsets)
    curve_seconds = test_seconds * min(CURVE_TEST_IMAGES, len(data.x_test)) / len(data.x_test) * cfg.curve_points
    final_seconds = finetunings * (2 * test_seconds + curve_seconds) + probe_seconds + 3 * test_seconds
    left = budget.SAFETY * (60 * cfg.time_budget_minutes - ctx.wall_seconds - final_seconds - budget.RESERVE)
    epochs = math.floor(round(max(left, 0) * cfg.pretrain_share / pretrain_epoch_seconds / budget.GRID, 6)) \
        * budget.GRID  # in tenths, as budget.epochs_within
    steps = int(max(left, 0) * (1 - cfg.pretrain_share) / (finetunings * finetune_step_seconds))
    schedule = {"pretrain_epochs": round(min(cfg.pretrain_epochs, max(epochs, budget.GRID)), 6),
                "finetune_steps": min(cfg.finetune_steps, max(steps, 10))}
    if not ctx.quiet:
        print(f"[dldojo] time budget {cfg.time_budget_minutes:g} min: {schedule['pretrain_epochs']:g} pre-training "
              f"epochs per layer ({pretrain_epoch_seconds:.1f} s per epoch of all layers), "
              f"{schedule['finetune_steps']} steps per fine-tuning ({finetune_step_seconds * 1000:.1f} ms per step, "
              f"{finetunings} fine-tunings)", flush=True)
    return schedule


# ----- the two phases' loops -----

def pretrain_layer(ctx: RunContext, cfg: StackedConfig, s: dict, data: Digits, phase: Phase, start: int, step: int,
                   bar, noise: torch.Generator) -> int:
    """Greedy pre-training of one layer on the frozen codes of the layers below (steps start … start + steps)."""
    l, stack = phase.layer, s["stack"]
    layer, optimizer = stack.layers[l], s[f"opt_layer{l + 1}"]
    h_train, h_test = stack.codes(data.x_train, l), stack.codes(data.x_test, l)  # frozen: computed once, no grad
    key = f"layer{l + 1}"
    if step == start:
        s["results"][f"{key}_untrained"] = layer_recon(layer, h_test)
    n, b = len(h_train), cfg.batch_size
    steps_per_epoch, end = n // b, start + phase.steps
    order, order_epoch = None, -1
    while step < end:
        epoch, i = divmod(step - start, steps_per_epoch)
        if epoch != order_epoch:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(ctx.seed_for(f"{phase.name}/{epoch}")))
            order_epoch = epoch
        loss = pretrain_step(layer, optimizer, h_train[order[i * b:(i + 1) * b]], cfg.pretrain_corruption, noise)
        step += 1
        ctx.check_finite(loss, step)
        s["window"] = [s["window"][0] + loss, s["window"][1] + 1]
        bar.update(1)
        if (step - start) % steps_per_epoch == 0 or step == end:  # evaluate the layer on the test images' codes
            test = layer_recon(layer, h_test)
            if step == end:
                s["results"][key] = test
            ctx.log(step, phase=phase.name, epoch=(step - start) / steps_per_epoch,
                    train_recon=s["window"][0] / s["window"][1], test_recon=test)
            bar.set_postfix(phase=phase.name, test_recon=f"{test:.4f}")
            s["window"] = [0.0, 0]
        ctx.tick(step, s)
    return step


def finetune(ctx: RunContext, cfg: StackedConfig, s: dict, data: Digits, index: np.ndarray, phase: Phase,
             start: int, step: int, bar) -> int:
    """Fine-tune one arm with the labelled images `index` (steps start … start + steps)."""
    classifier = s["classifier"]
    if step == start:  # a fresh network and optimiser for this arm (a resumed phase has them from the checkpoint)
        init_classifier_(classifier, ctx.seed_for("init/hidden"), ctx.seed_for("init/softmax"),
                         s["stack"] if phase.arm == "pretrained" else None)
        s["opt_classifier"] = torch.optim.Adam(classifier.parameters(), lr=cfg.finetune_lr)
    optimizer = s["opt_classifier"]
    x, y = data.x_train[index], data.y_train[index]
    b = min(cfg.batch_size, len(index))
    steps_per_epoch, end = len(index) // b, start + phase.steps
    curve_every = max(1, phase.steps // cfg.curve_points) if cfg.curve_points else phase.steps
    x_curve, y_curve = data.x_test[:CURVE_TEST_IMAGES], data.y_test[:CURVE_TEST_IMAGES]
    order, order_epoch = None, -1
    while step < end:
        epoch, i = divmod(step - start, steps_per_epoch)
        if epoch != order_epoch:  # the same minibatches for both arms: the stream is named by the label count only
            seed = ctx.seed_for(f"finetune/{count_name(phase.labels)}/{epoch}")
            order = torch.randperm(len(index), generator=torch.Generator().manual_seed(seed))
            order_epoch = epoch
        batch = order[i * b:(i + 1) * b]
        loss = finetune_step(classifier, optimizer, x[batch], y[batch])
        step += 1
        ctx.check_finite(loss, step)
        s["window"] = [s["window"][0] + loss, s["window"][1] + 1]
        bar.update(1)
        if (step - start) % curve_every == 0 or step == end:
            record = {"phase": phase.name, "train_loss": s["window"][0] / s["window"][1],
                      "test_accuracy_curve": accuracy(classifier, x_curve, y_curve)}
            s["window"] = [0.0, 0]
            if step == end:
                result = {"test_accuracy": accuracy(classifier, data.x_test, data.y_test),
                          "train_accuracy": accuracy(classifier, x, y)}
                s["results"][phase.name] = result
                record.update(result)
            ctx.log(step, **record)
            bar.set_postfix(phase=phase.name, test=f"{record['test_accuracy_curve']:.3f}")
        ctx.tick(step, s)
    return step


# ----- figures -----

def save_figures(ctx: RunContext, cfg: StackedConfig, stack: StackedAutoencoder, data: Digits, metrics: dict,
                 label_sizes: dict[int, int], phases: list[Phase]) -> None:
    import matplotlib.pyplot as plt

    # test accuracy against the number of labels
    counts = sorted(cfg.label_counts, key=lambda n: label_sizes[n])
    xs = [label_sizes[n] for n in counts]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for arm, style in (("pretrained", "o-"), ("scratch", "s-"), ("frozen", "^--")):
        label = {"pretrained": "pre-trained, fine-tuned", "scratch": "random init, trained end to end",
                 "frozen": "pre-trained, frozen + logistic regression"}[arm]
        ax.plot(xs, [metrics[f"test_accuracy_{count_name(n)}_{arm}"] for n in counts], style, label=label)
    ax.set(xscale="log", xlabel="labelled training images", ylabel="test accuracy",
           title=f"greedy layer-wise pre-training, {'-'.join(map(str, (IMAGE_SIZE, *cfg.hidden_sizes)))}-10 "
                 f"({cfg.activation})")
    ax.set_xticks(xs, [f"{x:,}" for x in xs])
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    ctx.save_figure(fig, "accuracy_vs_labels")

    # pre-training: each layer's test reconstruction loss per epoch, against the untrained layer's
    h = ctx.history("phase", "epoch", "test_recon")
    layers = len(cfg.hidden_sizes)
    fig, axes = plt.subplots(1, layers, figsize=(3.6 * layers, 3.2), squeeze=False)
    for l, ax in enumerate(axes[0]):
        rows = [i for i, p in enumerate(h["phase"]) if p == f"pretrain/layer{l + 1}"]
        ax.plot([h["epoch"][i] for i in rows], [h["test_recon"][i] for i in rows], "o-", ms=3, label="pre-trained")
        ax.axhline(metrics[f"test_recon_layer{l + 1}_untrained"], color="grey", ls="--", lw=1, label="untrained")
        ax.set(xlabel="epoch", title=f"layer {l + 1}: {(IMAGE_SIZE, *cfg.hidden_sizes)[l]} → {cfg.hidden_sizes[l]}",
               ylabel=("cross-entropy" if loss_kind(l, cfg.activation) == "bce" else "squared error") + " per unit")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    ctx.save_figure(fig, "pretraining")

    # fine-tuning curves: test accuracy (2,000 test images) against the step, both arms
    h = ctx.history("phase", "test_accuracy_curve")
    starts = dict(zip((p.name for p in phases), np.cumsum([0] + [p.steps for p in phases])))
    fig, axes = plt.subplots(1, len(counts), figsize=(3.6 * len(counts), 3.2), squeeze=False)
    for ax, n in zip(axes[0], counts):
        for arm in ARMS:
            name = f"finetune/{count_name(n)}/{arm}"
            rows = [i for i, p in enumerate(h["phase"]) if p == name]
            ax.plot([h["step"][i] - starts[name] for i in rows], [h["test_accuracy_curve"][i] for i in rows],
                    marker="o", ms=3, label=arm)
        ax.set(xlabel="fine-tuning step", ylabel="test accuracy (2,000 images)", title=f"{label_sizes[n]:,} labels")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    ctx.save_figure(fig, "finetuning_curves")

    # the first layer's filters (the first 100 units' weights, each scaled to [0, 1]) and reconstructions
    weights = stack.layers[0].encoder.weight.detach()[:100]
    low, high = weights.amin(1, keepdim=True), weights.amax(1, keepdim=True)
    fig, ax = plt.subplots(figsize=(5.5, 5.8))
    ax.imshow(grid(((weights - low) / (high - low + 1e-12)).view(-1, *IMAGE_SHAPE), 10), cmap="gray")
    ax.set(xticks=[], yticks=[], title=f"layer 1 after pre-training: the weights of {len(weights)} units")
    ctx.save_figure(fig, "layer1_filters")
    index = first_of_each_class(data.y_test.numpy())
    x = data.x_test[index]
    with torch.no_grad():
        first = stack.layers[0]
        rows = [("input", x), ("layer-1 autoencoder", first.decode(first.encode(x))),
                (f"all {layers} layers, down and up", stack.decode(stack.encode(x)))]
    ctx.save_figure(labelled_rows(rows), "reconstructions")

    images = sample_images(stack, 64, label=None, generator=torch.Generator().manual_seed(ctx.seed_for("samples")))
    fig, ax = plt.subplots(figsize=(5, 5.3))
    ax.imshow(grid(images, 8), cmap="gray", vmin=0, vmax=1)
    ax.set(xticks=[], yticks=[], title="decoded top codes h ~ N(μ̂, Σ̂) (fitted after training)")
    ctx.save_figure(fig, "samples")


# ----- the run -----

def run(ctx: RunContext, cfg: StackedConfig) -> dict[str, float]:
    # 1. data, the labelled subsets, the stack (its encoders start from the scratch arm's draws), the classifier
    data = load_digits(cfg)
    subsets = {n: label_subset(data.y_train.numpy(), n, cfg.label_seed) for n in cfg.label_counts}
    for n, index in subsets.items():
        if n > len(data.x_train):
            raise DojoError(f"label_counts asks for {n} labels, there are {len(data.x_train)} training images")
    stack = initial_stack(cfg, ctx.seed_for("init/hidden"), ctx.seed_for("init/decoders"))
    classifier = Classifier(cfg)
    if cfg.time_budget_minutes:
        schedule = ctx.decide("schedule", lambda: budgeted_schedule(ctx, cfg, data, subsets))
    else:
        schedule = {"pretrain_epochs": cfg.pretrain_epochs, "finetune_steps": cfg.finetune_steps}
    phases = make_phases(cfg, schedule["pretrain_epochs"], schedule["finetune_steps"], len(data.x_train))
    total_steps = sum(p.steps for p in phases)

    # 2. the phases, one after the other on one step counter: pre-train layer 1, 2, …; fine-tune every arm
    s = {"stack": stack, "classifier": classifier,
         **{f"opt_layer{l + 1}": torch.optim.Adam(layer.parameters(), lr=cfg.pretrain_lr)
            for l, layer in enumerate(stack.layers)},
         "opt_classifier": torch.optim.Adam(classifier.parameters(), lr=cfg.finetune_lr),
         "results": {}, "window": [0.0, 0]}
    step = ctx.restore(s)
    noise = ctx.rng("corruption", "torch")
    bar = ctx.progress(total_steps, initial=step)
    clock, seconds = time.perf_counter(), {"pretrain": 0.0, "finetune": 0.0}
    start = 0
    for phase in phases:
        if step < start + phase.steps:
            phase_started = time.perf_counter()
            if phase.name.startswith("pretrain"):
                step = pretrain_layer(ctx, cfg, s, data, phase, start, step, bar, noise)
                seconds["pretrain"] += time.perf_counter() - phase_started
            else:
                step = finetune(ctx, cfg, s, data, subsets[phase.labels], phase, start, step, bar)
                seconds["finetune"] += time.perf_counter() - phase_started
        start += phase.steps
    bar.close()

    # 3. what pre-training alone gives (logistic regression on the frozen top codes), the stack's reconstructions
    clock = time.perf_counter()
    results = s["results"]
    top_train, top_test = stack.encode(data.x_train), stack.encode(data.x_test)
    fit_code_gaussian(stack, top_train)
    metrics: dict[str, float] = {}
    label_sizes = {n: len(index) for n, index in subsets.items()}
    for n, index in subsets.items():
        name = count_name(n)
        for arm in ARMS:
            metrics[f"test_accuracy_{name}_{arm}"] = results[f"finetune/{name}/{arm}"]["test_accuracy"]
        metrics[f"test_accuracy_gain_{name}"] = metrics[f"test_accuracy_{name}_pretrained"] \
            - metrics[f"test_accuracy_{name}_scratch"]
        metrics[f"test_accuracy_{name}_frozen"] = linear_probe(top_train[index].numpy(), data.y_train[index].numpy(),
                                                               top_test.numpy(), data.y_test.numpy())
        for arm in ARMS:
            metrics[f"train_accuracy_{name}_{arm}"] = results[f"finetune/{name}/{arm}"]["train_accuracy"]
    for l in range(len(cfg.hidden_sizes)):
        metrics[f"test_recon_layer{l + 1}"] = results[f"layer{l + 1}"]
        metrics[f"test_recon_layer{l + 1}_untrained"] = results[f"layer{l + 1}_untrained"]
    with torch.no_grad():
        stack_output = stack.decode(top_test).clamp(1e-7, 1 - 1e-7)
    metrics["test_bce_stack"] = F.binary_cross_entropy(stack_output, data.x_test, reduction="sum").item() \
        / len(data.x_test)
    eval_seconds = time.perf_counter() - clock

    # 4. the report
    ctx.save_weights(stack.state_dict())
    ctx.save_table("accuracy", [
        {"labels": f"{label_sizes[n]:,}",
         "pre-trained + fine-tuned": f"{metrics[f'test_accuracy_{count_name(n)}_pretrained']:.4f}",
         "random init, end to end": f"{metrics[f'test_accuracy_{count_name(n)}_scratch']:.4f}",
         "gain": f"{metrics[f'test_accuracy_gain_{count_name(n)}']:+.4f}",
         "pre-trained, frozen + logistic regression": f"{metrics[f'test_accuracy_{count_name(n)}_frozen']:.4f}"}
        for n in sorted(cfg.label_counts, key=lambda n: label_sizes[n])],
        caption=f"Test accuracy on {len(data.x_test):,} {cfg.dataset} test images; {schedule['finetune_steps']} "
                f"Adam steps per fine-tuning, the same minibatches for both arms; labelled subsets class-stratified "
                f"(seed {cfg.label_seed}), pre-training on all {len(data.x_train):,} training images without labels.")
    widths = (IMAGE_SIZE, *cfg.hidden_sizes)
    ctx.save_table("pretraining", [
        {"layer": f"{l + 1}: {widths[l]} → {widths[l + 1]}",
         "loss": "cross-entropy" if loss_kind(l, cfg.activation) == "bce" else "squared error",
         "untrained": f"{results[f'layer{l + 1}_untrained']:.4f}", "pre-trained": f"{results[f'layer{l + 1}']:.4f}"}
        for l in range(len(cfg.hidden_sizes))],
        caption=f"Each layer's reconstruction loss per input unit on the test images' codes (from the frozen layers "
                f"below), before and after its {schedule['pretrain_epochs']:g} epochs of pre-training. The whole "
                f"stack, down and up: {metrics['test_bce_stack']:.1f} nats per test image.")
    save_figures(ctx, cfg, stack, data, metrics, label_sizes, phases)
    ctx.add_facts(schedule=schedule, labelled_images={count_name(n): size for n, size in label_sizes.items()},
                  train_images=len(data.x_train), test_images=len(data.x_test), steps=total_steps,
                  classifier_params=sum(p.numel() for p in classifier.parameters()), dataset=cfg.dataset)
    ctx.add_timings(pretrain_seconds=seconds["pretrain"], finetune_seconds=seconds["finetune"],
                    eval_seconds=eval_seconds)
    return metrics


PRESETS = {
    "smoke": {"train_images": 256, "test_images": 100, "hidden_sizes": (32, 16, 8), "pretrain_epochs": 1,
              "label_counts": (100, 0), "finetune_steps": 12, "batch_size": 32, "curve_points": 2},
    "quick": {"time_budget_minutes": 1.5},  # 90 s of wall on 2 AVX2 cores (results/ae-stacked-quick.json)
    # 298 s of wall on 2 AVX2 cores (results/ae-stacked-full.json)
    "full": {"pretrain_epochs": 20, "finetune_steps": 5000},
}

register(Experiment(
    name="ae-stacked",
    topic="Stacked autoencoder: greedy layer-wise pre-training (frozen layers), fine-tuning with 100 / 1,000 / all "
          "labels against the same sigmoid network trained end to end from random initial weights",
    paper="Bengio, Lamblin, Popovici & Larochelle 2007 (greedy layer-wise training); Hinton, Osindero & Teh 2006; "
          "Vincent et al. 2008 (stacked denoising autoencoders); Erhan et al. 2010",
    config_cls=StackedConfig, presets=PRESETS, run=run, build_model=build_model,
    metric="test_accuracy_100_pretrained", direction="max", datasets=("mnist", "fashion-mnist"),
))
