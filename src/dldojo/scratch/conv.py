"""Convolution, max pooling and ReLU from scratch in NumPy, forward and backward, via im2col.

Curriculum topic: CNNs — convolution and pooling layers and their backpropagation (JDLA E資格
「畳み込みニューラルネットワーク」), derived as in Saito, "Deep Learning from Scratch" (2016), ch. 7,
and Chellapilla, Puri & Simard, "High Performance Convolutional Neural Networks for Document
Processing" (2006), who introduced the im2col ("unfolding") trick.

Layout: images are (N, C, H, W), filters are (FN, C, FH, FW), the bias is (FN,).

Key formulas
    output size        OH = (H + 2P - FH) // S + 1          (same for OW)
    im2col             X -> col of shape (N·OH·OW, C·FH·FW): one row per output position
    forward            Y = col @ W_col + b,   W_col = W.reshape(FN, -1).T
    backward           dW_col = col.T @ dY,   db = Σ dY,   dcol = dY @ W_col.T,   dX = col2im(dcol)
    full convolution   for S = 1:  dX = crop_P( full_conv(dY, rot180(W)) ) — the input gradient is the
                       upstream gradient convolved ("full", i.e. zero-padded by FH-1) with the filter
                       rotated by 180°; `input_gradient_by_full_convolution` computes it that way and
                       the tests check it equals the im2col backward.

As in PyTorch (and unlike the textbook convolution of signal processing), the "convolution" here is
a cross-correlation: the filter is not flipped in the forward pass. The flip appears in the backward.

Everything is checked against `torch.nn.functional.conv2d / max_pool2d / relu` and autograd in
float64 by `tests/test_scratch_conv.py`.
"""

from __future__ import annotations

import numpy as np


def conv_output_size(input_size: int, filter_size: int, padding: int = 0, stride: int = 1) -> int:
    """Output height (or width) of a convolution or pooling window: (H + 2P − FH) // S + 1.

    Example from the curriculum: a 5×5 input, 3×3 filter, padding 1, stride 2 gives 3×3.
    """
    if input_size + 2 * padding < filter_size:
        raise ValueError(
            f"filter of size {filter_size} does not fit an input of size {input_size} with padding {padding}"
        )
    return (input_size + 2 * padding - filter_size) // stride + 1


def im2col(
    images: np.ndarray,
    filter_h: int,
    filter_w: int,
    stride: int = 1,
    padding: int = 0,
    pad_value: float = 0.0,
) -> np.ndarray:
    """Unfold every filter-sized window of `images` (N, C, H, W) into one row: (N·OH·OW, C·FH·FW).

    Each row holds the C·FH·FW input values one output position sees, in the same (C, FH, FW)
    order as a flattened filter, so the whole convolution becomes a single matrix product.
    `pad_value` is 0 for convolution; max pooling pads with −inf so padding never wins the max.
    """
    N, C, H, W = images.shape
    out_h = conv_output_size(H, filter_h, padding, stride)
    out_w = conv_output_size(W, filter_w, padding, stride)
    padded = np.pad(
        images, ((0, 0), (0, 0), (padding, padding), (padding, padding)), constant_values=pad_value
    )
    # Loop over the FH·FW filter offsets (small) rather than the OH·OW positions (large): for offset
    # (y, x) the strided slice gathers that filter tap's input for every output position at once.
    col = np.empty((N, C, filter_h, filter_w, out_h, out_w), dtype=images.dtype)
    for y in range(filter_h):
        y_end = y + stride * out_h
        for x in range(filter_w):
            x_end = x + stride * out_w
            col[:, :, y, x, :, :] = padded[:, :, y:y_end:stride, x:x_end:stride]
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(N * out_h * out_w, -1)


