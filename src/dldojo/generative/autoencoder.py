"""`ae-mnist`: a plain and a denoising autoencoder of the same shape, trained side by side and compared.

Curriculum: 深層生成モデル — オートエンコーダ (自己符号化器), デノイジング・オートエンコーダ (JDLA E資格). Papers:
Vincent, Larochelle, Bengio & Manzagol 2008, "Extracting and Composing Robust Features with Denoising
Autoencoders" (ICML); a linear autoencoder with a k-unit code learns the span of the first k principal
components: Baldi & Hornik 1989 ("Neural networks and principal component analysis"), hence the PCA baseline.

Model: encoder h = f(x) = W₂ ReLU(W₁ x + b₁) + b₂ (784 → 256 → 32, a linear code), decoder
x̂ = g(h) = sigmoid(W₄ ReLU(W₃ h + b₃) + b₄) (32 → 256 → 784). Loss: the reconstruction cross-entropy, summed over
the d = 784 pixels (nats per image; Vincent et al.'s L_H for inputs in [0, 1]),

    L(x, x̂) = −Σ_i [x_i log x̂_i + (1 − x_i) log(1 − x̂_i)],     x̂ = g(f(x̃))

plain autoencoder: x̃ = x. Denoising autoencoder: x̃ ~ q(x̃ | x) is a corrupted copy and the target stays the clean
x, so the network cannot copy its input; it must learn where the data lie. Corruptions (`corruption`):
  masking  (Vincent et al. 2008, §2.3): for every image and every use, round(ν·d) pixels chosen at random are set
           to 0 (ν = `corruption_level`, the fraction destroyed; exactly that many per image)
  gaussian x̃ = clip(x + σ ε, 0, 1), ε ~ N(0, I) (σ = `corruption_level`; the noise of Chollet's Keras tutorial).
The targets are grey values, so the cross-entropy's minimum is not 0 but the targets' own entropy Σ_i H(x_i)
(the fact `bce_floor_nats`: what a perfect reconstruction would score); like vae-mnist's course recipe it is a
reconstruction loss here, not a log-likelihood.

Protocol. Both networks start from the same initial weights, see the same minibatches in the same order (Adam,
lr 1e-3, batch 128, `epochs` or what fits `time_budget_minutes`) and differ only in x̃. The reported models are
the last ones (the test set chooses nothing). Test errors, on clean test images and on test images corrupted
once with a fixed seed (the same noisy images in every run and seed), targets always the clean images:
`test_bce_<model>` / `test_bce_<model>_on_noisy` (nats per image) and `test_mse_…` (mean squared error per pixel).
Baselines: PCA with as many components as the code (the best linear autoencoder, fitted on the training images:
`test_mse_pca`, `test_mse_pca_on_noisy`; no BCE, its outputs leave [0, 1]) and the corrupted image taken as its
own reconstruction (`test_mse_noisy_input`: what doing nothing costs). What the codes hold: a logistic regression
(scikit-learn, standardised features) trained on the codes of `probe_images` training images, accuracy on the
test codes (`test_probe_accuracy_<model>`), with the PCA codes and an untrained encoder's codes as baselines.
Primary metric: `test_bce_denoising_on_noisy`, the denoising autoencoder's job; `test_bce_plain_on_noisy` next to
it is the point of the comparison (a plain autoencoder reproduces the corruption it is given).

Sampling (`dldojo sample RUN_DIR`). A plain or denoising autoencoder has no prior p(h): nothing to sample from.
After training, a Gaussian N(μ̂, Σ̂) (mean and full covariance) is fitted to the codes of the training images
and stored with the weights; `sample_images` draws h from it and shows the *denoising* autoencoder's decoder
output g(h) (the pixel means). This is a density bolted on afterwards: the codes are not Gaussian, so expect
blurred digits and some non-digits. The VAE (vae-mnist) is trained so that its codes fill N(0, I); that is the
difference. Bengio et al. 2013 ("Generalized denoising auto-encoders as generative models") sample a denoising
autoencoder properly, by a Markov chain of corrupt-and-denoise steps; not done here.

Measured (`python benchmarks/run.py ae-mnist --preset full` / `--preset quick`, seed 0, 2 threads, AMD EPYC Zen 2
with AVX2 only, commit cd01b37; results/ae-mnist-full.json: 30 epochs, 208 s of wall; results/ae-mnist-quick.json:
11.3 epochs in the 1.5-minute budget, 84 s), full (quick): cross-entropy to the clean test images, plain 59.4 (62.2)
nats from clean / 165.0 (164.2) from masked inputs, denoising 107.3 (113.5) / 73.2 (77.4) (floor 45.5); MSE per
pixel from masked inputs: denoising 0.0105 (0.0122), plain 0.0463 (0.0474), PCA-32 0.0440, the masked image itself
0.0570; linear probe: plain 0.909 (0.903), denoising 0.914 (0.913), PCA-32 0.899, untrained encoder 0.738.
Two things to see in the report: the plain autoencoder's error on masked inputs *grows* while it trains (it
learns to copy, holes included), and the denoising network, trained with half of every image erased, has never
seen a clean image: given one, it paints too much ink (107.3 nats against 73.2 on the masked images it was
trained for). Dropout removes that mismatch by
scaling by 1 / (1 − p); Vincent et al. use clean inputs for features anyway, and the probe shows the codes are fine.
The course gives no reference numbers for this experiment.
"""

