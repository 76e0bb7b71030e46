"""`transformer`: encoder–decoder Transformer for English→Japanese translation, written from its parts.

Curriculum: Transformer / self-attention (Vaswani et al. 2017, "Attention Is All You Need").

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V,  masked scores = −inf (padding keys; future positions)
    MultiHead = Concat(head_1..head_h) W^O,        FFN(x) = max(0, x W_1 + b_1) W_2 + b_2
    x_0 = √d_model · Embed(tokens) + PE,           PE(pos, 2i) = sin(pos / 10000^(2i/d)), cos for 2i+1
    post-LN sublayer: x ← LayerNorm(x + Sublayer(x));  pre-LN (Xiong et al. 2020): x ← x + Sublayer(LayerNorm(x))
    p(y_t | y_<t, x) = softmax(h_t Eᵀ) with E the target embedding (shared input / output weights)

Training: label-smoothed cross-entropy (ε = 0.1, Szegedy et al. 2016) over non-pad target tokens,
Adam(β = 0.9, 0.98) with linear warmup then cosine or inverse-√step decay, length-bucketed batches of
at most `max_tokens` padded tokens (`dldojo.data.enja.token_batches`), averaging of the last epoch
checkpoints. Evaluation: dev BLEU (greedy) after every epoch; test BLEU with beam search and the
GNMT length penalty (`dldojo.text.decoding`), sacrebleu corpus BLEU with tokenize="none" on the
official KyTea tokens. Decoding uses a key/value cache: each step runs the decoder on the newest
token only (tested equal to re-running the whole prefix).

Reference: test BLEU 26.43 on small_parallel_enja en→ja (course material: 3 layers, 6 heads, d_model
128, FFN 256, dropout 0.1, batch 64, 15 epochs, lr 1e-3, GPU). 6 heads do not divide d_model 128;
this implementation requires d_model % heads == 0 and uses 4 or 8 heads.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from types import SimpleNamespace
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from dldojo.data import enja
from dldojo.engine.errors import DojoError
from dldojo.engine.registry import Experiment, Reference, register
from dldojo.engine.reload import LoadedRun
from dldojo.engine.run import RunContext
from dldojo.nn.attention import MultiHeadAttention, SinusoidalPositionalEncoding, causal_mask, key_mask, padding_mask
from dldojo.text import decoding


@dataclasses.dataclass
class TransformerConfig:
    RANGES: ClassVar[dict] = {
        "min_freq": (0, 10**6), "max_train": (0, 10**8), "d_model": (1, 4096), "num_heads": (1, 64),
        "encoder_layers": (0, 48), "decoder_layers": (1, 48), "d_ff": (1, 16384), "dropout": (0, 0.99),
        "attention_dropout": (0, 0.99), "activation_dropout": (0, 0.99), "label_smoothing": (0, 0.99),
        "max_tokens": (1, 10**6), "epochs": (0, 10**4), "warmup_steps": (0, 10**7),
        "weight_decay": (0, 10), "grad_clip": (0, 1e6), "average_last": (1, 100), "beam_width": (1, 100),
        "length_penalty": (0, 10), "eval_batch_size": (1, 10**5)}
    """Allowed (low, high) of the numeric fields, checked before anything is created (`engine.config`)."""

    direction: Literal["en-ja", "ja-en"] = "en-ja"
    """Translation direction (en-ja is the reference direction)."""
    min_freq: int = 2
    """Vocabulary: keep tokens seen at least this often in the training side of each language."""
    max_train: int = 0
    """Train on only the first N pairs (0 = all 50,000); smoke tests use a slice."""
    d_model: int = 128
    """Model width d_model (embeddings, attention, residual stream)."""
    num_heads: int = 4
    """Attention heads h per layer (must divide d_model; d_k = d_model / h)."""
    encoder_layers: int = 3
    """Number of encoder layers."""
    decoder_layers: int = 3
    """Number of decoder layers."""
    d_ff: int = 512
    """Hidden width of the position-wise feed-forward network."""
    dropout: float = 0.1
    """Dropout on the embeddings and on every sublayer output before the residual addition."""
    attention_dropout: float = 0.0
    """Dropout on the attention weights (off by default: CPU random masks cost more than the matmuls)."""
    activation_dropout: float = 0.0
    """Dropout on the FFN hidden layer (off by default, same reason)."""
    norm_first: bool = True
    """Pre-LN (LayerNorm before each sublayer, final LayerNorm per stack) instead of the paper's post-LN."""
    label_smoothing: float = 0.1
    """Label-smoothing ε of the cross-entropy."""
    max_tokens: int = 6000
    """Token budget per batch: batch size × (longest source + longest target + 1), length-bucketed."""
    epochs: int = 10
    """Passes over the training pairs."""
    lr: float = 2e-3
    """Peak learning rate (reached after warmup)."""
    warmup_steps: int = 200
    """Linear warmup steps from 0 to `lr`."""
    schedule: Literal["cosine", "inverse_sqrt"] = "cosine"
    """Decay after warmup: cosine to 1% of `lr` at the last step, or lr·√(warmup/step)."""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay (not on biases, LayerNorm weights or embeddings)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0 = off)."""
    average_last: int = 3
    """Average the weights of the last N epoch-end checkpoints; kept if it scores better on dev (1 = off)."""
    beam_width: int = 5
    """Beam width for the test set (and `dldojo translate`); 1 = greedy."""
    length_penalty: float = 1.0
    """GNMT length-penalty α for ranking finished beams (0 = raw log-probability)."""
    eval_batch_size: int = 250
    """Sentences per decoding batch."""
    fast_attention: bool = False
    """Use torch's fused scaled_dot_product_attention (flash kernel) instead of the formula path.
    Off: for these short sentences (≤ 17 tokens) the formula path measured ~5 % faster on this CPU."""
    compile: bool = False
    """torch.compile the training forward/backward (measure: compile time vs faster steps on CPU)."""
    bf16: bool = False
    """bfloat16 autocast for training matmuls (slower on CPUs without AVX512-BF16/AMX; measured)."""

    def validate(self) -> None:
        if self.d_model % self.num_heads:
            raise DojoError(f"num_heads {self.num_heads} must divide d_model {self.d_model} "
                            f"(e.g. --set num_heads=4 or 8).")
        if self.d_model % 2:
            raise DojoError("d_model must be even (sinusoidal positional encoding pairs sin / cos).")
        if self.epochs < 1 or self.max_tokens < 64:
            raise DojoError("need epochs >= 1 and max_tokens >= 64.")
        if not 0 <= self.dropout < 1 or not 0 <= self.label_smoothing < 1:
            raise DojoError("dropout and label_smoothing must lie in [0, 1).")


PRESETS = {
    "smoke": {"max_train": 300, "d_model": 32, "num_heads": 2, "encoder_layers": 1, "decoder_layers": 1,
              "d_ff": 64, "epochs": 2, "max_tokens": 512, "warmup_steps": 5, "beam_width": 2, "average_last": 2},
    "quick": {"encoder_layers": 2, "decoder_layers": 2, "epochs": 1, "warmup_steps": 50, "average_last": 1,
              "beam_width": 4},
    "full": {},
}


# ----- the model -----

def _default(value: float | None, fallback: float) -> float:
    return fallback if value is None else value


class EncoderLayer(nn.Module):
    """Self-attention + FFN, each with a residual connection and LayerNorm.

    Parameter names match `torch.nn.TransformerEncoderLayer` (parity-tested on the same weights).
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float, norm_first: bool, fast: bool = True,
                 attention_dropout: float | None = None, activation_dropout: float | None = None):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, _default(attention_dropout, dropout), fast)
        self.linear1, self.linear2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.activation_dropout = nn.Dropout(_default(activation_dropout, dropout))
        self.norm_first = norm_first

    def ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.activation_dropout(F.relu(self.linear1(x))))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if self.norm_first:
            x = x + self.dropout(self.self_attn(self.norm1(x), mask=mask)[0])
            return x + self.dropout(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.self_attn(x, mask=mask)[0]))
        return self.norm2(x + self.dropout(self.ffn(x)))


