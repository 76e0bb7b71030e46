"""`vae-mnist`: the variational autoencoder of the curriculum on MNIST digits.

Curriculum: 深層生成モデル — VAE (変分オートエンコーダ), 再パラメータ化トリック, ELBO (変分下界), KL ダイバージェンス
(JDLA E資格). Paper: Kingma & Welling 2014, "Auto-Encoding Variational Bayes" (ICLR); the tighter
importance-weighted bound: Burda, Grosse & Salakhutdinov 2016, "Importance Weighted Autoencoders" (ICLR).

Model (the course's): encoder q(z | x) = N(μ(x), diag σ²(x)) with x → 784 → 400 (ReLU) → two heads μ and log σ²
of size 20; prior p(z) = N(0, I); decoder p(x | z) = Π_i Bernoulli(x_i; p_i(z)) with z → 400 (ReLU) → 784
(sigmoid gives the pixel probabilities p_i). Training maximises the evidence lower bound, i.e. minimises

    −ELBO(x) = E_q[−log p(x | z)] + KL(q(z | x) ‖ p(z))                      (nats per image)
             ≈ BCE_sum(x, p(z)) − ½ Σ_j (1 + log σ_j² − μ_j² − σ_j²),    z = μ + σ ⊙ ε,  ε ~ N(0, I)

with one ε per image (the reparameterisation trick makes z differentiable in μ and σ), Adam (lr 1e-3), batch
64. −ELBO ≥ −log p(x). The importance-weighted bound with k samples z_1..z_k ~ q(z | x),

    −log p(x) ≤ −L_k(x) = −log (1/k) Σ_i p(x | z_i) p(z_i) / q(z_i | x)    (−L_1 = −ELBO, −L_k ↓ −log p(x))

is reported on a test subset (`test_nll_iwae`, k = `iw_samples`): it is an estimate of the test −log p(x).

Data. MNIST, dynamically binarised: every time a training image is used its pixels are drawn afresh as
x_i ~ Bernoulli(grey value in [0, 1]); the test images are binarised once, with a fixed seed (the same in every
run), so that every run is scored on the same 10,000 binary images. With binary x the Bernoulli decoder is a
proper distribution and the numbers are −log-likelihoods in nats, comparable with the literature (Burda et al.
train the same way). The curriculum trains on the grey values themselves as BCE targets; that also keeps the
targets in [0, 1], but BCE to a grey target is not the log-likelihood of any distribution over grey images
(the normaliser of the "continuous Bernoulli" is missing, Loaiza-Ganem & Cunningham 2019), so its "nats" are
not −log p(x). Errata of the course's code: mixed tabs and spaces (an IndentationError), a
data loader that was never defined, and `transforms.Normalize((0.5,), (0.5,))`, which maps pixels to [−1, 1]:
BCE needs targets in [0, 1] (torch raises for negative targets; a hand-written BCE returns nonsense). Here
pixels are only divided by 255, never standardised.

Protocol. Train on the 60,000 training images for `epochs` epochs (or as many as fit `time_budget_minutes`);
after every epoch the test −ELBO is logged for the curves; the reported model is the last one (the test set
chooses nothing). A second run with `latent_size = 2` (a sub-run, found or trained first, `latent_map_run`)
gives the 2-D latent map: the decoder's output over a grid of z and the test images' codes μ(x) by digit.
quick: the course's recipe (constant lr) for as many epochs as fit half of 1.4 minutes (the 2-D sub-run gets
the other half); full: 30 epochs with the learning rate decayed to 0 on a cosine (`lr_schedule`).
Measured (benchmarks/run.py, seed 0, 2 threads, AMD EPYC Zen 2 with AVX2 only): full test −ELBO 98.21 nats
(BCE 71.15 + KL 27.06; −L_1000 = 92.73 on 1,000 test images; the 2-D run 151.75; 436 s of wall, commit
3bb0ef6, results/vae-mnist-full.json); quick 103.71 (5.7 epochs in the budget; −L_200 = 97.77; 116 s, commit
363eae9, results/vae-mnist-quick.json). The training and test bounds stay within 0.3 nats of each other
(dynamic binarisation leaves little to overfit).

Reference numbers. Burda et al. 2016, Table 1 (dynamically binarised MNIST, test −log p(x) estimated with
k = 5000): a VAE with one stochastic layer of 50 units and two deterministic layers of 200 tanh units, trained
3,280 passes: 86.76 nats; the IWAE (k = 50) with that architecture: 84.78. Kingma & Welling 2014 plot the
lower bound of MNIST models with N_z = 3 … 200 (Fig. 2) but print no number. Target (issue 20): test −ELBO
≤ 100 nats with the full preset.
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
from dldojo.engine.registry import Experiment, Reference, register
from dldojo.engine.reload import LoadedRun
from dldojo.engine.run import RunContext
from dldojo.engine.schedules import warmup_cosine
from dldojo.generative.pictures import grid, labelled_rows

IMAGE_SHAPE = (1, 28, 28)
TEST_BINARIZATION_SEED = 0  # the test set's one binarisation: the same binary images for every run and seed
LOG_2PI = math.log(2 * math.pi)


@dataclasses.dataclass
class VAEConfig:
    RANGES: ClassVar[dict] = {
        "hidden_size": (1, 8192), "latent_size": (1, 1024), "epochs": (0.1, 10000), "batch_size": (1, 60000),
        "lr": (1e-7, 1.0), "train_images": (0, 60000), "test_images": (0, 10000), "iw_samples": (1, 100000),
        "iw_test_images": (1, 10000), "time_budget_minutes": (0, 10**5), "map_grid": (2, 50)}
    """Allowed (low, high) of the numeric fields, checked before anything is created (`engine.config`)."""

    hidden_size: int = 400
    """Units of the encoder's and the decoder's hidden ReLU layer (the course: 400)."""
    latent_size: int = 20
    """Dimension of z: the encoder's μ and log σ² heads (the course: 20; 2 draws its own latent map)."""
    epochs: float = 30.0
    """Passes over the training images (tenths allowed); with a time budget, the most that may be trained."""
    batch_size: int = 64
    """Training images per Adam step (the course: 64)."""
    lr: float = 1e-3
    """Adam learning rate (the course: 1e-3)."""
    lr_schedule: Literal["constant", "cosine"] = "constant"
    """'constant' (the course's) or 'cosine': the learning rate decays from `lr` to 0 over the training steps."""
    train_images: int = 0
    """MNIST training images (class-stratified; 0 = all 60,000)."""
    test_images: int = 0
    """MNIST test images the −ELBO is reported on (class-stratified; 0 = all 10,000)."""
    iw_samples: int = 200
    """k of the importance-weighted bound −L_k (samples of z per test image; Burda et al. evaluate with 5000)."""
    iw_test_images: int = 1000
    """Test images (the first ones of the test set) the importance-weighted bound is computed on."""
    time_budget_minutes: float = 0.0
    """Train as many epochs (at most `epochs`) as fit this many minutes on this machine (`engine.budget`),
    the 2-D sub-run's half included; 0 = train exactly `epochs`."""
    latent_map_run: bool = True
    """When latent_size != 2: find or train a vae-mnist run with latent_size = 2 (same settings otherwise, half
    the time budget) for the 2-D latent map. A run with latent_size = 2 draws its own."""
    map_grid: int = 20
    """The latent map's decoder grid is map_grid × map_grid points of z."""

    def validate(self) -> None:
        if self.train_images and self.train_images < self.batch_size:
            raise DojoError(f"train_images {self.train_images} is smaller than one batch ({self.batch_size}).")