from __future__ import annotations

import copy
import dataclasses
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
from dldojo.generative.pictures import grid, labelled_rows

IMAGE_SHAPE = (1, 28, 28)
IMAGE_SIZE = 784
TEST_CORRUPTION_SEED = 0  # the test set's one corruption: the same noisy images for every run and seed
MODELS = ("plain", "denoising")


@dataclasses.dataclass
class AEConfig:
    RANGES: ClassVar[dict] = {
        "hidden_size": (1, 8192), "code_size": (1, 784), "corruption_level": (0, 10), "epochs": (0.1, 10000),
        "batch_size": (1, 60000), "lr": (1e-7, 1.0), "train_images": (0, 60000), "test_images": (0, 10000),
        "probe_images": (0, 60000), "time_budget_minutes": (0, 10**5)}
    """Allowed (low, high) of the numeric fields, checked before anything is created (`engine.config`)."""

    dataset: Literal["mnist", "fashion-mnist"] = "mnist"
    """The images: 'mnist' (digits) or 'fashion-mnist' (Zalando articles, same size and format)."""
    hidden_size: int = 256
    """Units of the encoder's and the decoder's hidden ReLU layer."""
    code_size: int = 32
    """Units of the code h (linear, no activation); PCA is given as many components."""
    corruption: Literal["masking", "gaussian"] = "masking"
    """The denoising autoencoder's corruption: 'masking' (Vincent et al. 2008: pixels set to 0) or 'gaussian'
    (additive noise, clipped to [0, 1])."""
    corruption_level: float = 0.5
    """masking: the fraction ν of the pixels set to 0 (exactly round(ν·784) per image); gaussian: the noise's σ."""
    epochs: float = 20.0
    """Passes over the training images (tenths allowed); with a time budget, the most that may be trained."""
    batch_size: int = 128
    """Training images per Adam step (each network takes one step per batch)."""
    lr: float = 1e-3
    """Adam learning rate of both networks."""
    train_images: int = 0
    """Training images (class-stratified; 0 = all 60,000)."""
    test_images: int = 0
    """Test images the errors and probe accuracies are reported on (class-stratified; 0 = all 10,000)."""
    probe_images: int = 10000
    """Training images (class-stratified) whose codes train each linear probe; 0 = all the training images."""
    time_budget_minutes: float = 0.0
    """Train as many epochs (at most `epochs`) as fit this many minutes on this machine (`engine.budget`),
    the baselines and the final evaluation included; 0 = train exactly `epochs`."""

    def validate(self) -> None:
        if self.corruption == "masking" and self.corruption_level > 1:
            raise DojoError(f"corruption_level {self.corruption_level} is a fraction of the pixels for masking: "
                            f"choose a value in [0, 1].")
        if self.train_images and self.train_images < self.batch_size:
            raise DojoError(f"train_images {self.train_images} is smaller than one batch ({self.batch_size}).")