class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention to the encoder memory, FFN; residual + LayerNorm each.

    Parameter names match `torch.nn.TransformerDecoderLayer`. `cache` = the keys / values of earlier
    positions for incremental decoding; `cross_kv` = the memory's keys / values (computed once).
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float, norm_first: bool, fast: bool = True,
                 attention_dropout: float | None = None, activation_dropout: float | None = None):
        super().__init__()
        attention_dropout = _default(attention_dropout, dropout)
        self.self_attn = MultiHeadAttention(d_model, num_heads, attention_dropout, fast)
        self.multihead_attn = MultiHeadAttention(d_model, num_heads, attention_dropout, fast)
        self.linear1, self.linear2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.activation_dropout = nn.Dropout(_default(activation_dropout, dropout))
        self.norm_first = norm_first

    def ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.activation_dropout(F.relu(self.linear1(x))))

    def masked_self_attention(self, x: torch.Tensor, mask: torch.Tensor | None, cache: tuple | None):
        Q, K, V = self.self_attn.project_qkv(x)
        if cache is not None:  # incremental: x holds only the newest position(s), earlier keys are cached
            K, V = torch.cat([cache[0], K], dim=2), torch.cat([cache[1], V], dim=2)
        return self.self_attn.attend(Q, K, V, mask)[0], (K, V)

    def cross_attention(self, x: torch.Tensor, cross_kv: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None):
        return self.multihead_attn.attend(self.multihead_attn.project_q(x), *cross_kv, mask)[0]

    def forward(self, y: torch.Tensor, cross_kv: tuple[torch.Tensor, torch.Tensor], self_mask: torch.Tensor | None,
                cross_mask: torch.Tensor | None, cache: tuple | None = None) -> tuple[torch.Tensor, tuple]:
        if self.norm_first:
            attended, new_cache = self.masked_self_attention(self.norm1(y), self_mask, cache)
            y = y + self.dropout(attended)
            y = y + self.dropout(self.cross_attention(self.norm2(y), cross_kv, cross_mask))
            return y + self.dropout(self.ffn(self.norm3(y))), new_cache
        attended, new_cache = self.masked_self_attention(y, self_mask, cache)
        y = self.norm1(y + self.dropout(attended))
        y = self.norm2(y + self.dropout(self.cross_attention(y, cross_kv, cross_mask)))
        return self.norm3(y + self.dropout(self.ffn(y))), new_cache