def col2im(
    col: np.ndarray,
    input_shape: tuple[int, int, int, int],
    filter_h: int,
    filter_w: int,
    stride: int = 1,
    padding: int = 0,
) -> np.ndarray:
    """The adjoint of `im2col`: fold rows back into an (N, C, H, W) image, summing overlaps.

    Not the inverse: an input pixel covered by several windows receives the sum of all their
    entries, which is exactly what the chain rule needs for the gradient of a shared input.
    """
    N, C, H, W = input_shape
    out_h = conv_output_size(H, filter_h, padding, stride)
    out_w = conv_output_size(W, filter_w, padding, stride)
    col = col.reshape(N, out_h, out_w, C, filter_h, filter_w).transpose(0, 3, 4, 5, 1, 2)
    padded = np.zeros((N, C, H + 2 * padding, W + 2 * padding), dtype=col.dtype)
    for y in range(filter_h):
        y_end = y + stride * out_h
        for x in range(filter_w):
            x_end = x + stride * out_w
            padded[:, :, y:y_end:stride, x:x_end:stride] += col[:, :, y, x, :, :]
    return padded[:, :, padding : padding + H, padding : padding + W]


class Convolution:
    """Convolution layer: Y = X ⋆ W + b computed as im2col(X) @ W_col + b.

    After `backward`, `dW` and `db` hold the parameter gradients (same shapes as `W` and `b`).
    """

    def __init__(self, W: np.ndarray, b: np.ndarray, stride: int = 1, padding: int = 0):
        self.W = W
        self.b = b
        self.stride = stride
        self.padding = padding
        self.dW: np.ndarray | None = None
        self.db: np.ndarray | None = None
        # Saved by forward for backward.
        self._input_shape: tuple[int, int, int, int] | None = None
        self._col: np.ndarray | None = None

    def forward(self, X: np.ndarray) -> np.ndarray:
        num_filters, _, filter_h, filter_w = self.W.shape
        N, _, H, W = X.shape
        out_h = conv_output_size(H, filter_h, self.padding, self.stride)
        out_w = conv_output_size(W, filter_w, self.padding, self.stride)

        col = im2col(X, filter_h, filter_w, self.stride, self.padding)  # (N·OH·OW, C·FH·FW)
        W_col = self.W.reshape(num_filters, -1).T  # (C·FH·FW, FN)
        Y = col @ W_col + self.b  # (N·OH·OW, FN)

        self._input_shape = X.shape
        self._col = col
        return Y.reshape(N, out_h, out_w, num_filters).transpose(0, 3, 1, 2)

    def backward(self, dY: np.ndarray) -> np.ndarray:
        """Given dL/dY (N, FN, OH, OW), set `dW`, `db` and return dL/dX (N, C, H, W)."""
        num_filters, _, filter_h, filter_w = self.W.shape
        dY_rows = dY.transpose(0, 2, 3, 1).reshape(-1, num_filters)  # (N·OH·OW, FN)

        self.db = dY_rows.sum(axis=0)
        self.dW = (self._col.T @ dY_rows).T.reshape(self.W.shape)
        dcol = dY_rows @ self.W.reshape(num_filters, -1)  # (N·OH·OW, C·FH·FW)
        return col2im(dcol, self._input_shape, filter_h, filter_w, self.stride, self.padding)


