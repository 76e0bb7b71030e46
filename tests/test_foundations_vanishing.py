"""`vanishing-gradients`: σ′ ≤ 1/4, the initialisation scales, the ReLU variance growth behind the course's NaN,
and a cell that diverges is recorded without stopping the run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dldojo.engine.config import build_config
from dldojo.engine.errors import DojoError
from dldojo.foundations import vanishing as exp
from dldojo.foundations.common import ImageData


def test_sigmoid_derivative_maximum_is_a_quarter_at_zero():
    """σ′(a) = σ(a)(1 − σ(a)) = p(1 − p) ≤ 1/4 (AM-GM), with equality only at p = 1/2, i.e. a = 0."""
    a = torch.linspace(-20, 20, 400_001, dtype=torch.float64, requires_grad=True)
    (autograd,) = torch.autograd.grad(torch.sigmoid(a).sum(), a)
    closed_form = exp.derivative("sigmoid", a.detach())
    torch.testing.assert_close(closed_form, autograd, rtol=1e-12, atol=1e-15)
    assert closed_form.max().item() == 0.25
    assert abs(a[closed_form.argmax()].item()) < 1e-12  # the grid point at 0 (linspace gives -9.6e-16)
    assert exp.derivative("sigmoid", torch.tensor([2.0], dtype=torch.float64)).item() < 0.105  # 0.104993...
    # tanh′ ≤ 1 (at 0), ReLU′ ∈ {0, 1}
    (tanh_grad,) = torch.autograd.grad(torch.tanh(a).sum(), a)
    torch.testing.assert_close(exp.derivative("tanh", a.detach()), tanh_grad, rtol=1e-12, atol=1e-15)
    assert exp.derivative("tanh", a.detach()).max().item() == 1.0
    assert set(exp.derivative("relu", a.detach()).unique().tolist()) == {0.0, 1.0}
    assert exp.DERIVATIVE_MAX == {name: exp.derivative(name, a.detach()).max().item() for name in exp.ACTIVATIONS}
    # so through L sigmoid layers with unit-scale weights the backward signal shrinks by at least 4^L
    assert 0.25**15 < 1e-9


def test_initialisation_scales_and_shared_draws():
    assert exp.init_std("normal", 100, 100, 1.0) == 1.0
    assert exp.init_std("xavier", 784, 100) == pytest.approx(math.sqrt(2 / 884))
    assert exp.init_std("xavier", 100, 100) == pytest.approx(0.1)  # = DLfS's 1/√n for square layers
    assert exp.init_std("he", 100, 100) == pytest.approx(math.sqrt(2) * 0.1)
    models = {}
    for init in exp.INITS:
        models[init] = exp.DeepMLP("relu", 3, 100)
        exp.initialise(models[init], init, 1.0, torch.Generator().manual_seed(0))
    for l, W in enumerate(models["he"].weights()):  # the same standard-normal draws, scaled
        fan_out, fan_in = W.shape
        Z = W / exp.init_std("he", fan_in, fan_out)
        torch.testing.assert_close(models["normal"].weights()[l], Z)
        torch.testing.assert_close(models["xavier"].weights()[l] / exp.init_std("xavier", fan_in, fan_out), Z)
        assert abs(Z.std().item() - 1) < 0.1
    assert all(not b.any() for m in models.values() for name, b in m.named_parameters() if name.endswith("bias"))


@pytest.mark.parametrize(("init", "factor"), [("normal", 100.0), ("he", 1.0), ("xavier", 0.5)])
def test_relu_variance_grows_by_n_sigma_squared_over_two_per_layer(init, factor):
    """Var a_l = (n σ_w² / 2) Var a_{l−1}: ×100 per layer for Normal(std 1) at n = 200 (the explosion behind the
    course's NaN), ×1 for He, ×1/2 for Xavier on square layers."""
    model = exp.DeepMLP("relu", 6, 200, in_features=200).double()
    exp.initialise(model, init, 1.0, torch.Generator().manual_seed(1))
    model.tracing = True
    with torch.no_grad():
        model(torch.randn(2000, 200, dtype=torch.float64, generator=torch.Generator().manual_seed(2)))
    second_moments = [float((a ** 2).mean()) for a, _ in model.trace]
    ratios = np.array(second_moments[1:]) / np.array(second_moments[:-1])
    np.testing.assert_allclose(ratios, factor, rtol=0.25)


def synthetic_data(n: int = 300, seed: int = 0) -> ImageData:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 10
    x = torch.randn(n, 1, 28, 28, generator=g) * 0.5 + y.view(-1, 1, 1, 1) / 5  # weakly class-dependent
    return ImageData(x, y, x[:0], y[:0], x[:100], y[:100], tuple(map(str, range(10))))


class Ctx:
    """The two things a cell asks of the run context: seeds by name and the per-step tick."""

    def __init__(self):
        self.ticks = 0

    def seed_for(self, name: str) -> int:
        return sum(map(ord, name))

    def tick(self) -> None:
        self.ticks += 1


def test_relu_normal_diverges_and_the_cell_records_it_while_he_trains():
    cfg = exp.VanishingConfig(epochs=1, batch_size=50, probe_images=100, train_images=300)
    data, ctx = synthetic_data(), Ctx()
    diverged = exp.train_cell(ctx, cfg, data, exp.Cell("relu", "normal"), ctx.tick)  # no exception
    assert diverged["diverged_step"] > 0 and not math.isfinite(diverged["last_losses"][-1])
    assert diverged["at_init"]["loss"] > 1e9  # finite in float64: the logits are ~10^13 before the first step
    assert "test_accuracy" not in diverged and "after_training" not in diverged
    he = exp.train_cell(ctx, cfg, data, exp.Cell("relu", "he"), ctx.tick)
    assert he["diverged_step"] == 0 and 0 <= he["test_accuracy"] <= 1 and "after_training" in he
    bn = exp.train_cell(ctx, cfg, data, exp.Cell("relu", "normal", batchnorm=True), ctx.tick)
    assert bn["diverged_step"] == 0  # BatchNorm re-standardises every layer: the scale no longer compounds
    metrics = exp.summarise([diverged, he, bn])
    assert metrics["train_diverged_relu_normal"] == 1.0 and "test_accuracy_relu_normal" not in metrics
    assert metrics["train_diverged_step_relu_normal"] == diverged["diverged_step"]
    assert metrics["train_diverged_relu_he"] == 0.0 and "test_accuracy_relu_he" in metrics
    assert all(math.isfinite(v) for v in metrics.values())


def test_sigmoid_gradient_vanishes_towards_the_input_and_relu_he_keeps_it():
    data = synthetic_data()
    cfg = exp.VanishingConfig()
    ratios = {}
    for activation, init in (("sigmoid", "xavier"), ("relu", "he"), ("tanh", "xavier")):
        model = exp.DeepMLP(activation, cfg.depth, cfg.width)
        exp.initialise(model, init, 1.0, torch.Generator().manual_seed(0))
        measured = exp.probe(model, data.x_train[:200], data.y_train[:200], bins=10, dropout_seed=0)
        ratios[activation] = exp.log10_ratio(measured["grad_norms"])
        if activation == "sigmoid":
            assert all(layer["mean_derivative"] <= 0.25 for layer in measured["layers"])
    assert ratios["sigmoid"] < -5  # the first layer's gradient is a million times smaller than the output's
    assert abs(ratios["relu"]) < 1.5 and abs(ratios["tanh"]) < 1.5


def test_cells_and_config_checks():
    cfg = exp.VanishingConfig(batchnorm_cells=("relu/normal",), dropout_cells=("tanh/he",))
    keys = [c.key for c in cfg.cells()]
    assert len(keys) == 11 and keys[-2:] == ["relu_normal_bn", "tanh_he_dropout"]
    with pytest.raises(DojoError, match="not activation/init"):
        build_config(exp.VanishingConfig, {"batchnorm_cells": ("gelu/he",)})
    with pytest.raises(DojoError, match="inits must be names"):
        build_config(exp.VanishingConfig, {"inits": ("orthogonal",)})
    for preset in exp.PRESETS.values():
        build_config(exp.VanishingConfig, preset)