# ----- the model -----

class VAE(nn.Module):
    """q(z | x) = N(μ, diag σ²) by an MLP encoder; p(x | z) = Bernoulli(sigmoid(decoder logits))."""

    def __init__(self, cfg: VAEConfig, image_size: int = 784):
        super().__init__()
        self.fc1 = nn.Linear(image_size, cfg.hidden_size)         # encoder
        self.fc_mu = nn.Linear(cfg.hidden_size, cfg.latent_size)
        self.fc_logvar = nn.Linear(cfg.hidden_size, cfg.latent_size)
        self.fc3 = nn.Linear(cfg.latent_size, cfg.hidden_size)    # decoder
        self.fc4 = nn.Linear(cfg.hidden_size, image_size)
        self.latent_size = cfg.latent_size

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 784) in [0, 1] → μ, log σ² (B, latent_size)."""
        h = F.relu(self.fc1(x))
        return self.fc_mu(h), self.fc_logvar(h)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """z → the logits of the pixel probabilities (BCE is computed from logits: stable where p → 0 or 1)."""
        return self.fc4(F.relu(self.fc3(z)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z → p(x | z)'s pixel probabilities, sigmoid(logits) in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, x: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(decoder logits at z = μ + σ ε, μ, log σ²)."""
        mu, logvar = self.encode(x)
        return self.decode_logits(reparameterize(mu, logvar, eps)), mu, logvar


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = μ + σ ⊙ ε with σ = exp(½ log σ²): z ~ N(μ, σ²) for ε ~ N(0, I), differentiable in μ and σ."""
    return mu + torch.exp(0.5 * logvar) * eps


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, diag σ²) ‖ N(0, I)) = −½ Σ_j (1 + log σ_j² − μ_j² − σ_j²), one value per row (nats)."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=-1)


def negative_elbo(model: VAE, x: torch.Tensor, generator: torch.Generator | None = None,
                  eps: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image (B,): the reconstruction term BCE_sum(x, p(z)) = −log p(x | z) at one z = μ + σ ε, and the KL
    term; their sum is the single-sample estimate of −ELBO. ε is drawn from `generator` unless given."""
    mu, logvar = model.encode(x)
    if eps is None:
        eps = torch.randn(mu.shape, generator=generator)
    logits = model.decode_logits(reparameterize(mu, logvar, eps))
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
    return bce, kl_divergence(mu, logvar)