# ----- the model -----

class Autoencoder(nn.Module):
    """h = f(x) (784 → hidden → code, ReLU, linear code), x̂ = g(h) = sigmoid(decoder logits) (code → hidden → 784).
    The buffers hold the Gaussian N(μ̂, L Lᵀ) fitted to the training codes after training (for `sample_images`)."""

    def __init__(self, hidden_size: int, code_size: int, image_size: int = IMAGE_SIZE):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(image_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, code_size))
        self.decoder = nn.Sequential(nn.Linear(code_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, image_size))
        self.register_buffer("code_mean", torch.zeros(code_size))
        self.register_buffer("code_scale_tril", torch.eye(code_size))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 784) in [0, 1] → the code h (B, code_size)."""
        return self.encoder(x)

    def decode_logits(self, h: torch.Tensor) -> torch.Tensor:
        """h → the logits of x̂ (the cross-entropy is computed from logits: stable where x̂ → 0 or 1)."""
        return self.decoder(h)

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """h → x̂ = sigmoid(logits) in [0, 1]."""
        return torch.sigmoid(self.decoder(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The logits of g(f(x))."""
        return self.decode_logits(self.encode(x))


class AutoencoderPair(nn.Module):
    """What an ae-mnist run trains and reloads as: the `plain` and the `denoising` autoencoder (same shape)."""

    def __init__(self, cfg: AEConfig):
        super().__init__()
        self.plain = Autoencoder(cfg.hidden_size, cfg.code_size)
        self.denoising = copy.deepcopy(self.plain)  # the same initial weights: the runs differ only in x̃


def build_model(cfg: AEConfig, run: LoadedRun | None = None) -> AutoencoderPair:
    return AutoencoderPair(cfg)


def corrupt(x: torch.Tensor, kind: str, level: float, generator: torch.Generator) -> torch.Tensor:
    """x̃ ~ q(x̃ | x) for flattened images x (B, d) in [0, 1]. masking: exactly round(level·d) pixels of every image,
    chosen uniformly at random, set to 0 (Vincent et al. 2008); gaussian: clip(x + level·ε, 0, 1), ε ~ N(0, I)."""
    if kind == "masking":
        k = round(level * x.shape[1])
        if k == 0:
            return x.clone()
        index = torch.rand(x.shape, generator=generator).topk(k, dim=1).indices  # k distinct pixels per row
        return x.scatter(1, index, 0.0)
    if kind == "gaussian":
        return (x + level * torch.randn(x.shape, generator=generator)).clamp(0, 1)
    raise DojoError(f"corruption must be masking or gaussian, got {kind!r}")