def input_gradient_by_full_convolution(dY: np.ndarray, W: np.ndarray, padding: int = 0) -> np.ndarray:
    """dL/dX of a stride-1 convolution, computed as a "full" convolution of dY with rot180(W).

    Forward (stride 1, on the padded input X̃):  Y[n,f,i,j] = Σ_{c,p,q} X̃[n,c,i+p,j+q] · W[f,c,p,q]
    so   dX̃[n,c,u,v] = Σ_{f,p,q} dY[n,f,u−p,v−q] · W[f,c,p,q]        (terms with u−p, v−q in range)
                     = Σ_{f,p',q'} dYpad[n,f,u+p',v+q'] · W[f,c,FH−1−p',FW−1−q']
    where dYpad is dY zero-padded by FH−1 (rows) and FW−1 (columns) on every side: a cross-correlation
    of the "full"-padded upstream gradient with the 180°-rotated filter, whose channel roles are
    swapped (the FN filters become input channels, the C input channels become outputs). The padded
    border of X̃ is then cropped away. Written with explicit loops over filter taps, independent of
    `im2col`, so that the equality with `Convolution.backward` is a real check.
    """
    num_filters, channels, filter_h, filter_w = W.shape
    N, _, out_h, out_w = dY.shape
    dY_full = np.pad(dY, ((0, 0), (0, 0), (filter_h - 1, filter_h - 1), (filter_w - 1, filter_w - 1)))
    W_rotated = W[:, :, ::-1, ::-1]
    padded_h, padded_w = out_h + filter_h - 1, out_w + filter_w - 1  # = H + 2P, W + 2P for stride 1

    dX_padded = np.zeros((N, channels, padded_h, padded_w), dtype=dY.dtype)
    for p in range(filter_h):
        for q in range(filter_w):
            window = dY_full[:, :, p : p + padded_h, q : q + padded_w]  # (N, FN, H+2P, W+2P)
            dX_padded += np.einsum("nfhw,fc->nchw", window, W_rotated[:, :, p, q])
    return dX_padded[:, :, padding : padded_h - padding, padding : padded_w - padding]


class MaxPooling:
    """Max pooling: each output is the largest value of its window.

    Backward routes each upstream gradient entry to the one input position that held the maximum
    (the first one, in window order, if several tie); all other positions get zero.
    """

    def __init__(self, pool_h: int, pool_w: int, stride: int | None = None, padding: int = 0):
        self.pool_h = pool_h
        self.pool_w = pool_w
        self.stride = pool_h if stride is None else stride  # non-overlapping windows by default
        self.padding = padding
        self._input_shape: tuple[int, int, int, int] | None = None
        self._argmax: np.ndarray | None = None

    def forward(self, X: np.ndarray) -> np.ndarray:
        N, C, H, W = X.shape
        out_h = conv_output_size(H, self.pool_h, self.padding, self.stride)
        out_w = conv_output_size(W, self.pool_w, self.padding, self.stride)

        # One row per (sample, output position, channel) window, as in the curriculum's derivation.
        col = im2col(X, self.pool_h, self.pool_w, self.stride, self.padding, pad_value=-np.inf)
        windows = col.reshape(-1, C, self.pool_h * self.pool_w)  # (N·OH·OW, C, PH·PW)
        self._argmax = windows.argmax(axis=2)
        self._input_shape = X.shape
        Y = windows.max(axis=2)  # (N·OH·OW, C)
        return Y.reshape(N, out_h, out_w, C).transpose(0, 3, 1, 2)

    def backward(self, dY: np.ndarray) -> np.ndarray:
        N, C, _, _ = self._input_shape
        window_size = self.pool_h * self.pool_w
        dY_rows = dY.transpose(0, 2, 3, 1).reshape(-1, C)  # (N·OH·OW, C)

        dwindows = np.zeros((dY_rows.shape[0], C, window_size), dtype=dY.dtype)
        np.put_along_axis(dwindows, self._argmax[..., None], dY_rows[..., None], axis=2)
        dcol = dwindows.reshape(dY_rows.shape[0], -1)  # back to im2col's (C, PH, PW) row order
        return col2im(dcol, self._input_shape, self.pool_h, self.pool_w, self.stride, self.padding)


class ReLU:
    """ReLU: y = max(0, x); dy/dx = 1 where x > 0, else 0 (PyTorch's choice at x = 0 too)."""

    def __init__(self):
        self._mask: np.ndarray | None = None

    def forward(self, X: np.ndarray) -> np.ndarray:
        self._mask = X <= 0
        Y = X.copy()
        Y[self._mask] = 0
        return Y

    def backward(self, dY: np.ndarray) -> np.ndarray:
        dX = dY.copy()
        dX[self._mask] = 0
        return dX
