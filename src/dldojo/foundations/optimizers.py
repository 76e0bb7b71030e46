"""`optimizers`: SGD, Momentum, Nesterov, AdaGrad, RMSProp, Adam and AdamW side by side — paths on 2-D test
functions and the same network trained on MNIST (and CIFAR-10 in full) by each: there is no silver bullet.

Curriculum: 深層モデルのための最適化 — 確率的勾配降下法, モメンタム, NAG, AdaGrad, RMSProp, Adam (JDLA E資格);
Saito, "Deep Learning from Scratch" (2016), ch. 6.1 ("DLfS"), whose `optimizer_compare_naive.py` compares
SGD / Momentum / AdaGrad / Adam on f = x²/20 + y² from (−7, 2) in 30 steps (η = 0.95 / 0.1 / 1.5 / 0.3).
Papers: Polyak 1964; Nesterov 1983; Sutskever et al. 2013; Duchi et al. 2011 (AdaGrad); Tieleman & Hinton
2012 (RMSProp); Kingma & Ba 2015 (Adam); Loshchilov & Hutter 2019 (AdamW); Wilson et al. 2017 ("The Marginal
Value of Adaptive Gradient Methods") and Schmidt, Schneider & Hennig 2021 ("Descending through a Crowded
Valley", 15 optimisers on 8 tasks): no optimiser wins on every task, and trying several at their default
settings does about as well as tuning one.

Update rules (θ parameters, g = ∇L(θ) at step t, η learning rate; torch.optim's conventions, written out in
NumPy in `dldojo.scratch.optim` and tested equal to torch.optim step for step, where the textbook forms
and how they differ are listed):
    SGD       θ ← θ − η g
    Momentum  b ← μ b + g;  θ ← θ − η b                                   (textbook v = −η b)
    Nesterov  b ← μ b + g;  θ ← θ − η (g + μ b)                           (θ = the look-ahead point)
    AdaGrad   h ← h + g²;  θ ← θ − η g / (√h + ε)
    RMSProp   h ← α h + (1 − α) g²;  θ ← θ − η g / (√h + ε)
    Adam      m ← β₁ m + (1 − β₁) g;  v ← β₂ v + (1 − β₂) g²;  θ ← θ − η m̂ / (√v̂ + ε)
              m̂ = m / (1 − β₁ᵗ), v̂ = v / (1 − β₂ᵗ)                          (bias correction)
    AdamW     θ ← θ − η λ θ, then Adam                                     (decoupled weight decay)
with μ = `momentum` (0.9), α = 0.99, β = (0.9, 0.999), ε = torch's defaults; L2 `weight_decay` (g ← g + λθ)
for all but AdamW, whose decoupled λ is `adamw_weight_decay` (torch's default 0.01).

Protocol
1. 2-D test functions (NumPy, float64, the scratch optimisers, analytic gradients), each from a fixed start:
       quadratic    f = x²/20 + y²                   from (−7, 2)      f* = 0 at (0, 0): DLfS's elongated bowl
       rosenbrock   f = (1 − x)² + 100 (y − x²)²      from (−1.2, 1)    f* = 0 at (1, 1): a curved, flat valley
       saddle       f = x²/2 + y⁴/4 − y²/2           from (−1.3, 10⁻³) a saddle at (0, 0) (f = 0), f* = −¼ at (0, ±1)
   Every optimiser runs at every learning rate of `trajectory_lr_grid` until f(θ_t) − f* < 10⁻⁴
   (`trajectory_tolerance`) or `trajectory_steps` steps, and keeps the lr that gets there in the fewest
   steps (where none does: the lowest mean gap over the run; a path leaving |θ| < 10⁶ has diverged and is
   not eligible). Reported: that number of steps. Every optimiser is tuned on every function, so the
   comparison is between the methods, not between default settings. Near the saddle ∂f/∂y ≈ −y is tiny:
   gradient descent multiplies y by (1 + η) per step, the adaptive methods divide g by its own size.
   AdamW's decay (λ = 0.01) acts here too, pulling θ towards 0: on Rosenbrock its fixed point is not (1, 1).
   DLfS's 30-step setting on the quadratic is drawn too, for the picture in the book.
2. Networks: every optimiser trains the same network from the same initial weights on the same batches (only
   the update rule and η differ): an MLP 784–256–256–10 (ReLU) on MNIST, and on CIFAR-10 a small CNN
   (3 × [conv 3×3 → ReLU → max-pool 2], widths 32 / 64 / 128, then linear), cross-entropy, batch 128, a
   constant learning rate, no augmentation. `val_images` training images are held out. Learning rates: in
   `full` every optimiser tries η × `lr_grid` (0.1 … 10 × a textbook value: SGD 0.1, Momentum / Nesterov
   0.03, AdaGrad 0.03, RMSProp / Adam / AdamW 0.001) for `sweep_epochs` epochs and keeps the one with the
   best validation accuracy (ties: the smaller η), then trains `epochs` epochs. `quick` uses, fixed, the
   rates that sweep chose on MNIST (seed 0): SGD 0.3, Momentum 0.03, Nesterov 0.09, AdaGrad 0.009,
   RMSProp 0.001, Adam 0.003, AdamW 0.001. The test images choose nothing.

Reported: `test_<dataset>_accuracy_<optimiser>` and the best, the spread (best − worst);
`val_<dataset>_lr_<optimiser>` when a sweep chose it; `eval_<function>_steps_<optimiser>` (steps to the
tolerance, `trajectory_steps` + 1 = not reached); `train_diverged_runs` (trainings whose loss left the floats).
The table ranks every optimiser on every problem.

Why a loop here and not the engine's `fit`: `fit` owns the run's single checkpoint (one model, one optimiser),
while this experiment is many independent trainings. The declared state is the list of finished trainings;
an interrupted one restarts from its beginning on `--resume` (its random draws come from seeds of its own,
so the result is the same).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from dldojo.engine.errors import DojoError
from dldojo.engine.registry import Experiment, Reference, register
from dldojo.engine.run import RunContext
from dldojo.foundations.common import ImageData, LossCurve, accuracy, load_images, train_epoch
from dldojo.scratch import optim

OPTIMIZERS = tuple(optim.OPTIMIZERS)
DATASETS = ("mnist", "cifar10")


@dataclasses.dataclass
class OptimizersConfig:
    RANGES: ClassVar[dict] = {
        "trajectory_steps": (1, 100_000), "trajectory_tolerance": (1e-300, 1e6), "trajectory_lr_grid": (1e-8, 100.0),
        "lrs": (1e-8, 100.0),
        "lr_grid": (1e-3, 1e3), "sweep_epochs": (1, 100), "epochs": (1, 1000), "batch_size": (1, 8192),
        "train_images": (0, 60000), "cifar10_train_images": (0, 45000), "val_images": (1, 30000), "test_images": (0, 10000),
        "mlp_hidden": (1, 8192), "cnn_widths": (1, 1024), "momentum": (0.0, 0.999), "weight_decay": (0.0, 1.0),
        "adamw_weight_decay": (0.0, 10.0), "curve_points": (1, 1000)}
    """Allowed (low, high) of the numeric fields, checked before anything is created (`engine.config`)."""

    optimizers: tuple[str, ...] = OPTIMIZERS
    """Optimisers to compare: sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw."""
    trajectory_steps: int = 2000
    """Most steps of every optimiser on every 2-D test function."""
    trajectory_tolerance: float = 1e-4
    """A 2-D run has converged (and stops) at the first step with f(θ_t) − f* below this."""
    trajectory_lr_grid: tuple[float, ...] = tuple(float(f"{v:.3g}") for v in np.logspace(-4, 0.5, 19))
    """Learning rates tried on every 2-D function (the one reaching the tolerance in the fewest steps is kept)."""
    datasets: tuple[str, ...] = ("mnist",)
    """Image datasets the networks train on: mnist (the MLP) and / or cifar10 (the CNN)."""
    lrs: tuple[float, ...] = (0.1, 0.03, 0.03, 0.03, 0.001, 0.001, 0.001)
    """Learning rate of each optimiser (in the order of `optimizers`): used as is when `lr_grid` is (1.0,),
    else the centre of the sweep (the defaults: common textbook values)."""
    lr_grid: tuple[float, ...] = (1.0,)
    """Multipliers of each optimiser's lr tried for `sweep_epochs` on the validation images; (1.0,) = no sweep."""
    sweep_epochs: int = 1
    """Epochs of every sweep training."""
    epochs: int = 5
    """Epochs of the final training of every optimiser."""
    batch_size: int = 128
    """Training images per step."""
    train_images: int = 0
    """Training images per dataset after the validation hold-out (class-stratified; 0 = all)."""
    cifar10_train_images: int = 0
    """CIFAR-10's training images instead of `train_images` when > 0 (a CNN epoch costs ~70 s on 2 AVX2 cores)."""
    val_images: int = 5000
    """Training images held out to choose learning rates and draw the validation curves."""
    test_images: int = 0
    """Test images per dataset (class-stratified; 0 = all 10,000)."""
    mlp_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the MNIST network (ReLU)."""
    cnn_widths: tuple[int, ...] = (32, 64, 128)
    """Channels of the CIFAR-10 network's conv stages (conv 3×3 → ReLU → max-pool 2 each)."""
    momentum: float = 0.9
    """μ of Momentum and Nesterov."""
    weight_decay: float = 0.0
    """L2 weight decay λ (g ← g + λθ) of every optimiser except AdamW."""
    adamw_weight_decay: float = 0.01
    """AdamW's decoupled weight decay λ (θ ← θ − ηλθ; torch's default)."""
    curve_points: int = 10
    """Training-loss points per epoch in the curves (each the mean loss since the previous point)."""

    def validate(self) -> None:
        unknown = sorted(set(self.optimizers) - set(OPTIMIZERS))
        if unknown or not self.optimizers or len(set(self.optimizers)) != len(self.optimizers):
            raise DojoError(f"optimizers must be distinct names from {', '.join(OPTIMIZERS)}; got {self.optimizers}")
        if len(self.lrs) != len(self.optimizers):
            raise DojoError(f"lrs needs one learning rate per optimiser ({len(self.optimizers)}: "
                            f"{', '.join(self.optimizers)}), got {len(self.lrs)}")
        if not self.datasets or not set(self.datasets) <= set(DATASETS) or len(set(self.datasets)) < len(self.datasets):
            raise DojoError(f"datasets must be distinct names from {', '.join(DATASETS)}; got {self.datasets}")
        if not self.trajectory_lr_grid or not self.lr_grid or not self.mlp_hidden or not self.cnn_widths:
            raise DojoError("trajectory_lr_grid, lr_grid, mlp_hidden and cnn_widths must not be empty")
        if self.val_images < 10:
            raise DojoError(f"val_images must be at least 10 (it chooses learning rates), got {self.val_images}")

    def train_images_of(self, dataset: str) -> int:
        return self.cifar10_train_images if dataset == "cifar10" and self.cifar10_train_images else self.train_images

    def base_lr(self, name: str) -> float:
        return self.lrs[self.optimizers.index(name)]

    def hyper(self, name: str) -> dict[str, float]:
        """The optimiser's keyword arguments besides the learning rate (the same for NumPy and torch)."""
        if name == "adamw":
            return {"weight_decay": self.adamw_weight_decay}
        extra = {"momentum": self.momentum} if name in ("momentum", "nesterov") else {}
        return {**extra, "weight_decay": self.weight_decay}


