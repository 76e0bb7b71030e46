"""Attention written from its formula (Vaswani et al. 2017, "Attention Is All You Need").

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V
    MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O,   head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)
    PE(pos, 2i) = sin(pos / 10000^(2i/d_model)),   PE(pos, 2i+1) = cos(pos / 10000^(2i/d_model))

Masks follow `torch.nn.MultiheadAttention`'s boolean convention: **True = blocked**. A blocked score
is set to −inf before the softmax, so its weight is exactly 0. `padding_mask` blocks the padded key
positions of each sequence, `causal_mask` blocks the future (key position > query position).

`MultiHeadAttention` keeps its parameters under the same names and layout as
`torch.nn.MultiheadAttention` (`in_proj_weight` = [W^Q; W^K; W^V] stacked, `in_proj_bias`, `out_proj`),
so the two load each other's state dicts and the parity tests compare them on the same weights. With
`fast=True` the score/softmax/weighted-sum step calls `torch.nn.functional.scaled_dot_product_attention`
(a fused kernel, tested equal to the formula path); `fast=False` runs the formula line by line.
It also supports incremental decoding: `project_kv` computes a memory's keys and values once, and
`attend` lets a decoder append one new position's keys / values to a cache per step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def causal_mask(size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(size, size) bool, True above the diagonal: query position t may not look at keys s > t."""
    return torch.ones(size, size, dtype=torch.bool, device=device).triu(1)


def padding_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """(B, max_len) bool, True at padded positions (index >= the sequence's length)."""
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]


def key_mask(pad: torch.Tensor) -> torch.Tensor:
    """A (B, S) key-padding mask reshaped to broadcast against (B, heads, T, S) scores."""
    return pad[:, None, None, :]


def scaled_dot_product_attention(Q: torch.Tensor, K: torch.Tensor, V: torch.Tensor, mask: torch.Tensor | None = None,
                                 dropout_p: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(Q Kᵀ / √d_k) V over the last two dims; returns (output, attention weights).

    Q: (..., T, d_k), K: (..., S, d_k), V: (..., S, d_v); `mask` (bool, True = blocked) broadcasts to
    (..., T, S). Dropout (training only: pass dropout_p=0 in eval) drops attention weights.
    """
    d_k = Q.size(-1)
    scores = Q @ K.transpose(-2, -1) / math.sqrt(d_k)
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    if dropout_p > 0:
        weights = F.dropout(weights, dropout_p)
    return weights @ V, weights


class MultiHeadAttention(nn.Module):
    """h heads of scaled dot-product attention on learned projections, then W^O.

    Parameter names and layout match `torch.nn.MultiheadAttention(d_model, num_heads, batch_first=True)`.
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0, fast: bool = True):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} is not divisible by num_heads {num_heads}")
        self.d_model, self.num_heads, self.d_k = d_model, num_heads, d_model // num_heads
        self.dropout, self.fast = dropout, fast
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d_model, d_model))  # [W^Q; W^K; W^V]
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * d_model))
        self.out_proj = nn.Linear(d_model, d_model)  # W^O
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    # (B, T, d_model) <-> (B, h, T, d_k)
    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.num_heads, self.d_k).transpose(1, 2)

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, _, T, _ = x.shape
        return x.transpose(1, 2).reshape(B, T, self.d_model)

    def project_q(self, x: torch.Tensor) -> torch.Tensor:
        d = self.d_model
        return self.split_heads(F.linear(x, self.in_proj_weight[:d], self.in_proj_bias[:d]))

    def project_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of `x` in head layout (B, h, S, d_k); compute once per encoder memory."""
        d = self.d_model
        K, V = F.linear(x, self.in_proj_weight[d:], self.in_proj_bias[d:]).chunk(2, dim=-1)
        return self.split_heads(K), self.split_heads(V)

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        Q, K, V = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)  # one fused matmul
        return self.split_heads(Q), self.split_heads(K), self.split_heads(V)

    def attend(self, Q: torch.Tensor, K: torch.Tensor, V: torch.Tensor, mask: torch.Tensor | None = None,
               need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Heads already projected: attention per head, concatenation, W^O. Returns (B, T, d_model)."""
        dropout_p = self.dropout if self.training else 0.0
        if self.fast and not need_weights:
            heads = F.scaled_dot_product_attention(Q, K, V, attn_mask=None if mask is None else ~mask,
                                                   dropout_p=dropout_p)
            weights = None
        else:
            heads, weights = scaled_dot_product_attention(Q, K, V, mask, dropout_p)
        return self.out_proj(self.merge_heads(heads)), weights

    def forward(self, query: torch.Tensor, memory: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Self-attention over `query` (memory None) or cross-attention from `query` to `memory`.

        `mask`: bool, True = blocked, broadcastable to (B, h, T, S) — e.g. `causal_mask(T)` or
        `key_mask(padding_mask(lengths))`, or both combined with `|`.
        """
        if memory is None:
            Q, K, V = self.project_qkv(query)
        else:
            Q, (K, V) = self.project_q(query), self.project_kv(memory)
        return self.attend(Q, K, V, mask, need_weights)


def sinusoidal_encoding(max_len: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """(max_len, d_model): PE[pos, 2i] = sin(pos / base^(2i/d)), PE[pos, 2i+1] = cos(pos / base^(2i/d))."""
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)
    angle = pos / base ** (two_i / d_model)
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : d_model // 2])
    return pe.float()


class SinusoidalPositionalEncoding(nn.Module):
    """Adds PE[offset : offset + T] to (B, T, d_model) inputs (a fixed buffer, not learned)."""

    def __init__(self, d_model: int, max_len: int = 512, base: float = 10000.0):
        super().__init__()
        self.register_buffer("pe", sinusoidal_encoding(max_len, d_model, base), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        T = x.size(1)
        if offset + T > self.pe.size(0):
            raise ValueError(f"sequence of length {offset + T} exceeds the positional table ({self.pe.size(0)})")
        return x + self.pe[offset:offset + T]
