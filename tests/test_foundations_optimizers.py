"""`optimizers`: the 2-D test functions, DLfS's picture, the learning-rate choices and the sweep plan."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dldojo.engine.config import build_config
from dldojo.engine.errors import DojoError
from dldojo.foundations import optimizers as exp
from dldojo.scratch import optim


@pytest.mark.parametrize("fn", exp.FUNCTIONS, ids=lambda fn: fn.name)
def test_function_gradients_match_autograd(fn):
    rng = np.random.default_rng(0)
    for x, y in rng.uniform(-2, 2, size=(20, 2)):
        X, Y = torch.tensor(x, requires_grad=True), torch.tensor(y, requires_grad=True)
        gx, gy = torch.autograd.grad(fn.f(X, Y), (X, Y))
        np.testing.assert_allclose(fn.grad(x, y), (gx.item(), gy.item()), rtol=1e-12, atol=1e-12)


def test_minima_and_the_saddle():
    quadratic, rosenbrock, saddle = exp.FUNCTIONS
    assert quadratic.f(0.0, 0.0) == quadratic.minimum and rosenbrock.f(1.0, 1.0) == rosenbrock.minimum
    assert saddle.f(0.0, 1.0) == saddle.f(0.0, -1.0) == saddle.minimum == -0.25
    assert saddle.grad(0.0, 0.0) == (0.0, 0.0) and saddle.f(0.0, 0.0) == 0.0  # a stationary point above f*
    # a saddle: a minimum along x, a maximum along y
    assert saddle.f(0.1, 0.0) > 0 > saddle.f(0.0, 0.1)


def dlfs_path(name: str, lr: float, steps: int = 30) -> np.ndarray:
    """The book's update rules (common/optimizer.py), written out: Momentum v ← μv − ηg, θ ← θ + v; AdaGrad with
    ε = 1e-7; Adam in the 'efficient' form η_t = η √(1 − β₂ᵗ) / (1 − β₁ᵗ), θ ← θ − η_t m / (√v + 1e-7)."""
    fn = exp.FUNCTIONS[0]
    theta, v, m, h = np.array(fn.start), np.zeros(2), np.zeros(2), np.zeros(2)
    path = [theta.copy()]
    for t in range(1, steps + 1):
        g = np.array(fn.grad(*theta))
        if name == "sgd":
            theta = theta - lr * g
        elif name == "momentum":
            v = 0.9 * v - lr * g
            theta = theta + v
        elif name == "adagrad":
            h = h + g * g
            theta = theta - lr * g / (np.sqrt(h) + 1e-7)
        elif name == "adam":
            m, h = m + 0.1 * (g - m), h + 0.001 * (g * g - h)
            theta = theta - lr * np.sqrt(1 - 0.999**t) / (1 - 0.9**t) * m / (np.sqrt(h) + 1e-7)
        path.append(theta.copy())
    return np.array(path)


def test_dlfs_panel_reproduces_the_books_code():
    """The torch-convention optimisers draw DLfS's picture: SGD and Momentum exactly (constant η), AdaGrad and
    Adam up to their different ε (1e-7 in the book, 1e-10 / 1e-8 in torch; ε is added to a √h of order 0.1–1)."""
    paths = exp.dlfs_setting()
    assert set(paths) == {"sgd", "momentum", "adagrad", "adam"}
    for name, run in paths.items():
        assert len(run["path"]) == 31
        np.testing.assert_allclose(run["path"], dlfs_path(name, run["lr"]), atol=1e-12 if name in ("sgd", "momentum")
                                   else 1e-5)


def test_adam_rmsprop_and_momentum_leave_the_saddle_sooner_than_gradient_descent_at_the_same_lr():
    """Near (0, 0) ∂f/∂y ≈ −y = −10⁻³: gradient descent grows y by (1 + η) per step, while Adam and RMSProp
    divide the gradient by its own size and move y by about η per step, and momentum accumulates it. (AdaGrad
    also starts with a step of η, but its sum of squares keeps growing with y: at η = 0.01 it is the slowest.)"""
    saddle = exp.FUNCTIONS[2]

    def escape(name, lr):  # the first step with f < −1/8, half-way from the saddle (0) down to the minimum (−1/4)
        path = exp.trajectory(saddle, name, lr, 3000, {})["path"]
        below = [t for t, (x, y) in enumerate(path) if saddle.f(x, y) < -0.125]
        assert below, name
        return below[0]

    for lr in (0.01, 0.1):
        sgd = escape("sgd", lr)
        for name in ("momentum", "rmsprop", "adam"):
            assert escape(name, lr) < sgd / 2, (name, lr)
    assert escape("adagrad", 0.01) > escape("sgd", 0.01)


def test_best_trajectory_skips_diverging_rates_and_takes_the_fastest():
    quadratic = exp.FUNCTIONS[0]
    cfg = exp.OptimizersConfig(trajectory_steps=500, trajectory_lr_grid=(1.5, 0.01, 0.5))
    assert exp.trajectory(quadratic, "sgd", 1.5, 500, {})["diverged"]  # |1 − 2η| > 1 along y
    best = exp.best_trajectory(cfg, quadratic, "sgd")
    assert best["lr"] == 0.5 and best["steps"] == exp.trajectory(quadratic, "sgd", 0.5, 500, {}, 1e-4)["steps"]
    with pytest.raises(DojoError, match="diverged on quadratic at every learning rate"):
        exp.best_trajectory(exp.OptimizersConfig(trajectory_lr_grid=(1.5, 3.0)), quadratic, "sgd")


def test_plan_sweeps_every_optimiser_then_trains_each_at_its_best_validation_lr():
    cfg = exp.OptimizersConfig(optimizers=("sgd", "adam"), lrs=(0.1, 0.001), lr_grid=(0.5, 1.0, 2.0),
                               datasets=("mnist",))
    jobs = exp.planned_jobs(cfg, [])
    assert [(j.optimizer, j.lr, j.sweep) for j in jobs] == [("sgd", 0.05, True), ("sgd", 0.1, True), ("sgd", 0.2, True),
                                                           ("adam", 0.0005, True), ("adam", 0.001, True),
                                                           ("adam", 0.002, True)]
    val = {0.05: 0.9, 0.1: 0.95, 0.2: 0.95, 0.0005: 0.8, 0.001: 0.85, 0.002: 0.0}  # ties go to the smaller lr
    results = [{"dataset": "mnist", "optimizer": j.optimizer, "lr": j.lr, "sweep": True, "val_accuracy": val[j.lr]}
               for j in jobs]
    final = exp.planned_jobs(cfg, results)[len(jobs):]
    assert [(j.optimizer, j.lr, j.sweep) for j in final] == [("sgd", 0.1, False), ("adam", 0.001, False)]
    assert exp.planned_count(cfg) == 8
    fixed = exp.OptimizersConfig(optimizers=("sgd", "adam"), lrs=(0.3, 0.003))
    assert [(j.optimizer, j.lr, j.sweep) for j in exp.planned_jobs(fixed, [])] == [("sgd", 0.3, False),
                                                                                 ("adam", 0.003, False)]


def test_hyperparameters_reach_both_implementations():
    cfg = exp.OptimizersConfig(momentum=0.8, weight_decay=1e-4, adamw_weight_decay=0.05)
    assert cfg.hyper("nesterov") == {"momentum": 0.8, "weight_decay": 1e-4}
    assert cfg.hyper("adam") == {"weight_decay": 1e-4} and cfg.hyper("adamw") == {"weight_decay": 0.05}
    for name in optim.OPTIMIZERS:
        optim.make(name, [np.zeros(2)], lr=0.1, **cfg.hyper(name))
        optim.torch_optimizer(name, [torch.zeros(2, requires_grad=True)], lr=0.1, **cfg.hyper(name))


def test_config_checks():
    with pytest.raises(DojoError, match="lrs needs one learning rate per optimiser"):
        build_config(exp.OptimizersConfig, {"optimizers": ("sgd", "adam")})
    with pytest.raises(DojoError, match="optimizers must be distinct names"):
        build_config(exp.OptimizersConfig, {"optimizers": ("sgd", "lion"), "lrs": (0.1, 0.1)})
    with pytest.raises(DojoError, match="datasets must be distinct names"):
        build_config(exp.OptimizersConfig, {"datasets": ("imagenet",)})
    for preset in exp.PRESETS.values():
        build_config(exp.OptimizersConfig, preset)


def test_networks_share_their_initial_weights_across_optimisers():
    cfg = exp.OptimizersConfig(mlp_hidden=(8,), cnn_widths=(4, 8))
    a, b = (exp.build_network(cfg, "mnist", torch.zeros(2, 1, 28, 28), 7) for _ in range(2))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    cnn = exp.build_network(cfg, "cifar10", torch.zeros(2, 3, 32, 32), 7)
    assert cnn(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.realdata
def test_mlp_learns_mnist_with_every_optimiser_at_its_quick_lr(real_data):
    """Seeded: 1 epoch on 3,000 real MNIST images at the quick preset's learning rates: every optimiser
    well above chance (10 %) on 1,000 test images."""
    from dldojo.foundations.common import load_images

    cfg = exp.OptimizersConfig(**{**exp.PRESETS["quick"], "epochs": 1})
    data = load_images("mnist", 3000, 500, 1000)

    class Ctx:
        def seed_for(self, name):
            return 0

    for name in cfg.optimizers:
        result = exp.train(Ctx(), cfg, data, exp.Job("mnist", name, cfg.base_lr(name), False), lambda: None)
        assert result["test_accuracy"] > 0.8, (name, result["test_accuracy"])