@torch.no_grad()
def iwae_bound(model: VAE, x: torch.Tensor, k: int, generator: torch.Generator, chunk: int = 100) -> torch.Tensor:
    """Per image (B,): L_k = log (1/k) Σ_i p(x | z_i) p(z_i) / q(z_i | x), z_i ~ q(z | x) (Burda et al. 2016);
    L_1 is the ELBO and L_k ≤ log p(x). Computed `chunk` samples at a time with a running logsumexp."""
    mu, logvar = model.encode(x)
    sigma = torch.exp(0.5 * logvar)
    total = torch.full((len(x),), -math.inf)
    for start in range(0, k, chunk):
        eps = torch.randn((min(chunk, k - start), *mu.shape), generator=generator)
        z = mu + sigma * eps
        log_px_z = -F.binary_cross_entropy_with_logits(model.decode_logits(z), x.expand(len(z), *x.shape),
                                                       reduction="none").sum(-1)
        log_pz = -0.5 * (z.pow(2) + LOG_2PI).sum(-1)
        log_qz = -0.5 * (eps.pow(2) + LOG_2PI + logvar).sum(-1)
        total = torch.logaddexp(total, torch.logsumexp(log_px_z + log_pz - log_qz, dim=0))
    return total - math.log(k)


def sample_images(model: VAE, n: int, *, label: int | None, generator: torch.Generator) -> torch.Tensor:
    """n images from the model: z ~ N(0, I), x = p(x | z)'s pixel probabilities (the Bernoulli means, as usual
    for pictures), shape (n, 1, 28, 28) in [0, 1]. The family's convention for `dldojo sample`."""
    if label is not None:
        raise DojoError("vae-mnist is not conditional (it models p(x), not p(x | digit)): drop --label "
                        "(label=None); a conditional model of this family takes it.")
    with torch.no_grad():
        z = torch.randn((n, model.latent_size), generator=generator)
        return model.decode(z).view(n, *IMAGE_SHAPE)


