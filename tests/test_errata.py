"""Errata of common course material that have no family in dldojo yet (docs/ja/errata.md lists every erratum and
the test that pins it). Transposed convolution: the course notes say a 3×3 input, kernel 3, padding 1 gives 5×5
with stride 1; the output size o = (i − 1)·s − 2p + k gives 5×5 only with stride 2 (stride 1 keeps 3×3)."""

from __future__ import annotations

import pytest
import torch


def transposed_conv_output_size(i: int, k: int, s: int, p: int) -> int:
    """o = (i − 1)·s − 2p + k (no output padding, dilation 1)."""
    return (i - 1) * s - 2 * p + k


@pytest.mark.parametrize(("stride", "expected"), [(1, 3), (2, 5)])
def test_transposed_convolution_3x3_to_5x5_needs_stride_2(stride, expected):
    layer = torch.nn.ConvTranspose2d(1, 1, kernel_size=3, stride=stride, padding=1)
    out = layer(torch.zeros(1, 1, 3, 3))
    assert tuple(out.shape[-2:]) == (expected, expected)
    assert transposed_conv_output_size(3, 3, stride, 1) == expected


@pytest.mark.parametrize(("i", "k", "s", "p"), [(4, 4, 2, 1), (7, 3, 1, 0), (5, 5, 3, 2), (1, 4, 1, 0)])
def test_transposed_convolution_output_size_formula_matches_torch(i, k, s, p):
    out = torch.nn.ConvTranspose2d(1, 1, kernel_size=k, stride=s, padding=p)(torch.zeros(1, 1, i, i))
    assert out.shape[-1] == transposed_conv_output_size(i, k, s, p)
