"""Parity of the NumPy im2col convolution, max pooling and ReLU with PyTorch autograd (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dldojo.scratch.conv import (
    Convolution,
    MaxPooling,
    ReLU,
    col2im,
    conv_output_size,
    im2col,
    input_gradient_by_full_convolution,
)


def assert_close(actual: np.ndarray, expected: torch.Tensor) -> None:
    torch.testing.assert_close(torch.from_numpy(np.ascontiguousarray(actual)), expected, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------- output size


@pytest.mark.parametrize(
    ("input_size", "filter_size", "padding", "stride", "expected"),
    [
        (5, 3, 1, 2, 3),  # the curriculum's worked example: 5×5, 3×3 filter, P=1, S=2 → 3×3
        (4, 3, 1, 1, 4),  # "same" padding keeps the size
        (7, 3, 0, 1, 5),
        (7, 3, 0, 2, 3),
        (28, 5, 0, 1, 24),  # LeNet's first layer
        (32, 5, 2, 1, 32),
        (224, 7, 3, 2, 112),  # ResNet's stem
        (6, 2, 0, 2, 3),  # 2×2 pooling halves
        (8, 3, 1, 3, 3),  # the floor drops the window that would overhang
    ],
)
def test_conv_output_size(input_size, filter_size, padding, stride, expected):
    assert conv_output_size(input_size, filter_size, padding, stride) == expected
    # The formula agrees with what PyTorch actually produces.
    out = F.conv2d(torch.zeros(1, 1, input_size, input_size), torch.zeros(1, 1, filter_size, filter_size),
                   stride=stride, padding=padding)
    assert out.shape[-1] == expected


def test_conv_output_size_rejects_filter_larger_than_input():
    with pytest.raises(ValueError, match="does not fit"):
        conv_output_size(2, 5, 0, 1)


# ---------------------------------------------------------------------------- im2col / col2im


def test_im2col_matches_torch_unfold():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2, 3, 7, 6))
    col = im2col(X, 3, 2, stride=2, padding=1)
    # F.unfold gives (N, C·FH·FW, L); im2col gives (N·L, C·FH·FW) with the same column order.
    unfolded = F.unfold(torch.from_numpy(X), (3, 2), stride=2, padding=1)
    assert_close(col, unfolded.transpose(1, 2).reshape(-1, 3 * 3 * 2))


def test_col2im_is_the_adjoint_of_im2col():
    # <im2col(X), C> == <X, col2im(C)> for all X, C: the defining property used by backward.
    rng = np.random.default_rng(1)
    X = rng.standard_normal((2, 2, 6, 5))
    col = im2col(X, 3, 3, stride=2, padding=1)
    C = rng.standard_normal(col.shape)
    lhs = np.sum(col * C)
    rhs = np.sum(X * col2im(C, X.shape, 3, 3, stride=2, padding=1))
    assert lhs == pytest.approx(rhs, rel=1e-12)


# ---------------------------------------------------------------------------- convolution


CONV_CASES = [
    # (N, C, H, W, FN, FH, FW, stride, padding)
    (2, 3, 7, 7, 4, 3, 3, 1, 0),
    (2, 3, 7, 7, 4, 3, 3, 1, 1),
    (2, 3, 8, 7, 4, 3, 3, 2, 1),
    (1, 2, 9, 9, 3, 5, 5, 2, 2),
    (2, 1, 6, 8, 2, 2, 3, 3, 0),
    (3, 4, 5, 5, 5, 1, 1, 1, 0),
]


@pytest.mark.parametrize(("N", "C", "H", "W", "FN", "FH", "FW", "stride", "padding"), CONV_CASES)
def test_convolution_forward_and_gradients_match_autograd(N, C, H, W, FN, FH, FW, stride, padding):
    rng = np.random.default_rng(42)
    X = rng.standard_normal((N, C, H, W))
    weight = rng.standard_normal((FN, C, FH, FW))
    bias = rng.standard_normal(FN)

    layer = Convolution(weight, bias, stride=stride, padding=padding)
    Y = layer.forward(X)
    dY = rng.standard_normal(Y.shape)
    dX = layer.backward(dY)

    X_t = torch.tensor(X, requires_grad=True)
    W_t = torch.tensor(weight, requires_grad=True)
    b_t = torch.tensor(bias, requires_grad=True)
    Y_t = F.conv2d(X_t, W_t, b_t, stride=stride, padding=padding)
    Y_t.backward(torch.from_numpy(dY))

    assert_close(Y, Y_t.detach())
    assert_close(dX, X_t.grad)
    assert_close(layer.dW, W_t.grad)
    assert_close(layer.db, b_t.grad)


@pytest.mark.parametrize("padding", [0, 1, 2])
@pytest.mark.parametrize(("FH", "FW"), [(3, 3), (2, 3), (5, 5)])
def test_input_gradient_is_full_convolution_with_rotated_filter(FH, FW, padding):
    """The curriculum's claim: for stride 1, dL/dX = full_conv(dL/dY, rot180(W)) (cropped by P)."""
    rng = np.random.default_rng(7)
    X = rng.standard_normal((2, 3, 7, 6))
    weight = rng.standard_normal((4, 3, FH, FW))
    layer = Convolution(weight, np.zeros(4), stride=1, padding=padding)
    dY = rng.standard_normal(layer.forward(X).shape)

    dX_im2col = layer.backward(dY)
    dX_full_conv = input_gradient_by_full_convolution(dY, weight, padding=padding)

    assert dX_full_conv.shape == X.shape
    np.testing.assert_allclose(dX_full_conv, dX_im2col, rtol=1e-12, atol=1e-12)
    # And the same thing written with PyTorch: a convolution of the (FH−1, FW−1)-padded gradient
    # with the rotated, channel-transposed filter, then the P-wide border cropped.
    dX_padded_torch = F.conv2d(
        torch.from_numpy(dY),
        torch.from_numpy(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).copy()),
        padding=(FH - 1, FW - 1),
    )
    H, W = X.shape[-2:]
    assert_close(dX_full_conv, dX_padded_torch[:, :, padding : padding + H, padding : padding + W])