def build_model(cfg: VAEConfig, run: LoadedRun | None = None) -> VAE:
    return VAE(cfg)


# ----- data -----

@dataclasses.dataclass
class BinaryMNIST:
    x_train: torch.Tensor  # (N, 784) grey values in [0, 1]: binarised afresh at every use
    x_test: torch.Tensor   # (M, 784) in {0, 1}: binarised once with TEST_BINARIZATION_SEED
    x_test_grey: torch.Tensor
    y_test: torch.Tensor


def load_mnist(train_images: int, test_images: int) -> BinaryMNIST:
    train, test = image_data.load("mnist")
    train, test = train.head(train_images, seed=2), test.head(test_images, seed=3)
    x_train, x_test = (image_data.to_tensor(s.images).flatten(1) for s in (train, test))  # /255 only
    binary = torch.bernoulli(x_test, generator=torch.Generator().manual_seed(TEST_BINARIZATION_SEED))
    return BinaryMNIST(x_train, binary, x_test, torch.as_tensor(test.labels))


# ----- evaluation -----

@torch.no_grad()
def evaluate(model: VAE, x: torch.Tensor, seed: int, batch_size: int = 1000) -> dict[str, float]:
    """Mean per-image −ELBO and its two terms on `x` (one ε per image, from `seed`)."""
    generator = torch.Generator().manual_seed(seed)
    bce = kl = 0.0
    for i in range(0, len(x), batch_size):
        b, k = negative_elbo(model, x[i:i + batch_size], generator)
        bce, kl = bce + b.sum().item(), kl + k.sum().item()
    return {"neg_elbo": (bce + kl) / len(x), "bce": bce / len(x), "kl": kl / len(x)}