class Transformer(nn.Module):
    """Encoder–decoder Transformer; follows `dldojo.text.decoding`'s Seq2SeqModel protocol."""

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, d_model: int = 128, num_heads: int = 4,
                 encoder_layers: int = 3, decoder_layers: int = 3, d_ff: int = 512, dropout: float = 0.1,
                 norm_first: bool = True, fast_attention: bool = False, max_len: int = 512,
                 attention_dropout: float = 0.0, activation_dropout: float = 0.0):
        super().__init__()
        self.d_model = d_model
        self.src_embed = nn.Embedding(src_vocab_size, d_model, padding_idx=enja.PAD)
        self.tgt_embed = nn.Embedding(tgt_vocab_size, d_model, padding_idx=enja.PAD)  # also the output layer
        for embed in (self.src_embed, self.tgt_embed):
            nn.init.normal_(embed.weight, std=d_model ** -0.5)
            with torch.no_grad():
                embed.weight[enja.PAD].zero_()
        self.positional = SinusoidalPositionalEncoding(d_model, max_len)
        self.dropout = nn.Dropout(dropout)
        sublayer = dict(dropout=dropout, norm_first=norm_first, fast=fast_attention,
                        attention_dropout=attention_dropout, activation_dropout=activation_dropout)
        self.encoder = nn.ModuleList(EncoderLayer(d_model, num_heads, d_ff, **sublayer) for _ in range(encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(d_model, num_heads, d_ff, **sublayer) for _ in range(decoder_layers))
        self.encoder_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.decoder_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.output_bias = nn.Parameter(torch.zeros(tgt_vocab_size))

    def embed(self, embedding: nn.Embedding, tokens: torch.Tensor, offset: int = 0) -> torch.Tensor:
        return self.dropout(self.positional(embedding(tokens) * math.sqrt(self.d_model), offset))

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, self.tgt_embed.weight, self.output_bias)  # shared target embedding / output weights

    # -- training: the whole target prefix at once, causal mask --
    def encode_tensor(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        src_pad = padding_mask(src_lengths, src.size(1))
        mask = key_mask(src_pad)
        x = self.embed(self.src_embed, src)
        for layer in self.encoder:
            x = layer(x, mask)
        return self.encoder_norm(x), src_pad

    def decode_tensor(self, tgt_in: torch.Tensor, memory: torch.Tensor, src_pad: torch.Tensor) -> torch.Tensor:
        """Decoder states (B, T, d_model) for every target position (before the output layer)."""
        T = tgt_in.size(1)
        self_mask = causal_mask(T, tgt_in.device)  # padded targets are only ever *queries*: ignored by the loss
        cross_mask = key_mask(src_pad)
        y = self.embed(self.tgt_embed, tgt_in)
        for layer in self.decoder:
            y, _ = layer(y, layer.multihead_attn.project_kv(memory), self_mask, cross_mask)
        return self.decoder_norm(y)

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) for teacher-forced targets."""
        memory, src_pad = self.encode_tensor(src, src_lengths)
        return self.logits(self.decode_tensor(tgt_in, memory, src_pad))

    def loss(self, src, src_lengths, tgt_in, tgt_out, label_smoothing: float = 0.0) -> tuple[torch.Tensor, int]:
        """Mean label-smoothed cross-entropy over non-pad target tokens; the output layer runs on those only."""
        memory, src_pad = self.encode_tensor(src, src_lengths)
        h = self.decode_tensor(tgt_in, memory, src_pad)
        keep = tgt_out != enja.PAD
        logits = self.logits(h[keep])
        return F.cross_entropy(logits, tgt_out[keep], label_smoothing=label_smoothing), int(keep.sum())

    # -- decoding protocol (dldojo.text.decoding.Seq2SeqModel) --
    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> dict[str, Any]:
        memory, src_pad = self.encode_tensor(src, src_lengths)
        cross = [layer.multihead_attn.project_kv(memory) for layer in self.decoder]
        return {"cross_kv": cross, "cross_mask": key_mask(src_pad)}

    def decode_step(self, memory: dict[str, Any], prev_tokens: torch.Tensor, state: list | None):
        """log p(y_t | y_<t, x) from the newest token plus the key/value cache of earlier positions."""
        t = prev_tokens.size(1)
        if state is None:  # first step, or a caller that keeps no state: rebuild the cache from the prefix
            state = [None] * len(self.decoder)
            if t > 1:
                _, state = self._run_decoder(memory, prev_tokens[:, :-1], 0, state)
        h, state = self._run_decoder(memory, prev_tokens[:, -1:], t - 1, state)
        return torch.log_softmax(self.logits(h[:, -1]).float(), dim=-1), state

    def _run_decoder(self, memory, tokens: torch.Tensor, offset: int, caches: list):
        y = self.embed(self.tgt_embed, tokens, offset)
        T = tokens.size(1)
        self_mask = None
        if T > 1:  # several positions at once: causal among them, all cached positions visible
            past = 0 if caches[0] is None else caches[0][0].size(2)
            self_mask = torch.ones(T, past + T, dtype=torch.bool).triu(past + 1)
        new_caches = []
        for layer, cross_kv, cache in zip(self.decoder, memory["cross_kv"], caches):
            y, cache = layer(y, cross_kv, self_mask, memory["cross_mask"], cache)
            new_caches.append(cache)
        return self.decoder_norm(y), new_caches

    def reorder(self, memory: dict[str, Any], state: list | None, index: torch.Tensor):
        memory = {"cross_kv": [(K.index_select(0, index), V.index_select(0, index)) for K, V in memory["cross_kv"]],
                  "cross_mask": memory["cross_mask"].index_select(0, index)}
        if state is not None:
            state = [(K.index_select(0, index), V.index_select(0, index)) for K, V in state]
        return memory, state


def make_model(cfg: TransformerConfig, src_vocab_size: int, tgt_vocab_size: int) -> Transformer:
    return Transformer(src_vocab_size, tgt_vocab_size, cfg.d_model, cfg.num_heads, cfg.encoder_layers,
                       cfg.decoder_layers, cfg.d_ff, cfg.dropout, cfg.norm_first, cfg.fast_attention,
                       attention_dropout=cfg.attention_dropout, activation_dropout=cfg.activation_dropout)


def build_model(cfg: TransformerConfig, run: LoadedRun) -> Transformer:
    """The trained model's shape, for `dldojo translate` (the vocabulary sizes come from vocab.json)."""
    src_vocab, tgt_vocab, _ = decoding.load_vocabs(run)
    return make_model(cfg, len(src_vocab), len(tgt_vocab))