# ---------------------------------------------------------------------------- pooling and ReLU


@pytest.mark.parametrize(
    ("pool", "stride", "padding"),
    [(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 0)],
)
def test_max_pooling_forward_and_gradient_match_autograd(pool, stride, padding):
    rng = np.random.default_rng(3)
    # A random permutation has no ties, so the max position is unambiguous even for overlapping windows.
    X = rng.permutation(2 * 3 * 7 * 6).reshape(2, 3, 7, 6).astype(np.float64) / 10.0
    layer = MaxPooling(pool, pool, stride=stride, padding=padding)
    Y = layer.forward(X)
    dY = rng.standard_normal(Y.shape)
    dX = layer.backward(dY)

    X_t = torch.tensor(X, requires_grad=True)
    Y_t = F.max_pool2d(X_t, pool, stride=stride, padding=padding)
    Y_t.backward(torch.from_numpy(dY))

    assert_close(Y, Y_t.detach())
    assert_close(dX, X_t.grad)


def test_max_pooling_routes_gradient_to_the_max_by_hand():
    X = np.array(
        [[[[1.0, 2.0, 0.0, 1.0],
           [4.0, 3.0, 5.0, 2.0],
           [0.0, 1.0, 1.0, 0.0],
           [2.0, 1.0, 3.0, 9.0]]]]
    )
    layer = MaxPooling(2, 2, stride=2)
    Y = layer.forward(X)
    np.testing.assert_array_equal(Y, [[[[4.0, 5.0], [2.0, 9.0]]]])

    dY = np.array([[[[10.0, 20.0], [30.0, 40.0]]]])
    dX = layer.backward(dY)
    # Each window's gradient lands on its maximum (4 at (1,0), 5 at (1,2), 2 at (3,0), 9 at (3,3)).
    expected = np.array(
        [[[[0.0, 0.0, 0.0, 0.0],
           [10.0, 0.0, 20.0, 0.0],
           [0.0, 0.0, 0.0, 0.0],
           [30.0, 0.0, 0.0, 40.0]]]]
    )
    np.testing.assert_array_equal(dX, expected)


def test_overlapping_pooling_accumulates_gradient_on_a_shared_max():
    # With stride 1, the centre 9 is the max of all four 2×2 windows and collects all four gradients.
    X = np.array([[[[1.0, 2.0, 3.0], [4.0, 9.0, 5.0], [6.0, 7.0, 8.0]]]])
    layer = MaxPooling(2, 2, stride=1)
    np.testing.assert_array_equal(layer.forward(X), np.full((1, 1, 2, 2), 9.0))
    dX = layer.backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]))
    np.testing.assert_array_equal(dX, [[[[0, 0, 0], [0, 10.0, 0], [0, 0, 0]]]])


def test_relu_forward_and_gradient_match_autograd():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((2, 3, 4, 5))
    X[0, 0, 0, :3] = 0.0  # the kink: both take the gradient at exactly 0 to be 0
    layer = ReLU()
    Y = layer.forward(X)
    dY = rng.standard_normal(Y.shape)
    dX = layer.backward(dY)

    X_t = torch.tensor(X, requires_grad=True)
    Y_t = F.relu(X_t)
    Y_t.backward(torch.from_numpy(dY))

    assert_close(Y, Y_t.detach())
    assert_close(dX, X_t.grad)
    assert not np.shares_memory(Y, X)  # forward must not overwrite the caller's array


def test_conv_relu_pool_stack_matches_autograd():
    """The three layers chained as in a CNN block; the backward pass is the layers' backwards reversed."""
    rng = np.random.default_rng(11)
    X = rng.standard_normal((2, 3, 8, 8))
    weight = rng.standard_normal((4, 3, 3, 3))
    bias = rng.standard_normal(4)
    conv, relu, pool = Convolution(weight, bias, stride=1, padding=1), ReLU(), MaxPooling(2, 2)
    Y = pool.forward(relu.forward(conv.forward(X)))
    dY = rng.standard_normal(Y.shape)
    dX = conv.backward(relu.backward(pool.backward(dY)))

    X_t = torch.tensor(X, requires_grad=True)
    W_t = torch.tensor(weight, requires_grad=True)
    Y_t = F.max_pool2d(F.relu(F.conv2d(X_t, W_t, torch.from_numpy(bias), padding=1)), 2)
    Y_t.backward(torch.from_numpy(dY))
    assert_close(Y, Y_t.detach())
    assert_close(dX, X_t.grad)
    assert_close(conv.dW, W_t.grad)