# ----- 1. 2-D test functions -----

@dataclasses.dataclass(frozen=True)
class Function2D:
    name: str
    f: Callable[[float, float], float]
    grad: Callable[[float, float], tuple[float, float]]
    start: tuple[float, float]
    minimum: float
    view: tuple[float, float, float, float]  # x0, x1, y0, y1 of the contour picture
    log_contours: bool = False


FUNCTIONS = (
    Function2D("quadratic", lambda x, y: x * x / 20 + y * y, lambda x, y: (x / 10, 2 * y),
                 (-7.0, 2.0), 0.0, (-8, 8, -3, 3)),
    Function2D("rosenbrock", lambda x, y: (1 - x) ** 2 + 100 * (y - x * x) ** 2,
                 lambda x, y: (-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)),
                 (-1.2, 1.0), 0.0, (-2, 2, -1, 3), log_contours=True),
    Function2D("saddle", lambda x, y: x * x / 2 + y ** 4 / 4 - y * y / 2, lambda x, y: (x, y ** 3 - y),
                 (-1.3, 1e-3), -0.25, (-1.5, 1.5, -1.5, 1.5)),
)
DLFS_SETTING = {"sgd": 0.95, "momentum": 0.1, "adagrad": 1.5, "adam": 0.3}  # optimizer_compare_naive.py, 30 steps