# ----- training helpers -----

def learning_rate(cfg: TransformerConfig, step: int, total_steps: int) -> float:
    """Linear warmup to `lr`, then cosine decay to lr/100 or inverse-√step decay."""
    from dldojo.engine import schedules
    if cfg.schedule == "inverse_sqrt":
        return schedules.warmup_inverse_sqrt(step, cfg.warmup_steps, lr=cfg.lr)
    return schedules.warmup_cosine(step, total_steps, cfg.warmup_steps, final=0.01, lr=cfg.lr)


def make_optimizer(model: Transformer, cfg: TransformerConfig) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() == 2 and "embed" not in n)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98), eps=1e-9,
                             fused=True)  # one fused kernel over all parameters instead of a per-tensor loop


def matmul_flops(cfg: TransformerConfig, tgt_vocab_size: int, B: int, S: int, T: int, src_tokens: int,
                 tgt_tokens: int) -> float:
    """Forward+backward FLOPs (3 × forward) of the model's matmuls for one batch.

    Linear layers count 2 · weights per real (non-pad) token; attention scores and the weighted sum count
    2 · 2 · d_model per (query, key) pair over the padded lengths; the output layer runs on real targets.
    """
    d, f = cfg.d_model, cfg.d_ff
    enc_linear = cfg.encoder_layers * (4 * d * d + 2 * d * f)
    dec_linear = cfg.decoder_layers * (8 * d * d + 2 * d * f)  # self QKV+O, cross Q+O (+ K,V on memory)
    cross_kv = cfg.decoder_layers * 2 * d * d  # keys / values of the memory, per source token
    forward = 2 * (enc_linear * src_tokens + (dec_linear - cross_kv) * tgt_tokens + cross_kv * src_tokens
                   + d * tgt_vocab_size * tgt_tokens)
    forward += 4 * d * B * (cfg.encoder_layers * S * S + cfg.decoder_layers * (T * T + T * S))
    return 3.0 * forward