@torch.no_grad()
def latent_statistics(model: VAE, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per latent dimension: the test-mean KL term and Cov_x(μ_j(x)) (a unit is *active* when > 0.01,
    Burda et al. 2016 §5.2: the others ignore x and cost nothing in the KL)."""
    mu, logvar = model.encode(x)
    kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).mean(0)
    return kl.numpy(), mu.var(0).numpy()


def budgeted_epochs(ctx: RunContext, cfg: VAEConfig, data: BinaryMNIST, minutes: float) -> float:
    """The epochs (at most cfg.epochs) that fit `minutes`, from an Adam step and a test pass timed on throwaway
    copies, the importance-weighted bound at the end included (engine/budget.py)."""
    trial = VAE(cfg)
    generator = torch.Generator().manual_seed(0)

    def loss_fn(model: VAE, batch: tuple[torch.Tensor]) -> torch.Tensor:
        return sum(negative_elbo(model, batch[0], generator)).mean()

    step = budget.optimiser_step(loss_fn, trial, torch.optim.Adam(trial.parameters(), cfg.lr),
                                 (torch.bernoulli(data.x_train[:cfg.batch_size], generator=generator),))
    probe = data.x_test[:1000]
    test_seconds = budget.seconds_per_call(lambda: evaluate(trial, probe, 0), calls=1) * len(data.x_test) / len(probe)
    iw_images = min(cfg.iw_test_images, len(data.x_test))
    iw_seconds = budget.seconds_per_call(lambda: iwae_bound(trial, data.x_test[:10], min(cfg.iw_samples, 100),
                                                            generator), calls=1)
    iw_seconds *= iw_images / 10 * cfg.iw_samples / min(cfg.iw_samples, 100)
    epochs = budget.epochs_within(60 * minutes, ctx.wall_seconds, epoch_seconds=budget.seconds_per_call(step) *
                                  (len(data.x_train) // cfg.batch_size), cap=cfg.epochs, eval_seconds=test_seconds,
                                  eval_every=1.0, final_seconds=2 * test_seconds + iw_seconds)
    if not ctx.quiet:
        print(f"[dldojo] time budget {minutes:g} min: {epochs:g} of at most {cfg.epochs:g} epochs", flush=True)
    return epochs


# ----- figures -----

def save_figures(ctx: RunContext, cfg: VAEConfig, model: VAE, data: BinaryMNIST, map_model: VAE | None,
                 latent_kl: np.ndarray, latent_var: np.ndarray) -> None:
    import matplotlib.pyplot as plt

    # learning curves: −ELBO and its two terms per epoch
    h = ctx.history("epoch", "train_neg_elbo", "test_neg_elbo", "test_bce", "test_kl")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    axes[0].plot(h["epoch"], h["train_neg_elbo"], marker="o", ms=3, label="train (running, binarised afresh)")
    axes[0].plot(h["epoch"], h["test_neg_elbo"], marker="o", ms=3, label="test")
    axes[0].axhline(100, color="grey", ls="--", lw=0.8, label="target 100 nats")
    axes[0].set(xlabel="epoch", ylabel="−ELBO (nats per image)", title="negative ELBO")
    axes[1].plot(h["epoch"], h["test_bce"], marker="o", ms=3, label="reconstruction: −log p(x | z)")
    axes[1].plot(h["epoch"], h["test_kl"], marker="o", ms=3, label="KL(q(z | x) ‖ p(z))")
    axes[1].set(xlabel="epoch", ylabel="nats per image", title="the two terms (test)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    ctx.save_figure(fig, "elbo_curves")

    # reconstructions: the first test image of every digit, grey / binarised input / reconstruction at z = μ
    index = [int((data.y_test == d).nonzero()[0]) for d in range(10) if (data.y_test == d).any()]
    with torch.no_grad():
        recon = model.decode(model.encode(data.x_test[index])[0])
    rows = (("grey", data.x_test_grey[index]), ("input (binary)", data.x_test[index]),
            ("reconstruction p(x | z = μ)", recon))
    ctx.save_figure(labelled_rows(list(rows)), "reconstructions")

    # samples from the prior
    images = sample_images(model, 64, label=None, generator=torch.Generator().manual_seed(ctx.seed_for("samples")))
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.imshow(grid(images, 8), cmap="gray", vmin=0, vmax=1)
    ax.set(xticks=[], yticks=[], title=f"64 samples: z ~ N(0, I), pixel probabilities (latent size {cfg.latent_size})")
    ctx.save_figure(fig, "samples")

    # KL per latent dimension: which units are used
    order = np.argsort(-latent_kl)
    fig, ax = plt.subplots(figsize=(max(4, 0.3 * len(order) + 2), 3))
    ax.bar(range(len(order)), latent_kl[order], color=["C0" if latent_var[j] > 0.01 else "C7" for j in order])
    ax.set(xlabel="latent dimension (sorted)", ylabel="mean KL (nats)",
           title=f"KL per dimension (grey: inactive, Cov(μ) ≤ 0.01; {int((latent_var > 0.01).sum())} active)")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    ctx.save_figure(fig, "latent_kl")

    if map_model is not None:
        save_latent_map(ctx, cfg, map_model, data)


def save_latent_map(ctx: RunContext, cfg: VAEConfig, model: VAE, data: BinaryMNIST) -> None:
    """The 2-D model: the decoder over z = Φ⁻¹(u) for u on a regular grid of the unit square (Kingma & Welling
    2014, Fig. 4), and the test images' codes μ(x) coloured by digit."""
    import matplotlib.pyplot as plt

    n = cfg.map_grid
    u = torch.linspace(0.5 / n, 1 - 0.5 / n, n)
    z1 = torch.distributions.Normal(0.0, 1.0).icdf(u)
    z = torch.stack(torch.meshgrid(z1, z1.flip(0), indexing="xy"), -1).reshape(-1, 2)  # rows: z₂ from top to bottom
    with torch.no_grad():
        decoded = model.decode(z).view(-1, *IMAGE_SHAPE)
        mu = model.encode(data.x_test[:5000])[0].numpy()
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.6))
    axes[0].imshow(grid(decoded, n), cmap="gray", vmin=0, vmax=1, extent=(0, 1, 0, 1))
    axes[0].set(xticks=[], yticks=[], title="decoder p(x | z) over z = Φ⁻¹(u), u on a grid",
                xlabel=f"z₁ ({z1[0]:.2f} … {z1[-1]:.2f})", ylabel="z₂")
    labels = data.y_test[:5000].numpy()
    scatter = axes[1].scatter(mu[:, 0], mu[:, 1], c=labels, cmap="tab10", s=3, alpha=0.7, vmin=-0.5, vmax=9.5)
    fig.colorbar(scatter, ax=axes[1], ticks=range(10), label="digit")
    axes[1].set(xlabel="μ₁(x)", ylabel="μ₂(x)", title=f"test codes μ(x) of {len(mu)} images by digit")
    axes[1].grid(alpha=0.3)
    fig.tight_layout()
    ctx.save_figure(fig, "latent_map_2d")


