"""The NumPy simple RNN (dldojo.scratch.rnn): BPTT gradients, clipping, divergence reporting, learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dldojo.scratch.rnn import (
    BinaryAdditionConfig,
    backward,
    clip_grad_global_norm,
    forward,
    from_bits,
    init_params,
    make_addition_batch,
    mse_loss,
    split_addition_pairs,
    train_binary_addition,
)

ACTIVATIONS = ["sigmoid", "tanh", "relu"]


def small_problem(activation: str, seed: int = 0):
    """Random float64 weights and a handful of addition pairs, with the loss as a function of the weights."""
    rng = np.random.default_rng(seed)
    params = init_params(2, 6, 1, "normal", 0.8, rng)
    pairs = rng.integers(0, 128, size=(5, 2))
    X, D = make_addition_batch(pairs, num_bits=8)

    def loss_of(p):
        return mse_loss(forward(p, X, activation).y, D)

    return params, X, D, loss_of


# -- data ----------------------------------------------------------------------------------------------------


def test_addition_bits_are_lowest_bit_first():
    X, D = make_addition_batch(np.array([[3, 5]]), num_bits=8)
    np.testing.assert_array_equal(X[0, :, 0], [1, 1, 0, 0, 0, 0, 0, 0])  # 3
    np.testing.assert_array_equal(X[0, :, 1], [1, 0, 1, 0, 0, 0, 0, 0])  # 5
    np.testing.assert_array_equal(D[0, :, 0], [0, 0, 0, 1, 0, 0, 0, 0])  # 8
    assert from_bits(D[..., 0]).tolist() == [8]


def test_split_is_disjoint_and_complete():
    train, test = split_addition_pairs(num_bits=8, test_fraction=0.2, seed=3)
    as_set = lambda pairs: {tuple(p) for p in pairs.tolist()}  # noqa: E731
    assert len(test) == round(0.2 * 128 * 128)
    assert not as_set(train) & as_set(test)
    assert len(as_set(train) | as_set(test)) == 128 * 128


# -- gradients -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_bptt_matches_central_differences(activation):
    params, X, D, loss_of = small_problem(activation)
    grads = backward(params, X, D, forward(params, X, activation), activation)
    eps = 1e-6
    for name, weights in params.items():
        numerical = np.zeros_like(weights)
        for index in np.ndindex(weights.shape):
            plus = {k: v.copy() for k, v in params.items()}
            minus = {k: v.copy() for k, v in params.items()}
            plus[name][index] += eps
            minus[name][index] -= eps
            numerical[index] = (loss_of(plus) - loss_of(minus)) / (2 * eps)
        np.testing.assert_allclose(grads[name], numerical, rtol=1e-5, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_bptt_matches_torch_autograd(activation):
    params, X, D, _ = small_problem(activation, seed=1)
    cache = forward(params, X, activation)
    grads = backward(params, X, D, cache, activation)

    # The same network written in torch; autograd does the backward pass.
    W_in, W, W_out = (torch.tensor(params[k], requires_grad=True) for k in ["W_in", "W", "W_out"])
    f = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}[activation]
    X_t, D_t = torch.from_numpy(X), torch.from_numpy(D)
    h = torch.zeros(X.shape[0], W.shape[0], dtype=torch.float64)
    outputs = []
    for t in range(X.shape[1]):
        h = f(X_t[:, t] @ W_in + h @ W)
        outputs.append(torch.sigmoid(h @ W_out))
    y = torch.stack(outputs, dim=1)
    loss = 0.5 * ((y - D_t) ** 2).sum() / X.shape[0]
    loss.backward()

    torch.testing.assert_close(torch.from_numpy(cache.y), y.detach(), rtol=1e-12, atol=1e-12)
    assert mse_loss(cache.y, D) == pytest.approx(loss.item(), rel=1e-12)
    for name, tensor in {"W_in": W_in, "W": W, "W_out": W_out}.items():
        torch.testing.assert_close(torch.from_numpy(grads[name]), tensor.grad, rtol=1e-10, atol=1e-12)


# -- clipping ------------------------------------------------------------------------------------------------


def test_clip_grad_global_norm_hand_case():
    # The global norm of (3, 4) is 5; clipping to 1 scales both by 1/5, keeping the direction.
    grads = {"a": np.array([3.0]), "b": np.array([[4.0]])}
    clipped, norm = clip_grad_global_norm(grads, threshold=1.0)
    assert norm == pytest.approx(5.0)
    np.testing.assert_allclose(clipped["a"], [0.6])
    np.testing.assert_allclose(clipped["b"], [[0.8]])
    assert grads["a"][0] == 3.0  # the input is not modified in place

    for threshold in [5.0, 10.0]:  # at or below the threshold nothing changes
        unchanged, _ = clip_grad_global_norm(grads, threshold=threshold)
        np.testing.assert_array_equal(unchanged["a"], [3.0])
        np.testing.assert_array_equal(unchanged["b"], [[4.0]])


# -- training ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_config_learns_binary_addition(seed):
    # Seeds 0-59 all reach 100 % held-out accuracy by step 500 of the default 1000 (checked by hand).
    result = train_binary_addition(seed=seed)
    assert not result.diverged
    assert result.steps_run == BinaryAdditionConfig().num_steps
    assert result.test_accuracy == 1.0
    assert result.history[-1].train_loss < 0.2 * result.history[0].train_loss


@pytest.mark.filterwarnings("error")  # a RuntimeWarning escaping from NumPy fails the test
@pytest.mark.parametrize(
    "overrides",
    [
        # ReLU with weights ~1e200: h_1 W overflows float64 on the first forward pass, the loss is NaN.
        dict(activation="relu", weight_init="normal", init_std=1e200),
        # A finite loss but an infinite step: the updated weights are inf / NaN.
        dict(learning_rate=float("inf")),
    ],
)
def test_divergence_is_reported_not_crashed(overrides):
    result = train_binary_addition(seed=0, clip_norm=None, num_steps=50, **overrides)
    assert result.diverged
    assert result.diverged_at_step == 1
    assert result.steps_run == 0
    assert "diverged at step 1" in result.message
    assert all(np.isfinite(w).all() for w in result.params.values())  # the last finite weights are kept


@pytest.mark.filterwarnings("error")
def test_relu_with_large_init_dies_instead_of_exploding():
    # The curriculum's "ReLU + std 10 explodes" intuition meets a sigmoid output: the outputs saturate to
    # exactly 0 / 1, σ′ = y(1 − y) = 0 and the gradient vanishes, so the run stays finite but learns nothing.
    result = train_binary_addition(seed=0, activation="relu", weight_init="normal", init_std=10.0,
                                   clip_norm=None, num_steps=200)
    assert not result.diverged
    assert max(point.grad_norm for point in result.history) < 1e-3
    assert result.test_accuracy < 0.05
