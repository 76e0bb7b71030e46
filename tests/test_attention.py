"""Attention from the formula vs torch: scaled dot-product attention, multi-head attention, masks, PE."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dldojo.nn.attention import (
    MultiHeadAttention,
    SinusoidalPositionalEncoding,
    causal_mask,
    key_mask,
    padding_mask,
    scaled_dot_product_attention,
    sinusoidal_encoding,
)


def _qkv(B=3, h=4, T=5, S=7, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, h, T, d, generator=g), torch.randn(B, h, S, d, generator=g),
            torch.randn(B, h, S, d, generator=g))


def test_sdpa_formula_matches_torch_without_mask():
    Q, K, V = _qkv()
    ours, weights = scaled_dot_product_attention(Q, K, V)
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(Q, K, V), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4, 5))


def test_sdpa_scales_by_sqrt_dk():
    Q, K, V = _qkv(d=16)
    _, weights = scaled_dot_product_attention(Q, K, V)
    expected = torch.softmax(Q @ K.transpose(-2, -1) / math.sqrt(16), dim=-1)
    torch.testing.assert_close(weights, expected)
    unscaled = torch.softmax(Q @ K.transpose(-2, -1), dim=-1)
    assert not torch.allclose(weights, unscaled, atol=1e-3)


def test_sdpa_matches_torch_with_padding_and_causal_masks():
    Q, K, V = _qkv(T=6, S=6)
    lengths = torch.tensor([6, 4, 2])
    mask = key_mask(padding_mask(lengths)) | causal_mask(6)
    ours, weights = scaled_dot_product_attention(Q, K, V, mask)
    ref = F.scaled_dot_product_attention(Q, K, V, attn_mask=~mask)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    assert torch.all(weights[mask.expand_as(weights)] == 0)  # blocked positions get exactly zero weight


def test_masks_block_future_and_padding_positions():
    assert causal_mask(4).tolist() == [[False, True, True, True], [False, False, True, True],
                                       [False, False, False, True], [False, False, False, False]]
    assert padding_mask(torch.tensor([3, 1]), 4).tolist() == [[False, False, False, True],
                                                               [False, True, True, True]]
    # changing V at blocked positions must not change the output at all
    Q, K, V = _qkv(T=5, S=5)
    lengths = torch.tensor([5, 3, 4])
    mask = key_mask(padding_mask(lengths)) | causal_mask(5)
    out, _ = scaled_dot_product_attention(Q, K, V, mask)
    V2, K2 = V.clone(), K.clone()
    V2[1, :, 3:] = 1e3  # padding of sequence 1
    K2[1, :, 3:] = -1e3
    out2, _ = scaled_dot_product_attention(Q, K2, V2, mask)
    torch.testing.assert_close(out, out2)
    V3 = V.clone()
    V3[:, :, 4] = 1e3  # the last position: future for every query but the last
    out3, _ = scaled_dot_product_attention(Q, K, V3, mask)
    torch.testing.assert_close(out[:, :, :4], out3[:, :, :4])
    assert not torch.allclose(out[0, :, 4], out3[0, :, 4])


@pytest.mark.parametrize("fast", [False, True])
def test_multihead_matches_torch_multiheadattention(fast):
    torch.manual_seed(0)
    d, h, B, T, S = 32, 4, 3, 6, 7
    ours = MultiHeadAttention(d, h, fast=fast).eval()
    ref = nn.MultiheadAttention(d, h, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_bias.normal_()  # non-zero biases so that they are tested too
        ref.out_proj.bias.normal_()
    ours.load_state_dict(ref.state_dict())  # same parameter names and layout
    x, memory = torch.randn(B, T, d), torch.randn(B, S, d)
    src_pad = padding_mask(torch.tensor([7, 5, 2]), S)
    # cross-attention with key padding
    ref_out, ref_w = ref(x, memory, memory, key_padding_mask=src_pad)
    out, _ = ours(x, memory, mask=key_mask(src_pad))
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    # self-attention with causal + padding masks
    tgt_pad = padding_mask(torch.tensor([6, 4, 3]), T)
    ref_out, ref_w = ref(x, x, x, attn_mask=causal_mask(T), key_padding_mask=tgt_pad)
    out, _ = ours(x, mask=causal_mask(T) | key_mask(tgt_pad))
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)


def test_multihead_weights_match_torch_average():
    torch.manual_seed(1)
    ours, ref = MultiHeadAttention(16, 2, fast=False).eval(), nn.MultiheadAttention(16, 2, batch_first=True).eval()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 5, 16)
    _, ref_w = ref(x, x, x, attn_mask=causal_mask(5))  # averaged over heads
    _, w = ours(x, mask=causal_mask(5), need_weights=True)
    torch.testing.assert_close(w.mean(1), ref_w, rtol=1e-5, atol=1e-6)
    assert torch.all(w.masked_select(causal_mask(5)) == 0)


def test_incremental_attention_equals_full_causal_attention():
    torch.manual_seed(2)
    mha = MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, 6, 16)
    full, _ = mha(x, mask=causal_mask(6))
    K_cache = V_cache = None
    steps = []
    for t in range(6):
        Q, K, V = mha.project_qkv(x[:, t:t + 1])
        K_cache = K if K_cache is None else torch.cat([K_cache, K], 2)
        V_cache = V if V_cache is None else torch.cat([V_cache, V], 2)
        steps.append(mha.attend(Q, K_cache, V_cache)[0])
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-5, atol=1e-6)


def test_head_count_must_divide_d_model():
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(128, 6)


def test_sinusoidal_encoding_values():
    pe = sinusoidal_encoding(50, 16)
    pos, i = 7, 3
    assert pe[pos, 2 * i].item() == pytest.approx(math.sin(pos / 10000 ** (2 * i / 16)), abs=1e-6)
    assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(pos / 10000 ** (2 * i / 16)), abs=1e-6)
    assert torch.all(pe[0, 0::2] == 0) and torch.all(pe[0, 1::2] == 1)
    enc = SinusoidalPositionalEncoding(16, max_len=50)
    x = torch.zeros(2, 4, 16)
    torch.testing.assert_close(enc(x, offset=3)[1], pe[3:7])
    with pytest.raises(ValueError):
        enc(torch.zeros(1, 51, 16))