# ----- the run -----

def run(ctx: RunContext, cfg: VAEConfig) -> dict[str, float]:
    # 1. data, model, optimiser
    data = load_mnist(cfg.train_images, cfg.test_images)
    if cfg.iw_test_images > len(data.x_test):
        raise DojoError(f"iw_test_images {cfg.iw_test_images} exceeds the {len(data.x_test)} test images")
    model = VAE(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    n, b = len(data.x_train), cfg.batch_size
    steps_per_epoch = n // b
    minutes = cfg.time_budget_minutes / 2 if cfg.latent_size != 2 and cfg.latent_map_run else cfg.time_budget_minutes
    epochs = ctx.decide("epochs", lambda: budgeted_epochs(ctx, cfg, data, minutes)) if minutes else cfg.epochs
    total_steps = max(1, round(epochs * steps_per_epoch))
    noise = ctx.rng("noise", "torch")  # binarisation of the training images and ε

    # 2. the loop: one Adam step on −ELBO per batch; the test −ELBO after every epoch
    state = {"model": model, "optimizer": optimizer, "sums": {"bce": 0.0, "kl": 0.0, "images": 0}}
    step = first_step = ctx.restore(state)
    bar = ctx.progress(total_steps, initial=step)
    started = time.perf_counter()
    while step < total_steps:
        epoch, i = divmod(step, steps_per_epoch)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(ctx.seed_for(f"order/{epoch}")))
        x = torch.bernoulli(data.x_train[order[i * b:(i + 1) * b]], generator=noise)  # dynamic binarisation
        if cfg.lr_schedule == "cosine":
            for group in optimizer.param_groups:
                group["lr"] = warmup_cosine(step, total_steps, warmup=0, lr=cfg.lr)
        bce, kl = negative_elbo(model, x, noise)
        loss = (bce + kl).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        ctx.check_finite(loss.item(), step, hint="the KL term explodes when log σ² does: lower lr.")
        sums = state["sums"]
        sums["bce"] += bce.sum().item()
        sums["kl"] += kl.sum().item()
        sums["images"] += len(x)
        bar.update(1)
        if step % steps_per_epoch == 0 or step == total_steps:  # evaluate
            test = evaluate(model, data.x_test, ctx.seed_for("test"))
            train_neg_elbo = (sums["bce"] + sums["kl"]) / sums["images"]
            ctx.log(step, epoch=step / steps_per_epoch, train_neg_elbo=train_neg_elbo,
                    train_kl=sums["kl"] / sums["images"], test_neg_elbo=test["neg_elbo"], test_bce=test["bce"],
                    test_kl=test["kl"])
            state["sums"] = {"bce": 0.0, "kl": 0.0, "images": 0}
            bar.set_postfix(train=f"{train_neg_elbo:.1f}", test=f"{test['neg_elbo']:.1f}")
        ctx.tick(step, state)
    bar.close()
    train_seconds = time.perf_counter() - started

    # 3. evaluation of the last model: −ELBO on the test set, the importance-weighted bound on a subset
    model.eval()
    test = evaluate(model, data.x_test, ctx.seed_for("test"))
    x_iw = data.x_test[:cfg.iw_test_images]
    iw_started = time.perf_counter()
    nll_iwae = -iwae_bound(model, x_iw, cfg.iw_samples, torch.Generator().manual_seed(ctx.seed_for("iwae"))).mean()
    iw_seconds = time.perf_counter() - iw_started
    latent_kl, latent_var = latent_statistics(model, data.x_test)
    metrics = {"test_neg_elbo": test["neg_elbo"], "test_bce": test["bce"], "test_kl": test["kl"],
               "test_nll_iwae": nll_iwae.item(),
               "test_neg_elbo_iw_subset": evaluate(model, x_iw, ctx.seed_for("test"))["neg_elbo"],
               "test_active_units": float((latent_var > 0.01).sum()),
               "train_neg_elbo": ctx.history("train_neg_elbo")["train_neg_elbo"][-1]}

    # 4. the 2-D latent map: this model, or a sub-run with latent_size = 2
    map_model = None
    if cfg.latent_size == 2:
        map_model = model
    elif cfg.latent_map_run:
        same = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
        sub = ctx.requires("vae-mnist", preset=ctx.preset,
                           **{**same, "latent_size": 2, "time_budget_minutes": minutes})
        map_model = sub.model
        metrics["test_neg_elbo_latent2"] = sub.metrics["test_neg_elbo"]

    ctx.save_weights(model.state_dict())
    ctx.save_table("latent_dimensions", [
        {"dimension": int(j), "mean KL (nats)": f"{latent_kl[j]:.3f}", "Cov(μ_j)": f"{latent_var[j]:.4f}",
         "active": "yes" if latent_var[j] > 0.01 else "no"} for j in np.argsort(-latent_kl)],
        caption="Per latent dimension on the test set: its share of the KL term and the variance of μ_j(x) over "
                "images (active when > 0.01; an inactive unit has q(z_j | x) ≈ p(z_j) for every x).")
    save_figures(ctx, cfg, model, data, map_model, latent_kl, latent_var)
    ctx.add_facts(params=sum(p.numel() for p in model.parameters()), train_images=n, test_images=len(data.x_test),
                  iw_samples=cfg.iw_samples, iw_test_images=len(x_iw), steps=total_steps,
                  binarisation="dynamic (train), fixed seed 0 (test)")
    ctx.add_timings(train_seconds=train_seconds, iwae_seconds=iw_seconds,
                    train_images_per_second=(total_steps - first_step) * b / max(train_seconds, 1e-9))
    return metrics