def reconstruction_bce(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per image (B,): −Σ_i [x_i log x̂_i + (1 − x_i) log(1 − x̂_i)] with x̂ = sigmoid(logits), in nats."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)


def bce_floor(x: torch.Tensor) -> float:
    """The mean over images of Σ_i H(x_i), the cross-entropy of the perfect reconstruction x̂ = x (nats per image)."""
    p = x.double().clamp(1e-12, 1 - 1e-12)
    return float(-(p * p.log() + (1 - p) * (1 - p).log()).sum(1).mean())


def train_step(model: Autoencoder, optimizer: torch.optim.Optimizer, x_input: torch.Tensor,
               x_target: torch.Tensor) -> torch.Tensor:
    """One Adam step on the mean of L(x_target, g(f(x_input))); returns the per-image losses (detached)."""
    loss = reconstruction_bce(model(x_input), x_target)
    optimizer.zero_grad(set_to_none=True)
    loss.mean().backward()
    optimizer.step()
    return loss.detach()


@torch.no_grad()
def sample_images(model: AutoencoderPair, n: int, *, label: int | None, generator: torch.Generator) -> torch.Tensor:
    """n decodings g(h) of the denoising autoencoder at h ~ N(μ̂, Σ̂), the Gaussian fitted to its training codes
    after training (an autoencoder has no prior of its own: see the module docstring), (n, 1, 28, 28) in [0, 1]."""
    if label is not None:
        raise DojoError("ae-mnist is not conditional (its sampler draws codes from one Gaussian fitted to all "
                        "training codes): drop --label (label=None).")
    return decode_gaussian_codes(model.denoising, n, generator).view(n, *IMAGE_SHAPE)


def decode_gaussian_codes(ae: Autoencoder, n: int, generator: torch.Generator) -> torch.Tensor:
    """g(μ̂ + L ε) for ε ~ N(0, I): n flattened images."""
    eps = torch.randn((n, len(ae.code_mean)), generator=generator)
    return ae.decode(ae.code_mean + eps @ ae.code_scale_tril.T)


@torch.no_grad()
def encode(ae: nn.Module, x: torch.Tensor, batch_size: int = 5000) -> torch.Tensor:
    return torch.cat([ae.encode(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


@torch.no_grad()
def fit_code_gaussian(ae: nn.Module, codes: torch.Tensor) -> None:
    """Store the mean and the Cholesky factor of the covariance of `codes` (float64, + 1e-6·I) in `ae`'s buffers."""
    h = codes.double()
    cov = torch.cov(h.T).reshape(h.shape[1], h.shape[1]) + 1e-6 * torch.eye(h.shape[1], dtype=torch.float64)
    ae.code_mean.copy_(h.mean(0))
    ae.code_scale_tril.copy_(torch.linalg.cholesky(cov))


# ----- data -----

@dataclasses.dataclass
class Images:
    x_train: torch.Tensor        # (N, 784) in [0, 1]
    y_train: np.ndarray
    x_test: torch.Tensor         # (M, 784) in [0, 1]
    x_test_noisy: torch.Tensor   # the test images corrupted once, with TEST_CORRUPTION_SEED
    y_test: np.ndarray
    classes: tuple[str, ...]


def load_images(cfg: AEConfig) -> Images:
    train, test = image_data.load(cfg.dataset)
    train, test = train.head(cfg.train_images, seed=2), test.head(cfg.test_images, seed=3)
    x_train, x_test = (image_data.to_tensor(s.images).flatten(1) for s in (train, test))  # /255 only
    if cfg.batch_size > len(x_train):
        raise DojoError(f"batch_size {cfg.batch_size} exceeds the {len(x_train)} training images; lower it")
    noisy = corrupt(x_test, cfg.corruption, cfg.corruption_level, torch.Generator().manual_seed(TEST_CORRUPTION_SEED))
    return Images(x_train, train.labels, x_test, noisy, test.labels, train.classes)


def probe_subset(data: Images, n: int) -> np.ndarray:
    """Indices of a class-stratified subset of about n training images (all when n is 0), fixed (seed 4)."""
    if n <= 0 or n >= len(data.y_train):
        return np.arange(len(data.y_train))
    return np.sort(image_data.stratified_split(data.y_train, n / len(data.y_train), seed=4)[1])


# ----- evaluation -----

@torch.no_grad()
def reconstruction_errors(ae: Autoencoder, x_input: torch.Tensor, x_clean: torch.Tensor,
                          batch_size: int = 2000) -> dict[str, float]:
    """Mean cross-entropy per image (nats) and mean squared error per pixel of g(f(x_input)) against x_clean."""
    bce = sq = 0.0
    for i in range(0, len(x_input), batch_size):
        logits = ae(x_input[i:i + batch_size])
        target = x_clean[i:i + batch_size]
        bce += reconstruction_bce(logits, target).sum().item()
        sq += (torch.sigmoid(logits) - target).pow(2).sum().item()
    return {"bce": bce / len(x_input), "mse": sq / x_input.numel()}


def linear_probe(train_codes: np.ndarray, train_labels: np.ndarray, test_codes: np.ndarray,
                 test_labels: np.ndarray) -> float:
    """Test accuracy of a multinomial logistic regression (scikit-learn, lbfgs, L2 with C = 1) on standardised codes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    probe.fit(train_codes, train_labels)
    return float(probe.score(test_codes, test_labels))


@dataclasses.dataclass
class Baselines:
    """What needs no training: PCA with code_size components, the corrupted input itself, an untrained encoder."""
    mse_pca: float
    mse_pca_on_noisy: float
    mse_noisy_input: float
    probe_pca: float
    probe_untrained: float
    pca_noisy_examples: torch.Tensor  # PCA's reconstructions of the figure's corrupted test images
    probe_seconds: float              # one probe's wall time (the final evaluation runs two more)


def baselines(cfg: AEConfig, data: Images, untrained: Autoencoder, probe_index: np.ndarray,
              example_index: list[int]) -> Baselines:
    from sklearn.decomposition import PCA

    pca = PCA(cfg.code_size, random_state=0).fit(data.x_train.numpy())

    def pca_reconstruct(x: torch.Tensor) -> np.ndarray:
        return pca.inverse_transform(pca.transform(x.numpy()))

    clean = data.x_test.numpy()
    y_probe = data.y_train[probe_index]
    probe_pca = linear_probe(pca.transform(data.x_train[probe_index].numpy()), y_probe,
                             pca.transform(clean), data.y_test)
    started = time.perf_counter()
    probe_untrained = linear_probe(encode(untrained, data.x_train[probe_index]).numpy(), y_probe,
                                   encode(untrained, data.x_test).numpy(), data.y_test)
    probe_seconds = time.perf_counter() - started
    return Baselines(
        mse_pca=float(((pca_reconstruct(data.x_test) - clean) ** 2).mean()),
        mse_pca_on_noisy=float(((pca_reconstruct(data.x_test_noisy) - clean) ** 2).mean()),
        mse_noisy_input=float((data.x_test_noisy - data.x_test).pow(2).mean()),
        probe_pca=probe_pca, probe_untrained=probe_untrained,
        pca_noisy_examples=torch.from_numpy(pca_reconstruct(data.x_test_noisy[example_index])).float().clamp(0, 1),
        probe_seconds=probe_seconds)


def budgeted_epochs(ctx: RunContext, cfg: AEConfig, data: Images, probe_seconds: float) -> float:
    """The epochs (at most cfg.epochs) that fit the budget: a step of both networks and a test pass timed on
    throwaway copies; the final evaluation (two probes, four test passes, the code Gaussians) counted."""
    trial = AutoencoderPair(cfg)
    opts = {m: torch.optim.Adam(getattr(trial, m).parameters(), cfg.lr) for m in MODELS}
    x = data.x_train[:cfg.batch_size]
    x_noisy = corrupt(x, cfg.corruption, cfg.corruption_level, torch.Generator().manual_seed(0))

    def step() -> None:
        train_step(trial.plain, opts["plain"], x, x)
        train_step(trial.denoising, opts["denoising"], x_noisy, x)

    step_seconds = budget.seconds_per_call(step)
    probe = data.x_test[:1000]
    test_seconds = 4 * budget.seconds_per_call(lambda: reconstruction_errors(trial.plain, probe, probe), calls=1) \
        * len(data.x_test) / len(probe)  # both networks on clean and on noisy images
    epochs = budget.epochs_within(60 * cfg.time_budget_minutes, ctx.wall_seconds, cap=cfg.epochs,
                                  epoch_seconds=step_seconds * (len(data.x_train) // cfg.batch_size),
                                  eval_seconds=test_seconds, eval_every=1.0,
                                  final_seconds=2 * test_seconds + 2 * probe_seconds)
    if not ctx.quiet:
        print(f"[dldojo] time budget {cfg.time_budget_minutes:g} min: {epochs:g} of at most {cfg.epochs:g} epochs "
              f"({step_seconds * 1000:.0f} ms per step of both networks)", flush=True)
    return epochs


# ----- figures -----

def first_of_each_class(labels: np.ndarray) -> list[int]:
    return [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)]


def save_figures(ctx: RunContext, cfg: AEConfig, pair: AutoencoderPair, data: Images, base: Baselines,
                 example_index: list[int]) -> None:
    import matplotlib.pyplot as plt

    # learning curves: the training loss (on each network's own input) and the test errors per epoch
    keys = [f"{split}_{m}{suffix}" for m in MODELS for split, suffix in
            (("train_bce", ""), ("test_bce", ""), ("test_bce", "_on_noisy"))]
    h = ctx.history("epoch", *keys)
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.6))
    for i, m in enumerate(MODELS):
        axes[0].plot(h["epoch"], h[f"train_bce_{m}"], marker="o", ms=3, color=f"C{i}",
                     label=f"{m}: train ({'corrupted' if m == 'denoising' else 'clean'} input)")
        axes[1].plot(h["epoch"], h[f"test_bce_{m}"], marker="o", ms=3, color=f"C{i}", label=f"{m}: clean test input")
        axes[1].plot(h["epoch"], h[f"test_bce_{m}_on_noisy"], marker="s", ms=3, ls="--", color=f"C{i}",
                     label=f"{m}: corrupted test input")
    floor = bce_floor(data.x_test)
    for ax in axes:
        ax.axhline(floor, color="grey", ls=":", lw=1, label="floor: entropy of the grey targets")
        ax.set(xlabel="epoch", ylabel="cross-entropy to the clean image (nats)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_title("training loss")
    axes[1].set_title("test reconstruction error")
    fig.tight_layout()
    ctx.save_figure(fig, "learning_curves")

    # the denoising picture: input | corrupted | what each model makes of it
    x, x_noisy = data.x_test[example_index], data.x_test_noisy[example_index]
    with torch.no_grad():
        rows = [("input", x), (f"corrupted ({cfg.corruption} {cfg.corruption_level:g})", x_noisy),
                ("plain AE (corrupted)", pair.plain.decode(pair.plain.encode(x_noisy))),
                ("denoising AE (corrupted)", pair.denoising.decode(pair.denoising.encode(x_noisy))),
                (f"PCA-{cfg.code_size} (corrupted)", base.pca_noisy_examples),
                ("plain AE (input)", pair.plain.decode(pair.plain.encode(x))),
                ("denoising AE (input)", pair.denoising.decode(pair.denoising.encode(x)))]
    ctx.save_figure(labelled_rows(rows), "denoising")

    # decodings of codes drawn from the Gaussian fitted to each network's training codes
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.3))
    for ax, m in zip(axes, MODELS):
        generator = torch.Generator().manual_seed(ctx.seed_for("samples"))
        images = decode_gaussian_codes(getattr(pair, m), 64, generator).view(64, *IMAGE_SHAPE)
        ax.imshow(grid(images, 8), cmap="gray", vmin=0, vmax=1)
        ax.set(xticks=[], yticks=[], title=f"{m} AE: g(h), h ~ N(μ̂, Σ̂) fitted to its training codes")
    fig.suptitle("an autoencoder has no prior: a Gaussian fitted after training stands in for one", fontsize=9)
    fig.tight_layout()
    ctx.save_figure(fig, "samples")


# ----- the run -----

def run(ctx: RunContext, cfg: AEConfig) -> dict[str, float]:
    # 1. data, the two networks (same initial weights), the baselines that need no training
    data = load_images(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.seed_for("init"))
        pair = AutoencoderPair(cfg)
    probe_index = probe_subset(data, cfg.probe_images)
    example_index = first_of_each_class(data.y_test)
    base = baselines(cfg, data, pair.plain, probe_index, example_index)
    optimizers = {m: torch.optim.Adam(getattr(pair, m).parameters(), lr=cfg.lr) for m in MODELS}
    n, b = len(data.x_train), cfg.batch_size
    steps_per_epoch = n // b
    epochs = (ctx.decide("epochs", lambda: budgeted_epochs(ctx, cfg, data, base.probe_seconds))
              if cfg.time_budget_minutes else cfg.epochs)
    total_steps = max(1, round(epochs * steps_per_epoch))
    noise = ctx.rng("corruption", "torch")  # the denoising network's x̃ during training

    # 2. the loop: per batch, one Adam step of each network; the test errors after every epoch
    state = {"plain": pair.plain, "denoising": pair.denoising, "opt_plain": optimizers["plain"],
             "opt_denoising": optimizers["denoising"], "sums": {"plain": 0.0, "denoising": 0.0, "images": 0}}
    step = first_step = ctx.restore(state)
    bar = ctx.progress(total_steps, initial=step)
    started = time.perf_counter()
    order, order_epoch = None, -1
    while step < total_steps:
        epoch, i = divmod(step, steps_per_epoch)
        if epoch != order_epoch:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(ctx.seed_for(f"order/{epoch}")))
            order_epoch = epoch
        x = data.x_train[order[i * b:(i + 1) * b]]
        loss_plain = train_step(pair.plain, optimizers["plain"], x, x)                      # x̃ = x
        x_noisy = corrupt(x, cfg.corruption, cfg.corruption_level, noise)
        loss_denoising = train_step(pair.denoising, optimizers["denoising"], x_noisy, x)    # x̃ ~ q(x̃ | x)
        step += 1
        ctx.check_finite(loss_plain.mean() + loss_denoising.mean(), step)
        sums = state["sums"]
        sums["plain"] += loss_plain.sum().item()
        sums["denoising"] += loss_denoising.sum().item()
        sums["images"] += len(x)
        bar.update(1)
        if step % steps_per_epoch == 0 or step == total_steps:  # evaluate
            record = {f"train_bce_{m}": sums[m] / sums["images"] for m in MODELS}
            for m in MODELS:
                clean = reconstruction_errors(getattr(pair, m), data.x_test, data.x_test)
                noisy = reconstruction_errors(getattr(pair, m), data.x_test_noisy, data.x_test)
                record.update({f"test_bce_{m}": clean["bce"], f"test_bce_{m}_on_noisy": noisy["bce"]})
            ctx.log(step, epoch=step / steps_per_epoch, **record)
            state["sums"] = {"plain": 0.0, "denoising": 0.0, "images": 0}
            bar.set_postfix(plain=f"{record['test_bce_plain_on_noisy']:.1f}",
                            denoising=f"{record['test_bce_denoising_on_noisy']:.1f}")
        ctx.tick(step, state)
    bar.close()
    train_seconds = time.perf_counter() - started

    # 3. evaluation of the last models: reconstruction errors, linear probes, the code Gaussians for sampling
    clock = time.perf_counter()
    metrics: dict[str, float] = {}
    for m in MODELS:
        ae = getattr(pair, m)
        clean = reconstruction_errors(ae, data.x_test, data.x_test)
        noisy = reconstruction_errors(ae, data.x_test_noisy, data.x_test)
        metrics.update({f"test_bce_{m}": clean["bce"], f"test_bce_{m}_on_noisy": noisy["bce"],
                        f"test_mse_{m}": clean["mse"], f"test_mse_{m}_on_noisy": noisy["mse"]})
    metrics.update(test_mse_pca=base.mse_pca, test_mse_pca_on_noisy=base.mse_pca_on_noisy,
                   test_mse_noisy_input=base.mse_noisy_input)
    for m in MODELS:
        ae = getattr(pair, m)
        train_codes = encode(ae, data.x_train)
        fit_code_gaussian(ae, train_codes)
        metrics[f"test_probe_accuracy_{m}"] = linear_probe(train_codes[probe_index].numpy(),
                                                           data.y_train[probe_index],
                                                           encode(ae, data.x_test).numpy(), data.y_test)
    metrics.update(test_probe_accuracy_pca=base.probe_pca, test_probe_accuracy_untrained=base.probe_untrained)
    last = ctx.history("train_bce_plain", "train_bce_denoising")
    metrics.update(train_bce_plain=last["train_bce_plain"][-1], train_bce_denoising=last["train_bce_denoising"][-1])
    eval_seconds = time.perf_counter() - clock

    # 4. what goes into the report
    ctx.save_weights(pair.state_dict())
    floor = bce_floor(data.x_test)
    rows = [("plain autoencoder", "plain"), ("denoising autoencoder", "denoising")]
    table = [{"model": name, "BCE, clean input": f"{metrics[f'test_bce_{m}']:.2f}",
              "BCE, corrupted input": f"{metrics[f'test_bce_{m}_on_noisy']:.2f}",
              "MSE, clean input": f"{metrics[f'test_mse_{m}']:.4f}",
              "MSE, corrupted input": f"{metrics[f'test_mse_{m}_on_noisy']:.4f}",
              "linear probe accuracy": f"{metrics[f'test_probe_accuracy_{m}']:.4f}"} for name, m in rows]
    table += [{"model": f"PCA, {cfg.code_size} components", "BCE, clean input": "—", "BCE, corrupted input": "—",
               "MSE, clean input": f"{base.mse_pca:.4f}", "MSE, corrupted input": f"{base.mse_pca_on_noisy:.4f}",
               "linear probe accuracy": f"{base.probe_pca:.4f}"},
              {"model": "the corrupted image itself", "BCE, clean input": "—", "BCE, corrupted input": "—",
               "MSE, clean input": "0", "MSE, corrupted input": f"{base.mse_noisy_input:.4f}",
               "linear probe accuracy": "—"},
              {"model": "untrained encoder (initial weights)", "BCE, clean input": "—", "BCE, corrupted input": "—",
               "MSE, clean input": "—", "MSE, corrupted input": "—",
               "linear probe accuracy": f"{base.probe_untrained:.4f}"}]
    ctx.save_table("reconstruction", table, caption=(
        f"{cfg.dataset} test set ({len(data.x_test):,} images); targets are always the clean images. BCE: "
        f"cross-entropy in nats per image (floor {floor:.2f}: the grey targets' entropy); MSE per pixel. "
        f"Corruption: {cfg.corruption} {cfg.corruption_level:g}, drawn once with a fixed seed. Linear probe: "
        f"logistic regression on the codes of {len(probe_index):,} training images."))
    save_figures(ctx, cfg, pair, data, base, example_index)
    ctx.add_facts(params_per_network=sum(p.numel() for p in pair.plain.parameters()), train_images=n,
                  test_images=len(data.x_test), probe_images=len(probe_index), steps=total_steps,
                  bce_floor_nats=floor, dataset=cfg.dataset)
    ctx.add_timings(train_seconds=train_seconds, eval_seconds=eval_seconds,
                    train_images_per_second=(total_steps - first_step) * b / max(train_seconds, 1e-9))
    return metrics


PRESETS = {
    "smoke": {"train_images": 256, "test_images": 100, "epochs": 2, "hidden_size": 32, "code_size": 8,
              "batch_size": 32, "probe_images": 0},
    "quick": {"time_budget_minutes": 1.5},  # 84 s of wall on 2 AVX2 cores, 11.3 epochs (results/ae-mnist-quick.json)
    "full": {"epochs": 30},  # 208 s of wall on 2 AVX2 cores (results/ae-mnist-full.json)
}

register(Experiment(
    name="ae-mnist",
    topic="Autoencoders: a plain and a denoising autoencoder (masking or Gaussian corruption) compared on clean "
          "and corrupted test images, PCA baseline, linear probe on the codes (MNIST / Fashion-MNIST)",
    paper="Vincent, Larochelle, Bengio & Manzagol 2008 (denoising autoencoders); Baldi & Hornik 1989 "
          "(linear autoencoders and PCA)",
    config_cls=AEConfig, presets=PRESETS, run=run, build_model=build_model,
    metric="test_bce_denoising_on_noisy", direction="min", datasets=("mnist", "fashion-mnist"),
))
