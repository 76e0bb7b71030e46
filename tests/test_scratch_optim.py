"""The NumPy optimisers (dldojo.scratch.optim) take the same steps as torch.optim, in float64, and the
textbook forms differ from torch's exactly where the module docstring says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dldojo.scratch import optim


def small_model_problem(seed: int = 0):
    """A 2-layer tanh network on fixed random data (float64): weights as NumPy arrays, and a function giving
    the loss gradients for any weights (through torch autograd, so both optimisers see the same gradients)."""
    rng = np.random.default_rng(seed)
    X, y = rng.standard_normal((32, 5)), rng.standard_normal((32, 2))
    weights = [rng.standard_normal((5, 8)) * 0.5, np.zeros(8), rng.standard_normal((8, 2)) * 0.5, np.zeros(2)]

    def grads(ws: list[torch.Tensor]) -> list[torch.Tensor]:
        W1, b1, W2, b2 = ws
        loss = ((torch.tanh(torch.from_numpy(X) @ W1 + b1) @ W2 + b2 - torch.from_numpy(y)) ** 2).mean()
        return list(torch.autograd.grad(loss, ws))

    return weights, grads


def trajectories(name: str, steps: int = 25, lr: float = 0.05, lr_at=None, **hyper):
    """(NumPy trajectory, torch trajectory): the parameters after every step, from the same start."""
    weights, grads = small_model_problem()
    np_params = [w.copy() for w in weights]
    torch_params = [torch.tensor(w, requires_grad=True) for w in weights]
    ours = optim.make(name, np_params, lr=lr, **dict(hyper))
    theirs = optim.torch_optimizer(name, torch_params, lr=lr, **dict(hyper))
    ours_path, theirs_path = [], []
    for t in range(steps):
        if lr_at is not None:  # a learning-rate schedule, set the way a torch scheduler sets it
            ours.lr = lr_at(t)
            for group in theirs.param_groups:
                group["lr"] = lr_at(t)
        g_np = [g.numpy() for g in grads([torch.tensor(p, requires_grad=True) for p in np_params])]
        ours.step(g_np)
        theirs.zero_grad()
        for p, g in zip(torch_params, grads(torch_params)):
            p.grad = g
        theirs.step()
        ours_path.append([p.copy() for p in np_params])
        theirs_path.append([p.detach().numpy().copy() for p in torch_params])
    return ours_path, theirs_path


CASES = [
    ("sgd", {}),
    ("sgd", {"weight_decay": 0.1}),
    ("momentum", {"momentum": 0.9}),
    ("momentum", {"momentum": 0.8, "dampening": 0.3, "weight_decay": 0.05}),
    ("nesterov", {"momentum": 0.9}),
    ("nesterov", {"momentum": 0.5, "weight_decay": 0.05}),
    ("adagrad", {}),
    ("adagrad", {"initial_accumulator_value": 0.1, "lr_decay": 0.01, "eps": 1e-3, "weight_decay": 0.02}),
    ("rmsprop", {}),
    ("rmsprop", {"alpha": 0.9, "eps": 1e-3}),
    ("rmsprop", {"centered": True, "momentum": 0.5, "weight_decay": 0.01}),
    ("adam", {}),
    ("adam", {"beta1": 0.5, "beta2": 0.9, "eps": 1e-3, "weight_decay": 0.1}),
    ("adamw", {}),
    ("adamw", {"weight_decay": 0.5, "beta2": 0.99}),
]


@pytest.mark.parametrize(("name", "hyper"), CASES, ids=[f"{n}-{'-'.join(h) or 'defaults'}" for n, h in CASES])
def test_same_trajectory_as_torch_step_for_step(name, hyper):
    lr = 0.01 if name in ("rmsprop", "adam", "adamw") else 0.05
    ours, theirs = trajectories(name, lr=lr, **hyper)
    for step, (a, b) in enumerate(zip(ours, theirs), start=1):
        for p, q in zip(a, b):
            np.testing.assert_allclose(p, q, rtol=1e-11, atol=1e-13, err_msg=f"{name} {hyper} step {step}")
    moved = max(np.abs(p - w).max() for p, w in zip(ours[-1], small_model_problem()[0]))
    assert moved > 1e-3  # the trajectory went somewhere: the comparison is not between two frozen models


@pytest.mark.parametrize("name", ["momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"])
def test_same_trajectory_as_torch_under_a_learning_rate_schedule(name):
    ours, theirs = trajectories(name, lr=0.02, lr_at=lambda t: 0.02 * (1 - t / 30))
    for a, b in zip(ours, theirs):
        for p, q in zip(a, b):
            np.testing.assert_allclose(p, q, rtol=1e-11, atol=1e-13)


def test_every_optimiser_has_a_torch_twin_and_unknown_names_are_refused():
    assert set(optim.OPTIMIZERS) == set(optim.NAMES)
    for name in optim.OPTIMIZERS:
        twin = optim.torch_optimizer(name, [torch.zeros(2, requires_grad=True)], lr=0.1)
        assert isinstance(twin, torch.optim.Optimizer)
    with pytest.raises(ValueError, match="unknown optimiser"):
        optim.make("lion", [np.zeros(2)], lr=0.1)
    with pytest.raises(ValueError, match="unknown optimiser"):
        optim.torch_optimizer("lion", [torch.zeros(2, requires_grad=True)], lr=0.1)


# ----- the textbook forms and where they part from torch's -----

def quadratic_gradient(theta: np.ndarray) -> np.ndarray:
    """∇ of f(x, y) = x²/20 + y² (DLfS's elongated bowl)."""
    return np.array([theta[0] / 10, 2 * theta[1]])


def textbook_momentum(lrs: list[float], momentum: float = 0.9) -> np.ndarray:
    """v ← μ v − η g, θ ← θ + v (DLfS, Polyak)."""
    theta, v = np.array([-7.0, 2.0]), np.zeros(2)
    for lr in lrs:
        v = momentum * v - lr * quadratic_gradient(theta)
        theta = theta + v
    return theta


def torch_form_momentum(lrs: list[float], momentum: float = 0.9) -> np.ndarray:
    theta = np.array([-7.0, 2.0])
    opt = optim.Momentum([theta], lr=lrs[0], momentum=momentum)
    for lr in lrs:
        opt.lr = lr
        opt.step([quadratic_gradient(theta)])
    return theta


def test_textbook_momentum_equals_torch_form_at_constant_lr_but_not_under_a_schedule():
    constant = [0.1] * 30
    np.testing.assert_allclose(textbook_momentum(constant), torch_form_momentum(constant), rtol=1e-12)
    decaying = [0.1 * 0.9**t for t in range(30)]  # v remembers the old η·g; torch's b is in gradient units
    assert np.abs(textbook_momentum(decaying) - torch_form_momentum(decaying)).max() > 1e-3


def test_nesterov_is_sutskevers_look_ahead_method_reparametrised_and_dlfs_code_is_not():
    """Sutskever et al. (2013): v ← μ v − η ∇f(θ + μ v), θ ← θ + v. torch's parameter is the look-ahead point
    Θ = θ + μ v. DLfS's update (μ² on the *new* velocity) leaves that trajectory at once: its first step is
    (1 + μ + μ²) η g instead of (1 + μ) η g."""
    lr, mu = 0.1, 0.9
    theta, v = np.array([-7.0, 2.0]), np.zeros(2)  # v₀ = 0, so θ₀ = Θ₀
    look_ahead = []
    for _ in range(20):
        v = mu * v - lr * quadratic_gradient(theta + mu * v)
        theta = theta + v
        look_ahead.append(theta + mu * v)
    Theta = np.array([-7.0, 2.0])
    ours = optim.Nesterov([Theta], lr=lr, momentum=mu)
    dlfs_theta, dlfs_v = np.array([-7.0, 2.0]), np.zeros(2)
    dlfs = []
    for expected in look_ahead:
        ours.step([quadratic_gradient(Theta)])
        np.testing.assert_allclose(Theta, expected, rtol=1e-12, atol=1e-14)
        optim.dlfs_nesterov_step(dlfs_theta, dlfs_v, quadratic_gradient(dlfs_theta), lr, mu)
        dlfs.append(dlfs_theta.copy())
    g0 = quadratic_gradient(np.array([-7.0, 2.0]))
    np.testing.assert_allclose(look_ahead[0], [-7.0, 2.0] - (1 + mu) * lr * g0, rtol=1e-12)
    np.testing.assert_allclose(dlfs[0], [-7.0, 2.0] - (1 + mu + mu * mu) * lr * g0, rtol=1e-12)
    assert all(np.abs(d - e).max() > 1e-3 for d, e in zip(dlfs[:5], look_ahead[:5]))


def test_adam_bias_correction_makes_the_first_step_lr_times_sign_of_gradient():
    """m̂₁ = g, v̂₁ = g²: the first step is η g / (|g| + ε) ≈ η·sign(g) whatever the gradient's scale; without
    the correction it would be η (1 − β₁) g / (√(1 − β₂)|g|) ≈ 3.2 η·sign(g)."""
    theta = np.zeros(3)
    opt = optim.Adam([theta], lr=0.01)
    opt.step([np.array([1e-4, -3.0, 250.0])])
    np.testing.assert_allclose(theta, [-0.01, 0.01, -0.01], rtol=1e-3)


def test_adamw_decay_is_decoupled_from_the_gradient_scaling():
    """Adam's weight_decay is L2 in the gradient, divided by √v̂ like the rest; AdamW shrinks θ by η λ θ
    whatever the gradients. With a zero gradient Adam+L2 still steps by ≈ η·sign(θ) (the decay term alone is
    normalised to unit size), AdamW by exactly η λ θ."""
    theta_l2, theta_w = np.array([1.0, -2.0]), np.array([1.0, -2.0])
    optim.Adam([theta_l2], lr=0.01, weight_decay=0.1).step([np.zeros(2)])
    optim.AdamW([theta_w], lr=0.01, weight_decay=0.1).step([np.zeros(2)])
    np.testing.assert_allclose(theta_l2, [1.0 - 0.01, -2.0 + 0.01], rtol=1e-6)
    np.testing.assert_allclose(theta_w, [1.0 * (1 - 0.001), -2.0 * (1 - 0.001)], rtol=1e-12)


def test_rmsprop_epsilon_after_the_square_root():
    """torch (and DLfS): g / (√h + ε). TensorFlow 1: g / √(h + ε). With ε = 1 and h₁ = (1 − α) g² they differ."""
    g, alpha, eps, lr = 0.5, 0.9, 1.0, 0.1
    theta = np.zeros(1)
    optim.RMSProp([theta], lr=lr, alpha=alpha, eps=eps).step([np.array([g])])
    h = (1 - alpha) * g * g
    np.testing.assert_allclose(theta, [-lr * g / (np.sqrt(h) + eps)], rtol=1e-12)
    assert abs(theta[0] + lr * g / np.sqrt(h + eps)) > 1e-3


def test_adagrad_initial_accumulator_and_decaying_steps():
    """h₀ = initial_accumulator_value: the first step is η g / (√(h₀ + g²) + ε); with h₀ = 0 it is η·sign(g).
    With a constant gradient AdaGrad's steps shrink like 1/√t."""
    theta = np.zeros(1)
    optim.AdaGrad([theta], lr=0.1, initial_accumulator_value=0.1).step([np.array([0.2])])
    np.testing.assert_allclose(theta, [-0.1 * 0.2 / (np.sqrt(0.1 + 0.04) + 1e-10)], rtol=1e-12)
    theta = np.zeros(1)
    opt = optim.AdaGrad([theta], lr=0.1)
    previous, steps = 0.0, []
    for _ in range(16):
        opt.step([np.array([3.0])])
        steps.append(previous - theta[0])
        previous = theta[0]
    np.testing.assert_allclose(steps[0], 0.1, rtol=1e-9)
    np.testing.assert_allclose(steps[15], 0.1 / 4, rtol=1e-9)  # t = 16: η g / √(16 g²)


def test_step_rejects_a_wrong_number_of_gradients():
    with pytest.raises(ValueError, match="2 gradients for 1 parameters"):
        optim.SGD([np.zeros(2)], lr=0.1).step([np.zeros(2), np.zeros(2)])
