"""`vanishing-gradients`: why a deep MLP with sigmoids does not learn, why ReLU with Normal(std 1) weights
blows up to NaN, and what Xavier / He initialisation, BatchNorm and dropout change — layer by layer on MNIST.

Curriculum: 勾配消失問題, 活性化関数 (シグモイド / tanh / ReLU), 重みの初期値 (Xavier / He), バッチ正規化,
ドロップアウト (JDLA E資格); Saito, "Deep Learning from Scratch" (2016), ch. 6.2–6.4 ("DLfS"), whose
activation histograms of a 5-layer, 100-unit network with Normal(std 1) weights pile up at 0 and 1.
Papers: Glorot & Bengio 2010 (Xavier: Var W = 2 / (n_in + n_out)); He et al. 2015 (Var W = 2 / n_in for
ReLU); Ioffe & Szegedy 2015 (BatchNorm); Srivastava et al. 2014 (dropout).

Backpropagation through layer l, a_l = W_l h_{l−1} + b_l, h_l = f(a_l):
    δ_{l−1} = W_lᵀ (δ_l ⊙ f′(a_l)),   ∂L/∂W_l = δ_l ⊙ f′(a_l) · h_{l−1}ᵀ
so the gradient reaching layer 1 is a product of L factors W_lᵀ diag f′(a_l). The sigmoid's derivative
σ′(a) = σ(a)(1 − σ(a)) is at most ¼ (at a = 0, since p(1 − p) ≤ ¼), so with weights of scale ~1 each
layer shrinks the signal by ≥ 4× (vanishing); tanh′(0) = 1, ReLU′ = 1 where active.
Forward variance with zero-mean weights of variance σ_w² and n inputs per unit:
    Var a_l = n σ_w² E[h_{l−1}²],   for ReLU E[h²] = Var(a) / 2   ⇒   Var a_l = (n σ_w² / 2) Var a_{l−1}
He's σ_w² = 2 / n makes the factor 1. The course's Normal(std 1) makes it n / 2 = 50 at width 100: after
15 layers the activations are ~50^7.5 ≈ 10¹³ times the input's scale, the loss (≈ the largest logit minus
the true class's) is of that order (3·10¹⁴ measured), so are the gradients, and the first SGD step moves the
weights by ~η·10¹³: the next forward pass overflows float32 (3.4·10³⁸) to inf, and inf − inf is NaN. That is
the course's "ReLU + Normal(std 1) diverged to NaN", reproduced here (`train_diverged_relu_normal`). The
engine's NaN guard (`RunContext.check_finite`) would stop the whole run at that step; here a non-finite
loss ends only that cell's training, and the step, the last losses and the divergence are its result.
With sigmoid or tanh the same weights saturate most units instead (|a| ~ 10: f′ ≈ 0): the outputs stay
bounded, and learning crawls or stalls (see the table). BatchNorm re-standardises every pre-activation, so
the initial scale no longer compounds; dropout (p, scaled by 1/(1 − p)) adds noise but does not change the
scale.

Protocol. An MLP 784 → [Linear → (BatchNorm) → f → (Dropout)] × `depth` → Linear 10 (width `width`),
every weight W = s · Z with Z ~ N(0, 1) from the same seeded draws in every cell (so cells differ only in
the scale s, the activation and the BN / dropout layers), biases 0:
    normal  s = `normal_std` (1, the course's weight_init_std)
    xavier  s = √(2 / (n_in + n_out))   (Glorot & Bengio's variance; DLfS uses 1/√n_in — equal for square layers)
    he      s = √(2 / n_in)
Cells: every activation × init, plus `batchnorm_cells` with BatchNorm before every activation and
`dropout_cells` with dropout after every hidden activation. Measured on `probe_images` training images in
float64 (no overflow): the loss, ‖∂L/∂W_l‖ for every layer and the activations' histograms, at
initialisation and after training. Training: SGD with momentum (`lr`, `momentum`), batch `batch_size`, the
same batches in every cell, `epochs` epochs on `train_images`; test accuracy on the MNIST test set.

Metrics per cell (`<activation>_<init>[_bn|_dropout]`): `train_grad_log10_ratio_<cell>` = log₁₀(‖∂L/∂W_1‖
/ ‖∂L/∂W_{L+1}‖) at initialisation (first vs output layer; −6 = the first layer learns a million times more
slowly), `train_initial_loss_<cell>`, `train_diverged_<cell>` (1 = the loss left the floats) and then
`train_diverged_step_<cell>`, else `test_accuracy_<cell>`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dldojo.engine.errors import DojoError
from dldojo.engine.registry import Experiment, Reference, register
from dldojo.engine.run import RunContext
from dldojo.foundations.common import ImageData, LossCurve, accuracy, load_images, train_epoch

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"sigmoid": torch.sigmoid, "tanh": torch.tanh,
                                                                  "relu": torch.relu}
INITS = ("normal", "xavier", "he")
DERIVATIVE_MAX = {"sigmoid": 0.25, "tanh": 1.0, "relu": 1.0}  # max f′: σ′(0) = ¼, tanh′(0) = 1, ReLU′ = 1 (a > 0)


def derivative(activation: str, a: torch.Tensor) -> torch.Tensor:
    """f′(a): σ(a)(1 − σ(a)) ≤ ¼, 1 − tanh²(a) ≤ 1, ReLU′ = 1 where a > 0 (0 elsewhere)."""
    if activation == "sigmoid":
        s = torch.sigmoid(a)
        return s * (1 - s)
    if activation == "tanh":
        return 1 - torch.tanh(a) ** 2
    if activation == "relu":
        return (a > 0).to(a.dtype)
    raise DojoError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")


def init_std(init: str, fan_in: int, fan_out: int, normal_std: float = 1.0) -> float:
    """The scale s of W = s · Z: normal → normal_std; xavier → √(2 / (n_in + n_out)); he → √(2 / n_in)."""
    if init == "normal":
        return normal_std
    if init == "xavier":
        return math.sqrt(2.0 / (fan_in + fan_out))
    if init == "he":
        return math.sqrt(2.0 / fan_in)
    raise DojoError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")


@dataclasses.dataclass(frozen=True)
class Cell:
    activation: str
    init: str
    batchnorm: bool = False
    dropout: bool = False

    @property
    def key(self) -> str:
        suffix = "_bn" if self.batchnorm else "_dropout" if self.dropout else ""
        return f"{self.activation}_{self.init}{suffix}"

    def label(self) -> str:
        extra = " + BatchNorm" if self.batchnorm else " + dropout" if self.dropout else ""
        return f"{self.activation} / {self.init}{extra}"


def parse_cells(specs: tuple[str, ...], field: str) -> list[tuple[str, str]]:
    cells = []
    for spec in specs:
        activation, _, init = spec.partition("/")
        if activation not in ACTIVATIONS or init not in INITS:
            raise DojoError(f"{field}: {spec!r} is not activation/init with activation in {', '.join(ACTIVATIONS)} "
                            f"and init in {', '.join(INITS)} (e.g. relu/normal)")
        cells.append((activation, init))
    return cells


@dataclasses.dataclass
class VanishingConfig:
    RANGES: ClassVar[dict] = {
        "depth": (1, 100), "width": (1, 4096), "normal_std": (1e-6, 100.0), "dropout": (0.0, 0.95),
        "epochs": (1, 1000), "batch_size": (1, 8192), "lr": (1e-8, 100.0), "momentum": (0.0, 0.999),
        "train_images": (0, 60000), "test_images": (0, 10000), "probe_images": (2, 10000),
        "histogram_layers": (1, 100), "histogram_bins": (2, 1000), "curve_points": (1, 1000)}
    """Allowed (low, high) of the numeric fields, checked before anything is created (`engine.config`)."""

    activations: tuple[str, ...] = tuple(ACTIVATIONS)
    """Activations of the grid: sigmoid, tanh, relu."""
    inits: tuple[str, ...] = INITS
    """Initialisations of the grid: normal (std `normal_std`), xavier, he."""
    batchnorm_cells: tuple[str, ...] = ("sigmoid/normal", "tanh/normal", "relu/normal")
    """activation/init cells trained again with BatchNorm before every activation."""
    dropout_cells: tuple[str, ...] = ("relu/he", "tanh/xavier")
    """activation/init cells trained again with dropout after every hidden activation."""
    depth: int = 15
    """Hidden layers of the MLP."""
    width: int = 100
    """Units per hidden layer."""
    normal_std: float = 1.0
    """Standard deviation of the 'normal' initialisation (the course's weight_init_std = 1)."""
    dropout: float = 0.1
    """Dropout probability p of the dropout cells."""
    epochs: int = 3
    """Training epochs of every cell."""
    batch_size: int = 100
    """Training images per SGD step."""
    lr: float = 0.01
    """SGD learning rate η (the same in every cell)."""
    momentum: float = 0.9
    """SGD momentum μ."""
    train_images: int = 20000
    """MNIST training images (class-stratified; 0 = all 60,000)."""
    test_images: int = 0
    """MNIST test images (class-stratified; 0 = all 10,000)."""
    probe_images: int = 1000
    """Training images the gradient norms and activation histograms are measured on (one float64 batch)."""
    histogram_layers: int = 5
    """Hidden layers shown in the activation histograms (evenly spaced, first and last included)."""
    histogram_bins: int = 30
    """Bins of every activation histogram."""
    curve_points: int = 10
    """Training-loss points per epoch in the curves."""

    def validate(self) -> None:
        if not set(self.activations) <= set(ACTIVATIONS) or not self.activations:
            raise DojoError(f"activations must be names from {', '.join(ACTIVATIONS)}; got {self.activations}")
        if not set(self.inits) <= set(INITS) or not self.inits:
            raise DojoError(f"inits must be names from {', '.join(INITS)}; got {self.inits}")
        parse_cells(self.batchnorm_cells, "batchnorm_cells")
        parse_cells(self.dropout_cells, "dropout_cells")
        if self.dropout_cells and not 0 < self.dropout < 1:
            raise DojoError(f"dropout_cells need 0 < dropout < 1, got {self.dropout}")
        if self.train_images and self.train_images < self.batch_size:
            raise DojoError(f"train_images {self.train_images} is smaller than one batch ({self.batch_size})")

    def cells(self) -> list[Cell]:
        """The grid (activation × init), then the BatchNorm cells, then the dropout cells."""
        return ([Cell(a, i) for a in self.activations for i in self.inits]
                + [Cell(a, i, batchnorm=True) for a, i in parse_cells(self.batchnorm_cells, "batchnorm_cells")]
                + [Cell(a, i, dropout=True) for a, i in parse_cells(self.dropout_cells, "dropout_cells")])


# ----- the model -----

class DeepMLP(nn.Module):
    """x → flatten → [Linear → (BatchNorm) → f → (Dropout)] × depth → Linear. `forward` keeps the hidden
    pre-activations a_l and activations h_l in `self.trace` when `self.tracing` is set."""

    def __init__(self, activation: str, depth: int, width: int, batchnorm: bool = False, dropout: float = 0.0,
                 in_features: int = 784, num_classes: int = 10):
        super().__init__()
        self.activation, self.f = activation, ACTIVATIONS[activation]
        sizes = [in_features] + [width] * depth
        self.linears = nn.ModuleList(nn.Linear(n_in, n_out, bias=not batchnorm)
                                     for n_in, n_out in zip(sizes, sizes[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(width) for _ in range(depth)) if batchnorm else None
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.output = nn.Linear(width, num_classes)
        self.tracing, self.trace = False, []

    def weights(self) -> list[torch.Tensor]:
        """W_1 … W_{L+1}: the hidden layers' weights and the output layer's."""
        return [linear.weight for linear in self.linears] + [self.output.weight]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)
        self.trace = []
        for l, linear in enumerate(self.linears):
            a = linear(h)
            if self.norms is not None:
                a = self.norms[l](a)
            h = self.f(a)
            if self.tracing:
                self.trace.append((a, h))
            h = self.drop(h)
        return self.output(h)


def initialise(model: DeepMLP, init: str, normal_std: float, generator: torch.Generator) -> None:
    """W = s · Z for every layer, Z ~ N(0, 1) drawn in layer order from `generator`; biases 0."""
    with torch.no_grad():
        for W in model.weights():
            fan_out, fan_in = W.shape
            W.copy_(torch.randn(W.shape, generator=generator) * init_std(init, fan_in, fan_out, normal_std))
        for module in model.modules():
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.zero_()


# ----- measurements -----

def probe(model: DeepMLP, x: torch.Tensor, y: torch.Tensor, bins: int, dropout_seed: int) -> dict[str, Any]:
    """On a float64 copy in training mode (BatchNorm on the batch's statistics, dropout on, as a training step
    sees it): the loss, ‖∂L/∂W_l‖ per layer, and per hidden layer the activations' standard deviation,
    mean derivative E f′(a_l), saturated fraction (f′ < 1 % of its maximum: for ReLU the inactive units) and
    histogram."""
    net = copy.deepcopy(model).double().train()
    net.tracing = True
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(dropout_seed)
        loss = F.cross_entropy(net(x.double()), y)
        grads = torch.autograd.grad(loss, net.weights())
    layers, maximum = [], DERIVATIVE_MAX[net.activation]
    for a, h in net.trace:
        a, h = a.detach(), h.detach()
        d = derivative(net.activation, a)
        values = h.detach().flatten().numpy()
        counts, edges = np.histogram(values, bins=bins)
        layers.append({"std": float(values.std()), "mean_derivative": float(d.mean()),
                       "saturated": float((d < 0.01 * maximum).double().mean()),
                       "histogram": counts.tolist(), "edges": [float(edges[0]), float(edges[-1])]})
    return {"loss": loss.item(), "grad_norms": [g.norm().item() for g in grads], "layers": layers}


def train_cell(ctx: RunContext, cfg: VanishingConfig, data: ImageData, cell: Cell,
               keep_going: Callable[[], None]) -> dict[str, Any]:
    """Probe at initialisation, train with SGD + momentum, probe again and test (unless the loss left the
    floats: then the step and the last losses are the result, and the run goes on with the next cell)."""
    model = DeepMLP(cell.activation, cfg.depth, cfg.width, cell.batchnorm, cfg.dropout if cell.dropout else 0.0,
                    in_features=data.x_train[0].numel(), num_classes=int(data.y_train.max()) + 1)
    initialise(model, cell.init, cfg.normal_std, torch.Generator().manual_seed(ctx.seed_for("init")))
    x_probe, y_probe = data.x_train[:cfg.probe_images], data.y_train[:cfg.probe_images]
    probe_seed = ctx.seed_for(f"probe/{cell.key}")
    result: dict[str, Any] = {"cell": cell.key, "label": cell.label(), "activation": cell.activation,
                              "init": cell.init, "batchnorm": cell.batchnorm, "dropout": cell.dropout,
                              "init_std": init_std(cell.init, cfg.width, cfg.width, cfg.normal_std),  # hidden layers
                              "at_init": probe(model, x_probe, y_probe, cfg.histogram_bins, probe_seed)}
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    order_generator = torch.Generator().manual_seed(ctx.seed_for("batches"))  # the same batches in every cell
    curve = LossCurve(len(data.x_train) // cfg.batch_size, cfg.curve_points)
    started = time.perf_counter()
    model.train()
    with torch.random.fork_rng(devices=[]):  # dropout masks from the cell's own seed
        torch.manual_seed(ctx.seed_for(f"dropout/{cell.key}"))
        for epoch in range(cfg.epochs):
            # a loss that leaves the floats ends the cell's training: it is recorded as its result, the run goes on
            if not train_epoch(model, optimizer, data, cfg.batch_size, epoch, order_generator, curve, keep_going):
                break
    result.update(diverged_step=curve.diverged_step, last_losses=curve.last, loss_curve=curve.points,
                  train_loss=curve.points[-1][1] if curve.points else float("nan"),
                  train_seconds=time.perf_counter() - started)
    if not curve.diverged_step:
        result["test_accuracy"] = accuracy(model, data.x_test, data.y_test)
        result["after_training"] = probe(model, x_probe, y_probe, cfg.histogram_bins, probe_seed)
    return result


# ----- metrics, table, pictures -----

def log10_ratio(grad_norms: list[float]) -> float:
    """log₁₀(‖∂L/∂W_1‖ / ‖∂L/∂W_{L+1}‖); floored at 10⁻³⁰⁰ so that a gradient of exactly 0 stays finite."""
    return math.log10(max(grad_norms[0], 1e-300)) - math.log10(max(grad_norms[-1], 1e-300))


def summarise(results: list[dict[str, Any]]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for r in results:
        k = r["cell"]
        metrics[f"train_grad_log10_ratio_{k}"] = log10_ratio(r["at_init"]["grad_norms"])
        metrics[f"train_initial_loss_{k}"] = r["at_init"]["loss"]
        metrics[f"train_diverged_{k}"] = float(bool(r["diverged_step"]))
        if r["diverged_step"]:
            metrics[f"train_diverged_step_{k}"] = float(r["diverged_step"])
        else:
            metrics[f"test_accuracy_{k}"] = r["test_accuracy"]
    return metrics


def save_table(ctx: RunContext, cfg: VanishingConfig, results: list[dict[str, Any]]) -> None:
    rows = []
    for r in results:
        init = r["at_init"]
        layers = init["layers"]
        if r["diverged_step"]:
            outcome = (f"diverged at step {r['diverged_step']} (last losses "
                       f"{', '.join(f'{v:.3g}' for v in r['last_losses'])})")
        else:
            outcome = f"{r['test_accuracy']:.4f}"
        rows.append({
            "cell": r["label"], "weight std (hidden layers)": f"{r['init_std']:.3g}",
            "loss at init": f"{init['loss']:.3g}",
            "‖∇W_1‖": f"{init['grad_norms'][0]:.2e}", "‖∇W_out‖": f"{init['grad_norms'][-1]:.2e}",
            "log10 ratio": f"{log10_ratio(init['grad_norms']):.1f}",
            "mean f′(a) over layers": f"{np.mean([lay['mean_derivative'] for lay in layers]):.3f}",
            "saturated (f′ < 1 % of max; ReLU: inactive)": f"{np.mean([lay['saturated'] for lay in layers]):.2f}",
            f"std of h_{cfg.depth}": f"{layers[-1]['std']:.3g}",
            "final training loss": "" if r["diverged_step"] else f"{r['train_loss']:.3f}",
            "test accuracy": outcome,
        })
    ctx.save_table("vanishing_gradients", rows, caption=(
        f"MLP with {cfg.depth} hidden layers of {cfg.width} units on MNIST. Columns up to 'std of h' are measured at "
        f"initialisation on {cfg.probe_images} training images in float64; the rest after {cfg.epochs} epochs of "
        f"SGD (η = {cfg.lr:g}, momentum {cfg.momentum:g}, batch {cfg.batch_size}) on {cfg.train_images or 'all'} "
        f"training images. log10 ratio = log10(‖∂L/∂W_1‖ / ‖∂L/∂W_out‖): how many decades the first layer's "
        f"gradient is below the output layer's. A diverged cell's loss left the floats (the run went on)."))


def style(r: dict[str, Any]) -> dict[str, Any]:
    colour = {"normal": "C3", "xavier": "C0", "he": "C2"}[r["init"]]
    return {"color": colour, "linestyle": "--" if r["batchnorm"] else ":" if r["dropout"] else "-",
            "label": r["label"].split(" / ", 1)[1]}


def save_figures(ctx: RunContext, cfg: VanishingConfig, results: list[dict[str, Any]]) -> None:
    import matplotlib.pyplot as plt

    # activation functions and derivatives: σ′ ≤ 1/4
    a = torch.linspace(-6, 6, 601)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for name, f in ACTIVATIONS.items():
        axes[0].plot(a, f(a), label=name)
        axes[1].plot(a, derivative(name, a), label=f"{name}′")
    axes[1].axhline(0.25, color="grey", lw=0.8, ls="--")
    axes[1].annotate("max σ′ = σ′(0) = 1/4", (0, 0.25), xytext=(1.2, 0.45), arrowprops={"arrowstyle": "->"})
    for ax, title in zip(axes, ("activation f(a)", "derivative f′(a)")):
        ax.set(title=title, xlabel="a")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    ctx.save_figure(fig, "activation_functions")

    # gradient norm per layer, at initialisation and after training
    activations = list(dict.fromkeys(r["activation"] for r in results))
    fig, axes = plt.subplots(2, len(activations), figsize=(5 * len(activations), 7.4), squeeze=False)
    for row, when in enumerate(("at_init", "after_training")):
        for ax, act in zip(axes[row], activations):
            for r in (r for r in results if r["activation"] == act):
                if when not in r:
                    label = style(r)["label"] + f" (diverged at step {r['diverged_step']})"
                    ax.plot([], [], **{**style(r), "label": label})
                    continue
                norms = np.maximum(r[when]["grad_norms"], 1e-300)
                ax.plot(range(1, len(norms) + 1), norms, marker="o", ms=3, **style(r))
            ax.set(yscale="log", xlabel="layer l (last = output)", ylabel="‖∂L/∂W_l‖",
                   title=f"{act}: {'at initialisation' if row == 0 else 'after training'}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    ctx.save_figure(fig, "gradient_norms")

    # activation histograms per layer (at initialisation), DLfS-style
    shown = sorted(set(np.linspace(0, cfg.depth - 1, min(cfg.histogram_layers, cfg.depth)).round().astype(int)))
    fig, axes = plt.subplots(len(results), len(shown), figsize=(2.3 * len(shown), 1.25 * len(results)), squeeze=False)
    for row, r in zip(axes, results):
        for ax, l in zip(row, shown):
            layer = r["at_init"]["layers"][l]
            low, high = layer["edges"]
            edges = np.linspace(low, high, len(layer["histogram"]) + 1)
            ax.stairs(layer["histogram"], edges, fill=True, color=style(r)["color"])
            ax.set_yticks([])
            ax.tick_params(labelsize=6)
            if ax is row[0]:
                ax.set_ylabel(r["label"], fontsize=7, rotation=0, ha="right", va="center")
            if r is results[0]:
                ax.set_title(f"layer {l + 1}", fontsize=8)
    fig.suptitle("hidden activations h_l at initialisation (x-range per panel)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    ctx.save_figure(fig, "activation_histograms")

    # training loss
    fig, axes = plt.subplots(1, len(activations), figsize=(5 * len(activations), 3.6), squeeze=False)
    for ax, act in zip(axes[0], activations):
        for r in (r for r in results if r["activation"] == act):
            if r["loss_curve"]:
                ax.plot(*zip(*r["loss_curve"]), **style(r))
            if r["diverged_step"]:
                ax.plot([], [], **{**style(r), "label": style(r)["label"] + f" (NaN/inf at step {r['diverged_step']})"})
        ax.set(yscale="log", xlabel="epoch", ylabel="training loss", title=act)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    ctx.save_figure(fig, "training_loss")


# ----- the run -----

def run(ctx: RunContext, cfg: VanishingConfig) -> dict[str, float]:
    data = load_images("mnist", cfg.train_images, 0, cfg.test_images)
    if cfg.probe_images > len(data.x_train):
        raise DojoError(f"probe_images {cfg.probe_images} exceeds the {len(data.x_train)} training images")
    cells = cfg.cells()
    state = {"results": []}  # one dict per finished cell
    done = ctx.restore(state)
    bar = ctx.progress(len(cells), desc="cells", initial=done, unit="cell")
    while done < len(cells):
        cell = cells[done]
        # every step ticks with the cells done so far: an interrupted cell starts again
        result = train_cell(ctx, cfg, data, cell, lambda: ctx.tick(done, state))
        state["results"].append(result)
        done += 1
        ctx.log(done, cell=cell.key, train_grad_log10_ratio=log10_ratio(result["at_init"]["grad_norms"]),
                **({"test_accuracy": result["test_accuracy"]} if "test_accuracy" in result else {}))
        bar.update(1)
        bar.set_postfix(last=f"{cell.key}: " + (f"{result['test_accuracy']:.3f}" if "test_accuracy" in result
                                                 else f"diverged at step {result['diverged_step']}"))
    bar.close()

    results = state["results"]
    save_table(ctx, cfg, results)
    save_figures(ctx, cfg, results)
    ctx.add_facts(cells=len(results), train_images=len(data.x_train),
                  params=sum(p.numel() for p in DeepMLP("relu", cfg.depth, cfg.width).parameters()))
    ctx.add_timings(train_seconds=sum(r["train_seconds"] for r in results))
    return summarise(results)


PRESETS = {
    "smoke": {"depth": 10, "width": 16, "epochs": 1, "train_images": 100, "test_images": 50, "probe_images": 50,
              "batch_size": 20, "batchnorm_cells": ("relu/normal",), "dropout_cells": ("relu/he",),
              "curve_points": 2},
    "quick": {},
    "full": {"train_images": 0, "epochs": 10},
}

register(Experiment(
    name="vanishing-gradients",
    topic="Vanishing gradients: sigmoid / tanh / ReLU, Normal(std 1) / Xavier / He initialisation, BatchNorm and "
          "dropout in a deep MLP (gradient norm and activations per layer)",
    paper="Glorot & Bengio 2010 (Xavier init); He et al. 2015 (He init); Ioffe & Szegedy 2015 (BatchNorm); "
          "Srivastava et al. 2014 (dropout); Saito 2016 (Deep Learning from Scratch, ch. 6)",
    config_cls=VanishingConfig, presets=PRESETS, run=run,
    metric="test_accuracy_relu_he", direction="max", datasets=("mnist",),
    references=(
        Reference(1.0, "course material: ReLU + Normal(std 1) MLP on MNIST, the loss became NaN",
                  "1 = diverged; the course's depth and width may differ", metric="train_diverged_relu_normal"),
    ),
))