def trajectory(fn: Function2D, name: str, lr: float, steps: int, hyper: dict[str, float],
               tolerance: float = 0.0) -> dict[str, Any]:
    """Optimiser `name` on `fn` from its start: {"path": θ₀ … θ_t, "steps": the first t with f(θ_t) − f* <
    `tolerance` (where the path stops) or None, "diverged": whether θ left |θ| < 10⁶ or the floats}."""
    theta = np.array(fn.start, dtype=np.float64)
    opt = optim.make(name, [theta], lr=lr, **hyper)
    path, reached, diverged = [theta.copy()], None, False
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(1, steps + 1):
            opt.step([np.array(fn.grad(*theta))])
            if not (np.all(np.isfinite(theta)) and np.abs(theta).max() < 1e6):
                diverged = True
                break
            path.append(theta.copy())
            if fn.f(*theta) - fn.minimum < tolerance:
                reached = t
                break
    return {"path": np.array(path), "steps": reached, "diverged": diverged}


def gaps(fn: Function2D, path: np.ndarray) -> np.ndarray:
    return np.array([fn.f(x, y) - fn.minimum for x, y in path])


def best_trajectory(cfg: OptimizersConfig, fn: Function2D, name: str) -> dict[str, Any]:
    """The grid learning rate that reaches f − f* < tolerance in the fewest steps (none reaching it: the lowest
    mean gap over the run), among the runs that did not diverge, with its path."""
    best, best_key = None, None
    for lr in cfg.trajectory_lr_grid:
        run = trajectory(fn, name, lr, cfg.trajectory_steps, cfg.hyper(name), cfg.trajectory_tolerance)
        if run["diverged"]:
            continue
        key = (run["steps"] or cfg.trajectory_steps + 1, float(gaps(fn, run["path"]).mean()))
        if best_key is None or key < best_key:
            best, best_key = {"lr": lr, **run}, key
    if best is None:
        raise DojoError(f"{name} diverged on {fn.name} at every learning rate of trajectory_lr_grid; add smaller ones")
    return best


