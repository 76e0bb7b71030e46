"""Decoding for encoder-decoder translation models: greedy search and beam search.

Any model that follows `Seq2SeqModel` can be decoded (the GRU seq2seq models and the Transformer):

    memory = model.encode(src, src_lengths)                       # whatever the decoder needs
    log_probs, state = model.decode_step(memory, prev_tokens, state)
        # prev_tokens (B, t): every token so far, starting with <bos>; state is None at t = 1
        # log_probs (B, V): log p(y_t | y_<t, x)
    memory, state = model.reorder(memory, state, index)           # pick / repeat batch rows (beams)

An RNN decoder reads only `prev_tokens[:, -1]` and carries its hidden state in `state`; a Transformer
may re-read the whole prefix (state None) or keep a key/value cache there.

Beam search (Graves 2012; Sutskever et al. 2014) keeps the `beam_width` best prefixes per sentence by
total log-probability. A beam that has produced <eos> stays in the beam, frozen (it may only extend
with <pad> at zero cost), so its score can still be beaten. At the end each sentence's hypotheses are
ranked by the GNMT length-normalised score (Wu et al. 2016):

    score(Y) = log P(Y | X) / lp(Y),   lp(Y) = ((5 + |Y|) / 6) ** alpha        (|Y| counts <eos>)

`length_penalty` is alpha: 0 ranks by raw log-probability (which favours short outputs), 1 is close to
a per-token average. With `beam_width` 1 beam search is exactly greedy search (tested).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch

from dldojo.data.enja import BOS, EOS, PAD, Pair, ParallelData, Vocab, collate
from dldojo.engine.reload import LoadedRun
from dldojo.engine.run import RunContext


class Seq2SeqModel(Protocol):
    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> Any: ...

    def decode_step(self, memory: Any, prev_tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]: ...

    def reorder(self, memory: Any, state: Any, index: torch.Tensor) -> tuple[Any, Any]: ...


def default_max_len(src_lengths: torch.Tensor) -> int:
    """Longest output allowed for a batch: 2 x the longest source + 10."""
    return int(src_lengths.max()) * 2 + 10


@torch.no_grad()
def greedy_decode(model: Seq2SeqModel, src: torch.Tensor, src_lengths: torch.Tensor, max_len: int) -> list[list[int]]:
    """Pick argmax_y p(y | y_<t, x) at every step; output ids without <bos> / <eos>."""
    B = src.shape[0]
    memory = model.encode(src, src_lengths)
    tokens = torch.full((B, 1), BOS, dtype=torch.long)
    finished = torch.zeros(B, dtype=torch.bool)
    state = None
    for _ in range(max_len):
        log_probs, state = model.decode_step(memory, tokens, state)
        next_token = never_special(log_probs).argmax(-1)
        next_token = torch.where(finished, torch.full_like(next_token, PAD), next_token)
        tokens = torch.cat([tokens, next_token[:, None]], dim=1)
        finished |= next_token == EOS
        if bool(finished.all()):
            break
    return [_strip(row) for row in tokens[:, 1:].tolist()]


def never_special(log_probs: torch.Tensor) -> torch.Tensor:
    """<pad> and <bos> are never outputs (an untrained model might still rank them first)."""
    log_probs = log_probs.clone()
    log_probs[:, [PAD, BOS]] = float("-inf")
    return log_probs


def _strip(ids: list[int]) -> list[int]:
    out = []
    for i in ids:
        if i in (EOS, PAD):
            break
        out.append(i)
    return out


def gnmt_length_penalty(length: torch.Tensor, alpha: float) -> torch.Tensor:
    return ((5.0 + length.float()) / 6.0) ** alpha


@torch.no_grad()
def beam_search(model: Seq2SeqModel, src: torch.Tensor, src_lengths: torch.Tensor, beam_width: int, max_len: int,
                length_penalty: float = 1.0) -> list[list[int]]:
    """Batched beam search; returns the best hypothesis per sentence (ids without <bos> / <eos>)."""
    B, K = src.shape[0], beam_width
    memory = model.encode(src, src_lengths)
    expand = torch.arange(B).repeat_interleave(K)  # row b*K + k is beam k of sentence b
    memory, state = model.reorder(memory, None, expand)
    tokens = torch.full((B * K, 1), BOS, dtype=torch.long)
    scores = torch.full((B, K), float("-inf"))
    scores[:, 0] = 0.0  # all beams start identical: keep one so the first step does not pick duplicates
    finished = torch.zeros(B * K, dtype=torch.bool)
    lengths = torch.zeros(B * K, dtype=torch.long)
    for _ in range(max_len):
        log_probs, state = model.decode_step(memory, tokens, state)  # (B*K, V)
        V = log_probs.shape[-1]
        log_probs = never_special(log_probs.float())
        frozen = torch.full_like(log_probs, float("-inf"))
        frozen[:, PAD] = 0.0
        log_probs = torch.where(finished[:, None], frozen, log_probs)
        candidates = (scores.view(B * K, 1) + log_probs).view(B, K * V)
        scores, flat = candidates.topk(K, dim=1)  # (B, K), sorted best first
        beam_origin = flat // V
        next_token = flat % V
        rows = (torch.arange(B)[:, None] * K + beam_origin).view(-1)
        memory, state = model.reorder(memory, state, rows)
        tokens = torch.cat([tokens[rows], next_token.view(-1, 1)], dim=1)
        was_finished = finished[rows]
        lengths = lengths[rows] + (~was_finished).long()
        finished = was_finished | (next_token.view(-1) == EOS)
        if bool(finished.all()):
            break
    normalised = scores.view(-1) / gnmt_length_penalty(lengths, length_penalty)
    normalised = torch.where(torch.isfinite(scores.view(-1)), normalised, torch.full_like(normalised, float("-inf")))
    best = normalised.view(B, K).argmax(dim=1)
    chosen = tokens.view(B, K, -1)[torch.arange(B), best]
    return [_strip(row) for row in chosen[:, 1:].tolist()]


@torch.no_grad()
def translate_ids(model: Seq2SeqModel, src_ids: list[list[int]], batch_size: int = 64, beam_width: int = 1,
                  max_len: int | None = None, length_penalty: float = 1.0,
                  progress: Callable[[int], Any] | None = None) -> list[list[int]]:
    """Decode every source sentence (batched by similar length); output ids in input order. `progress(n)` is
    called after each batch with its number of sentences (e.g. a progress bar's `update`)."""
    if hasattr(model, "eval"):
        model.eval()
    order = sorted(range(len(src_ids)), key=lambda i: len(src_ids[i]))
    pairs: list[Pair] = [(src_ids[i], []) for i in order]
    outputs: list[list[int]] = [[] for _ in src_ids]
    for start in range(0, len(pairs), batch_size):
        index = list(range(start, min(start + batch_size, len(pairs))))
        src, src_lengths, _, _ = collate(pairs, index)
        limit = max_len if max_len is not None else default_max_len(src_lengths)
        if beam_width <= 1:
            hyps = greedy_decode(model, src, src_lengths, limit)
        else:
            hyps = beam_search(model, src, src_lengths, beam_width, limit, length_penalty)
        for i, hyp in zip(index, hyps):
            outputs[order[i]] = hyp
        if progress is not None:
            progress(len(index))
    return outputs


def translate_corpus(model: Seq2SeqModel, pairs: list[Pair] | list[list[int]], tgt_vocab: Vocab, batch_size: int = 64,
                     beam_width: int = 1, max_len: int | None = None, length_penalty: float = 1.0,
                     progress: Callable[[int], Any] | None = None) -> list[list[str]]:
    """Translate the sources of `pairs` ((src_ids, tgt_ids) tuples, or bare src id lists) into tokens."""
    src_ids = [p[0] if isinstance(p, tuple) else p for p in pairs]
    hyps = translate_ids(model, src_ids, batch_size, beam_width, max_len, length_penalty, progress)
    return [tgt_vocab.decode(h) for h in hyps]


def corpus_bleu_of(model: Seq2SeqModel, pairs: list[Pair], refs: list[list[str]], tgt_vocab: Vocab,
                   batch_size: int, beam_width: int = 1, length_penalty: float = 1.0,
                   ctx: RunContext | None = None, what: str = "decoding") -> tuple[float, list[list[str]]]:
    """Translate the sources of `pairs` and score them against `refs` with sacrebleu (tokenize='none');
    with `ctx`, a progress bar `what` over the sentences."""
    from dldojo.metrics.bleu import sacrebleu_corpus

    bar = ctx.progress(len(pairs), desc=what, unit="sentence") if ctx is not None else None
    hyps = translate_corpus(model, pairs, tgt_vocab, batch_size, beam_width, length_penalty=length_penalty,
                            progress=bar.update if bar is not None else None)
    if bar is not None:
        bar.close()
    return sacrebleu_corpus(hyps, refs), hyps


def average_state_dicts(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Element-wise mean of several checkpoints of one model (checkpoint averaging)."""
    return {k: sum(s[k].float() for s in states) / len(states) for k in states[0]}


# ----- the vocabularies of a translation run (read back by build_model and `dldojo translate`) -----

VOCAB_FILE = "vocab.json"


def save_vocabs(ctx: RunContext, data: ParallelData) -> None:
    ctx.save_json(VOCAB_FILE, {"direction": data.direction, "src": data.src_vocab.to_json(),
                               "tgt": data.tgt_vocab.to_json()})


def load_vocabs(run: LoadedRun) -> tuple[Vocab, Vocab, str]:
    """(source vocabulary, target vocabulary, direction) of a finished run."""
    saved = run.read_json(VOCAB_FILE)
    return Vocab.from_json(saved["src"]), Vocab.from_json(saved["tgt"]), saved["direction"]