def evaluate_bleu(model: Transformer, pairs: list, refs: list[list[str]], tgt_vocab: enja.Vocab,
                  cfg: TransformerConfig, beam_width: int = 1, ctx: RunContext | None = None,
                  what: str = "decoding") -> tuple[float, list[list[str]]]:
    """Corpus BLEU of the translations of `pairs`; with `ctx`, a progress bar `what` over the sentences."""
    return decoding.corpus_bleu_of(model, pairs, refs, tgt_vocab, cfg.eval_batch_size, beam_width,
                                   cfg.length_penalty, ctx=ctx, what=what)


# ----- the experiment -----

def run(ctx: RunContext, cfg: TransformerConfig) -> dict[str, float]:
    data = enja.load(cfg.direction, cfg.min_freq, cfg.max_train)
    decoding.save_vocabs(ctx, data)
    model = make_model(cfg, len(data.src_vocab), len(data.tgt_vocab))
    optimizer = make_optimizer(model, cfg)
    batch_seed = ctx.seed_for("batches")
    epoch_batches = [enja.token_batches(data.train, cfg.max_tokens, batch_seed, epoch) for epoch in range(cfg.epochs)]
    steps_per_epoch = [len(b) for b in epoch_batches]
    total_steps = sum(steps_per_epoch)

    state = SimpleNamespace(model=model, optimizer=optimizer, dev_bleu=None, snapshots=[],
                            stats={"train_seconds": 0.0, "tokens": 0.0, "flops": 0.0, "loss_sum": 0.0,
                                   "loss_count": 0.0})
    step = ctx.restore(state)
    stats = state.stats

    def forward_loss(src, src_lengths, tgt_in, tgt_out):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            return model.loss(src, src_lengths, tgt_in, tgt_out, cfg.label_smoothing)[0]

    loss_fn = torch.compile(forward_loss, dynamic=True) if cfg.compile else forward_loss  # backward follows

    def step_fn(src, src_lengths, tgt_in, tgt_out):
        loss = loss_fn(src, src_lengths, tgt_in, tgt_out)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        return loss

    bar = ctx.progress(total_steps, initial=step)
    done = 0
    for epoch in range(cfg.epochs):
        if done + steps_per_epoch[epoch] <= step:  # epoch finished before a resume
            done += steps_per_epoch[epoch]
            continue
        model.train()
        for batch_index in range(step - done, steps_per_epoch[epoch]):
            src, src_lengths, tgt_in, tgt_out = enja.collate(data.train, epoch_batches[epoch][batch_index])
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(cfg, step, total_steps)
            start = time.perf_counter()
            loss = step_fn(src, src_lengths, tgt_in, tgt_out)
            loss_value = loss.item()
            stats["train_seconds"] += time.perf_counter() - start
            step += 1
            ctx.check_finite(loss_value, step, hint="For the transformer try --set lr=5e-4 or more warmup_steps.")
            ctx.log_sampled(step, total_steps, lr=optimizer.param_groups[0]["lr"])  # the schedule with its warm-up
            real_src, real_tgt = int((src != enja.PAD).sum()), int((tgt_out != enja.PAD).sum())
            stats["tokens"] += real_src + real_tgt
            stats["flops"] += matmul_flops(cfg, len(data.tgt_vocab), src.size(0), src.size(1), tgt_in.size(1),
                                           real_src, real_tgt)
            stats["loss_sum"] += loss_value
            stats["loss_count"] += 1
            bar.update(1)
            bar.set_postfix(loss=f"{stats['loss_sum'] / stats['loss_count']:.3f}",
                            **({"dev_bleu": f"{state.dev_bleu:.2f}"} if state.dev_bleu is not None else {}))
            if batch_index == steps_per_epoch[epoch] - 1:  # end of epoch: dev BLEU, snapshot, log
                model.eval()
                state.dev_bleu, _ = evaluate_bleu(model, data.dev, data.dev_refs, data.tgt_vocab, cfg)
                state.snapshots = (state.snapshots + [{k: v.detach().clone() for k, v in model.state_dict().items()}]
                                   )[-max(cfg.average_last, 1):]
                ctx.log(step, epoch=epoch + 1, train_loss=stats["loss_sum"] / stats["loss_count"],
                        dev_bleu=state.dev_bleu,
                        train_tokens_per_second=stats["tokens"] / stats["train_seconds"])
                stats["loss_sum"], stats["loss_count"] = 0.0, 0.0
                model.train()
            ctx.tick(step, state)
        done += steps_per_epoch[epoch]
    bar.close()

    model.eval()
    last_dev_bleu = dev_bleu = state.dev_bleu
    averaged = 1
    if cfg.average_last > 1 and len(state.snapshots) > 1:
        final_state = copy.deepcopy(model.state_dict())
        model.load_state_dict(decoding.average_state_dicts(state.snapshots))
        averaged_dev_bleu, _ = evaluate_bleu(model, data.dev, data.dev_refs, data.tgt_vocab, cfg, ctx=ctx,
                                             what=f"dev BLEU, average of the last {len(state.snapshots)} epochs")
        if averaged_dev_bleu > last_dev_bleu:
            averaged = len(state.snapshots)
        else:
            model.load_state_dict(final_state)
        dev_bleu = max(last_dev_bleu, averaged_dev_bleu)
    test_bleu_greedy, _ = evaluate_bleu(model, data.test, data.test_refs, data.tgt_vocab, cfg, ctx=ctx,
                                        what="test BLEU, greedy")
    start = time.perf_counter()
    test_bleu, test_hyps = evaluate_bleu(model, data.test, data.test_refs, data.tgt_vocab, cfg, cfg.beam_width,
                                         ctx=ctx, what=f"test BLEU, beam {cfg.beam_width}")
    ctx.add_timings(test_beam_seconds=time.perf_counter() - start, train_seconds=stats["train_seconds"],
                    train_tokens_per_second=stats["tokens"] / max(stats["train_seconds"], 1e-9),
                    train_model_gflops_per_second=stats["flops"] / max(stats["train_seconds"], 1e-9) / 1e9)
    ctx.add_facts(averaged_checkpoints=averaged)
    ctx.save_weights(model.state_dict())
    _report(ctx, model, data, test_hyps)
    return {"test_bleu": test_bleu, "test_bleu_greedy": test_bleu_greedy, "dev_bleu": dev_bleu,
            "dev_bleu_last_epoch": last_dev_bleu}