def run_trajectories(cfg: OptimizersConfig) -> dict[str, dict[str, dict[str, Any]]]:
    """{function: {optimiser: {"lr", "path", "steps", "final_gap"}}} at each optimiser's best grid lr, and
    "dlfs": DLfS's 30-step setting on the quadratic."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for fn in FUNCTIONS:
        out[fn.name] = {}
        for name in cfg.optimizers:
            best = best_trajectory(cfg, fn, name)
            out[fn.name][name] = {**best, "final_gap": float(gaps(fn, best["path"][-1:])[0])}
    out["dlfs"] = dlfs_setting()
    return out


def dlfs_setting() -> dict[str, dict[str, Any]]:
    """DLfS's optimizer_compare_naive.py: the quadratic, 30 steps from (−7, 2) at the book's learning rates."""
    return {name: {"lr": lr, **trajectory(FUNCTIONS[0], name, lr, 30, {})} for name, lr in DLFS_SETTING.items()}


# ----- 2. the networks -----

class MLP(nn.Module):
    """x → flatten → [Linear → ReLU] × len(hidden) → Linear (torch's default initialisation)."""

    def __init__(self, in_features: int, hidden: tuple[int, ...], num_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        for width in hidden:
            layers += [nn.Linear(in_features, width), nn.ReLU()]
            in_features = width
        self.net = nn.Sequential(*layers, nn.Linear(in_features, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SmallCNN(nn.Module):
    """[conv 3×3 → ReLU → max-pool 2] per width → flatten → Linear."""

    def __init__(self, in_channels: int, widths: tuple[int, ...], image_size: int = 32, num_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = []
        for width in widths:
            layers += [nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            in_channels, image_size = width, image_size // 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(in_channels * image_size * image_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def build_network(cfg: OptimizersConfig, dataset: str, x: torch.Tensor, init_seed: int) -> nn.Module:
    """The dataset's network with initial weights drawn from `init_seed` alone (the same for every optimiser)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        if dataset == "mnist":
            return MLP(x[0].numel(), cfg.mlp_hidden)
        if min(x.shape[-2:]) < 2 ** len(cfg.cnn_widths):
            raise DojoError(f"{len(cfg.cnn_widths)} pooling stages do not fit {tuple(x.shape[-2:])} images")
        return SmallCNN(x.shape[1], cfg.cnn_widths, x.shape[-1])


@dataclasses.dataclass(frozen=True)
class Job:
    """One training: an optimiser at one learning rate on one dataset, a sweep or the final run."""

    dataset: str
    optimizer: str
    lr: float
    sweep: bool

    def label(self) -> str:
        return f"{self.dataset} {self.optimizer} lr={self.lr:.3g}{' (sweep)' if self.sweep else ''}"


def train(ctx: RunContext, cfg: OptimizersConfig, data: ImageData, job: Job, keep_going: Callable[[], None]) -> dict:
    """Train one network; `keep_going()` after every step is the run's Ctrl-C / checkpoint hook. A loss that
    leaves the floats ends this training and is recorded (a too large sweep lr), the run goes on."""
    model = build_network(cfg, job.dataset, data.x_train, ctx.seed_for(f"init/{job.dataset}"))
    optimizer = optim.torch_optimizer(job.optimizer, model.parameters(), lr=job.lr, **cfg.hyper(job.optimizer))
    order_generator = torch.Generator().manual_seed(ctx.seed_for(f"batches/{job.dataset}"))
    epochs = cfg.sweep_epochs if job.sweep else cfg.epochs
    curve, val_curve = LossCurve(max(1, len(data.x_train) // cfg.batch_size), cfg.curve_points), []
    started = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        if not train_epoch(model, optimizer, data, cfg.batch_size, epoch, order_generator, curve, keep_going):
            break
        val_curve.append((epoch + 1, accuracy(model, data.x_val, data.y_val)))
    diverged_step, loss_curve = curve.diverged_step, curve.points
    result = {"dataset": job.dataset, "optimizer": job.optimizer, "lr": job.lr, "sweep": job.sweep,
              "diverged_step": diverged_step, "loss_curve": loss_curve, "val_curve": val_curve,
              "val_accuracy": val_curve[-1][1] if val_curve and not diverged_step else 0.0,
              "train_loss": loss_curve[-1][1] if loss_curve else float("nan"),
              "train_seconds": time.perf_counter() - started}
    if not job.sweep and not diverged_step:
        result["test_accuracy"] = accuracy(model, data.x_test, data.y_test)
    return result


def chosen_lr(cfg: OptimizersConfig, results: list[dict], dataset: str, name: str) -> float:
    """The learning rate the sweep chose (best validation accuracy; ties: the smaller), or the fixed one."""
    if len(cfg.lr_grid) == 1:
        return cfg.base_lr(name) * cfg.lr_grid[0]
    sweep = sorted((r["lr"], r["val_accuracy"]) for r in results
                   if r["sweep"] and (r["dataset"], r["optimizer"]) == (dataset, name))
    return max(sweep, key=lambda lr_acc: lr_acc[1])[0]


def planned_jobs(cfg: OptimizersConfig, results: list[dict]) -> list[Job]:
    """The trainings in order, as far as the finished `results` determine them: 1. the sweep (every optimiser
    at every lr multiplier, every dataset); 2. the final training of every optimiser at its chosen lr."""
    jobs = []
    if len(cfg.lr_grid) > 1:
        jobs = [Job(ds, name, cfg.base_lr(name) * m, True) for ds in cfg.datasets for name in cfg.optimizers
                for m in cfg.lr_grid]
        if len(results) < len(jobs):
            return jobs
    return jobs + [Job(ds, name, chosen_lr(cfg, results, ds, name), False) for ds in cfg.datasets
                   for name in cfg.optimizers]


def planned_count(cfg: OptimizersConfig) -> int:
    sweep = len(cfg.lr_grid) if len(cfg.lr_grid) > 1 else 0
    return len(cfg.datasets) * len(cfg.optimizers) * (sweep + 1)


# ----- metrics, table and pictures -----

def ranks(values: dict[str, Any], higher_is_better: bool) -> dict[str, int]:
    order = sorted(values, key=lambda k: -values[k] if higher_is_better else values[k])
    return {k: order.index(k) + 1 for k in values}


def summarise(cfg: OptimizersConfig, paths: dict, results: list[dict]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for fn in FUNCTIONS:
        for name in cfg.optimizers:
            metrics[f"eval_{fn.name}_steps_{name}"] = float(paths[fn.name][name]["steps"] or cfg.trajectory_steps + 1)
    for ds in cfg.datasets:
        finals = {r["optimizer"]: r for r in results if not r["sweep"] and r["dataset"] == ds}
        accs = {name: r["test_accuracy"] for name, r in finals.items() if "test_accuracy" in r}
        for name, r in finals.items():
            if name in accs:
                metrics[f"test_{ds}_accuracy_{name}"] = accs[name]
                metrics[f"train_{ds}_loss_{name}"] = r["train_loss"]
            if len(cfg.lr_grid) > 1:
                metrics[f"val_{ds}_lr_{name}"] = r["lr"]
        if accs:
            metrics[f"test_{ds}_best_accuracy"] = max(accs.values())
            metrics[f"test_{ds}_accuracy_spread"] = max(accs.values()) - min(accs.values())
    metrics["train_diverged_runs"] = float(sum(bool(r["diverged_step"]) for r in results))
    return metrics


def save_table(ctx: RunContext, cfg: OptimizersConfig, paths: dict, results: list[dict]) -> None:
    """One row per optimiser: its lr and result on every problem, with its rank (1 = best) in brackets."""
    columns: dict[str, dict[str, str]] = {name: {"optimiser": optim.NAMES[name]} for name in cfg.optimizers}
    for ds in cfg.datasets:
        finals = {r["optimizer"]: r for r in results if not r["sweep"] and r["dataset"] == ds}
        accs = {n: r["test_accuracy"] for n, r in finals.items() if "test_accuracy" in r}
        rank = ranks(accs, higher_is_better=True)
        for name in cfg.optimizers:
            r = finals[name]
            columns[name][f"{ds} lr"] = f"{r['lr']:.3g}"
            columns[name][f"{ds} test accuracy"] = (f"{accs[name]:.4f} ({rank[name]})" if name in accs else
                                                    f"diverged at step {r['diverged_step']}")
    for fn in FUNCTIONS:
        runs = {n: paths[fn.name][n] for n in cfg.optimizers}
        rank = ranks({n: (r["steps"] or cfg.trajectory_steps + 1, r["final_gap"]) for n, r in runs.items()},
                     higher_is_better=False)
        for name, r in runs.items():
            steps = f"{r['steps']} steps" if r["steps"] else f"not reached (gap {r['final_gap']:.2g})"
            columns[name][f"{fn.name}: lr; steps"] = f"{r['lr']:.3g}; {steps} ({rank[name]})"
    sweep = (f"chosen from lrs × {list(cfg.lr_grid)} by validation accuracy after {cfg.sweep_epochs} epoch(s)"
             if len(cfg.lr_grid) > 1 else "fixed (`lrs`)")
    ctx.save_table("no_silver_bullet", list(columns.values()), caption=(
        f"Rank in brackets (1 = best). Networks: test accuracy after {cfg.epochs} epochs, same initial weights and "
        f"batches for every optimiser, learning rate {sweep}; one seed, so differences of a few tenths of a point "
        f"may be within what another seed would change. 2-D functions: steps until f(θ_t) − f* < "
        f"{cfg.trajectory_tolerance:g} (at most {cfg.trajectory_steps}) at the grid learning rate that gets there "
        f"fastest; where none does, the gap after the last step."))


def draw_contours(ax, fn: Function2D) -> None:
    x0, x1, y0, y1 = fn.view
    X, Y = np.meshgrid(np.linspace(x0, x1, 300), np.linspace(y0, y1, 300))
    Z = fn.f(X, Y) - fn.minimum
    if fn.log_contours:
        from matplotlib.colors import LogNorm

        ax.contour(X, Y, Z + 1e-3, levels=np.logspace(-2, 3.5, 14), norm=LogNorm(), cmap="Greys", linewidths=0.6)
    else:
        ax.contour(X, Y, Z, levels=20, cmap="Greys", linewidths=0.6)
    ax.plot(*fn.start, "k^", ms=6)
    ax.set(xlim=(x0, x1), ylim=(y0, y1))


def save_trajectory_figures(ctx: RunContext, cfg: OptimizersConfig, paths: dict) -> None:
    import matplotlib.pyplot as plt

    colours = {name: f"C{i}" for i, name in enumerate(OPTIMIZERS)}
    # one panel per function and optimiser: contours, the start (triangle) and the path at the fastest lr
    rows, cols = len(FUNCTIONS), len(cfg.optimizers)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.4 * rows), squeeze=False)
    for row, fn in zip(axes, FUNCTIONS):
        for ax, name in zip(row, cfg.optimizers):
            run = paths[fn.name][name]
            draw_contours(ax, fn)
            ax.plot(run["path"][:, 0], run["path"][:, 1], "-", color=colours[name], lw=1.0,
                    marker="." if len(run["path"]) <= 60 else None, ms=3)
            steps = f"{run['steps']} steps" if run["steps"] else f"> {cfg.trajectory_steps} steps"
            ax.set_title(f"{optim.NAMES[name]} η={run['lr']:.3g}: {steps}", fontsize=8)
            ax.tick_params(labelsize=6)
            if ax is row[0]:
                ax.set_ylabel(fn.name, fontsize=9)
    fig.suptitle(f"paths to f − f* < {cfg.trajectory_tolerance:g} at each optimiser's fastest learning rate "
                 f"of the grid", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    ctx.save_figure(fig, "trajectories")

    # DLfS's picture: the quadratic, 30 steps at the book's learning rates
    quadratic = FUNCTIONS[0]
    fig, axes = plt.subplots(1, len(paths["dlfs"]), figsize=(3.6 * len(paths["dlfs"]), 2.6))
    for ax, (name, run) in zip(axes, paths["dlfs"].items()):
        draw_contours(ax, quadratic)
        ax.plot(run["path"][:, 0], run["path"][:, 1], "-o", color=colours[name], lw=1.0, ms=3)
        ax.set_title(f"{optim.NAMES[name]} η={run['lr']:g}", fontsize=9)
        ax.tick_params(labelsize=7)
    fig.suptitle("f = x²/20 + y², 30 steps from (−7, 2) at DLfS's learning rates (optimizer_compare_naive.py)",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    ctx.save_figure(fig, "trajectories_dlfs")

    fig, axes = plt.subplots(1, len(FUNCTIONS), figsize=(5.2 * len(FUNCTIONS), 3.8))
    for ax, fn in zip(axes, FUNCTIONS):
        for name in cfg.optimizers:
            run = paths[fn.name][name]
            ax.plot(np.maximum(gaps(fn, run["path"]), 1e-16), color=colours[name],
                    label=f"{optim.NAMES[name]} η={run['lr']:.3g}")
        ax.axhline(cfg.trajectory_tolerance, color="grey", lw=0.8, ls="--")
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlim(left=0)
        ax.set(yscale="log", xlabel="step", ylabel="f(θ_t) − f*", title=fn.name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    ctx.save_figure(fig, "trajectory_gaps")


def save_training_figures(ctx: RunContext, cfg: OptimizersConfig, results: list[dict]) -> None:
    import matplotlib.pyplot as plt

    colours = {name: f"C{i}" for i, name in enumerate(OPTIMIZERS)}
    fig, axes = plt.subplots(len(cfg.datasets), 2, figsize=(11, 3.8 * len(cfg.datasets)), squeeze=False)
    for row, ds in zip(axes, cfg.datasets):
        for r in (r for r in results if not r["sweep"] and r["dataset"] == ds):
            label = f"{optim.NAMES[r['optimizer']]} η={r['lr']:.3g}"
            if r["loss_curve"]:
                row[0].plot(*zip(*r["loss_curve"]), color=colours[r["optimizer"]], label=label)
            if r["val_curve"]:
                row[1].plot(*zip(*r["val_curve"]), marker="o", ms=3, color=colours[r["optimizer"]], label=label)
        row[0].set(yscale="log", xlabel="epoch", ylabel="training loss", title=f"{ds}: training loss")
        row[1].set(xlabel="epoch", ylabel="validation accuracy", title=f"{ds}: validation accuracy")
        for ax in row:
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    ctx.save_figure(fig, "training_curves")
    if len(cfg.lr_grid) > 1:
        fig, axes = plt.subplots(1, len(cfg.datasets), figsize=(5.5 * len(cfg.datasets), 3.8), squeeze=False)
        for ax, ds in zip(axes[0], cfg.datasets):
            for name in cfg.optimizers:
                sweep = sorted((r["lr"], r["val_accuracy"]) for r in results
                               if r["sweep"] and (r["dataset"], r["optimizer"]) == (ds, name))
                ax.plot(*zip(*sweep), marker="o", color=colours[name], label=optim.NAMES[name])
            ax.set(xscale="log", xlabel="learning rate", ylabel=f"validation accuracy ({cfg.sweep_epochs} epochs)",
                   title=f"{ds}: learning-rate sweep (0 = diverged)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        ctx.save_figure(fig, "lr_sweep")


# ----- the run -----

def run(ctx: RunContext, cfg: OptimizersConfig) -> dict[str, float]:
    started = time.perf_counter()
    paths = run_trajectories(cfg)  # NumPy, deterministic, a second or two: recomputed on --resume
    trajectory_seconds = time.perf_counter() - started
    data = {ds: load_images(ds, cfg.train_images_of(ds), cfg.val_images, cfg.test_images) for ds in cfg.datasets}

    state = {"results": []}  # one dict per finished training
    done = ctx.restore(state)
    planned = planned_count(cfg)
    bar = ctx.progress(planned, desc="trainings", initial=done, unit="run")
    while done < planned:
        job = planned_jobs(cfg, state["results"])[done]
        # every step ticks with the trainings done so far: an interrupted training starts again
        result = train(ctx, cfg, data[job.dataset], job, lambda: ctx.tick(done, state))
        state["results"].append(result)
        done += 1
        ctx.log(done, run=job.label(), val_accuracy=result["val_accuracy"], train_loss=result["train_loss"])
        bar.update(1)
        bar.set_postfix(last=f"{job.label()}: val {result['val_accuracy']:.3f}")
    bar.close()

    results = state["results"]
    metrics = summarise(cfg, paths, results)
    save_table(ctx, cfg, paths, results)
    save_trajectory_figures(ctx, cfg, paths)
    save_training_figures(ctx, cfg, results)
    ctx.add_facts(training_runs=len(results),
                  **{f"{ds}_train_images": len(d.x_train) for ds, d in data.items()},
                  **{f"{ds}_params": sum(p.numel() for p in build_network(cfg, ds, d.x_train, 0).parameters())
                     for ds, d in data.items()})
    ctx.add_timings(trajectory_seconds=trajectory_seconds, train_seconds=sum(r["train_seconds"] for r in results),
                    **{f"train_seconds_{r['dataset']}_{r['optimizer']}": r["train_seconds"]
                       for r in results if not r["sweep"]})
    return metrics


PRESETS = {
    # smoke: both datasets and every optimiser on the fixtures, a lr sweep of two multipliers, tiny networks
    "smoke": {"trajectory_steps": 40, "trajectory_tolerance": 0.01, "trajectory_lr_grid": (0.001, 0.01, 0.1),
              "datasets": ("mnist", "cifar10"),
              "lr_grid": (0.5, 1.0), "epochs": 1, "batch_size": 32, "val_images": 40, "test_images": 50,
              "train_images": 96, "mlp_hidden": (16,), "cnn_widths": (4, 8), "curve_points": 2},
    # quick: MNIST only, 3 epochs on 55,000 images, at the learning rates the full preset's MNIST sweep chose
    # (seed 0, commit of this preset; validation accuracy after 1 epoch on 55,000 images)
    "quick": {"epochs": 3, "lrs": (0.3, 0.03, 0.09, 0.009, 0.001, 0.003, 0.001)},
    # full: a validation sweep of each optimiser's lr over two decades, then 10 epochs; CIFAR-10 with the CNN on
    # a stratified 10,000 of its training images (all 45,000 would be 140 CNN epochs of ~70 s on 2 AVX2 cores)
    "full": {"datasets": ("mnist", "cifar10"), "lr_grid": (0.1, 0.3, 1.0, 3.0, 10.0), "sweep_epochs": 1,
             "epochs": 10, "cifar10_train_images": 10000},
}

register(Experiment(
    name="optimizers",
    topic="Optimisation: SGD, Momentum, Nesterov, AdaGrad, RMSProp, Adam, AdamW on 2-D test functions and on "
          "MNIST / CIFAR-10 (no silver bullet)",
    paper="Polyak 1964; Sutskever et al. 2013 (NAG); Duchi et al. 2011 (AdaGrad); Tieleman & Hinton 2012 "
          "(RMSProp); Kingma & Ba 2015 (Adam); Loshchilov & Hutter 2019 (AdamW); Wilson et al. 2017; "
          "Saito 2016 (Deep Learning from Scratch, ch. 6)",
    config_cls=OptimizersConfig, presets=PRESETS, run=run,
    metric="test_mnist_best_accuracy", direction="max", datasets=DATASETS,
    references=(
        Reference(0.984, "Simard, Steinkraus & Platt 2003: MLP with 800 hidden units, cross-entropy, no "
                         "distortions: 1.6 % test error (LeCun's MNIST table)",
                  "a wider network trained longer; the point here is the comparison between optimisers"),
    ),
))