PRESETS = {
    "smoke": {"train_images": 256, "test_images": 100, "epochs": 2, "hidden_size": 64, "iw_samples": 8,
              "iw_test_images": 20, "map_grid": 4},
    "quick": {"time_budget_minutes": 1.4},  # 1.8 measured 133 s of wall on 2 AVX2 cores: loading and reports come on top
    "full": {"epochs": 30, "lr_schedule": "cosine", "iw_samples": 1000},  # est. ~7 min on 2 cores, sub-run included
}

register(Experiment(
    name="vae-mnist",
    topic="Deep generative models: variational autoencoder (ELBO, reparameterisation trick, KL term), "
          "importance-weighted bound, 2-D latent map (MNIST)",
    paper="Kingma & Welling 2014 (Auto-Encoding Variational Bayes); Burda, Grosse & Salakhutdinov 2016 (IWAE bound)",
    config_cls=VAEConfig, presets=PRESETS, run=run, build_model=build_model,
    metric="test_neg_elbo", direction="min", datasets=("mnist",), target=100.0,
    references=(
        Reference(86.76, "Burda et al. 2016, Table 1: VAE, 1 stochastic layer (2×200 tanh, 50 latents), "
                         "dynamically binarised MNIST, −log p(x) by k = 5000",
                  "a deeper network trained 3,280 passes; here 1×400 ReLU, 20 latents", metric="test_nll_iwae"),
        Reference(84.78, "Burda et al. 2016, Table 1: IWAE (k = 50), same architecture", metric="test_nll_iwae"),
    ),
))