def _report(ctx: RunContext, model: Transformer, data: enja.ParallelData, test_hyps: list[list[str]]) -> None:
    """Sample test translations and one sentence's cross-attention map (last decoder layer, head average)."""
    rows = [{"source": " ".join(data.test_src_tokens[i]), "reference": " ".join(data.test_refs[i]),
             "transformer": " ".join(test_hyps[i])} for i in range(min(12, len(test_hyps)))]
    ctx.save_table("test_translations", rows, "First test sentences: source, reference, beam-search output.")
    if not test_hyps or not test_hyps[0]:
        return
    import matplotlib.pyplot as plt

    src_ids, _ = data.test[0]
    hyp_ids = data.tgt_vocab.encode(test_hyps[0])
    src, src_lengths, tgt_in, _ = enja.collate([(src_ids, hyp_ids)], [0])
    captured = {}
    last = model.decoder[-1].multihead_attn
    original_attend = last.attend

    def attend_with_weights(Q, K, V, mask=None, need_weights=False):
        out, weights = original_attend(Q, K, V, mask, need_weights=True)
        captured["weights"] = weights
        return out, weights

    last.attend = attend_with_weights
    try:
        with torch.no_grad():
            model(src, src_lengths, tgt_in)
    finally:
        del last.attend
    weights = captured["weights"][0].mean(0)  # (T, S)
    src_tokens = [data.src_vocab.itos[i] for i in src_ids]
    inputs = ["<bos>"] + test_hyps[0]  # row t: the decoder has read inputs[: t + 1] and predicts the next token

    def label(k: int, token: str) -> str:  # no CJK font is guaranteed: non-ASCII tokens are shown by position
        return token if token.isascii() else f"#{k}"

    fig, ax = plt.subplots(figsize=(0.5 * len(src_tokens) + 2, 0.4 * len(inputs) + 1.5))
    ax.imshow(weights[:len(inputs), :len(src_tokens)].numpy(), cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(src_tokens)), [label(k, t) for k, t in enumerate(src_tokens)], rotation=60, fontsize=8)
    ax.set_yticks(range(len(inputs)), [label(k, t) for k, t in enumerate(inputs)], fontsize=8)
    ax.set_xlabel("source token")
    ax.set_ylabel("decoder input (#k = k-th token, see table)")
    ax.set_title("Cross-attention, last decoder layer (mean over heads), test sentence 1")
    ctx.save_figure(fig, "cross_attention")
    ctx.save_table("cross_attention_tokens", [{"k": k, "decoder input": t} for k, t in enumerate(inputs)],
                   "Decoder inputs of the cross-attention figure (row k).")


register(Experiment(
    name="transformer",
    topic="Transformer: encoder–decoder with scaled dot-product and multi-head attention (en→ja translation)",
    paper="Vaswani et al. 2017, Attention Is All You Need",
    config_cls=TransformerConfig,
    presets=PRESETS,
    run=run,
    build_model=build_model,
    metric="test_bleu",
    direction="max",
    datasets=("small_parallel_enja",),
    references=(Reference(26.43, "course material: Transformer on small_parallel_enja en→ja",
                          "3 layers, '6 heads', d_model 128, FFN 256, dropout 0.1, batch 64, 15 epochs, lr 1e-3, GPU"),),
    target=32.0,
    family="text",
    threads=None,
))
