"""The `transformer` experiment: layers equal torch's on the same weights, masks, KV-cache decoding, FLOP
count, translate loader, and (with real data) a short run that beats trivial baselines on dev BLEU.
(Interrupt -> resume equality is tests/test_smoke_registry.py's.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dldojo.data import enja
from dldojo.engine.errors import DojoError
from dldojo.engine.launch import run_experiment
from dldojo.metrics.bleu import sacrebleu_corpus
from dldojo.nn.attention import causal_mask, key_mask, padding_mask
from dldojo.text import decoding
from dldojo.text.transformer import (
    DecoderLayer,
    EncoderLayer,
    Transformer,
    TransformerConfig,
    learning_rate,
    matmul_flops,
)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("fast", [False, True])
def test_layers_match_torch_transformer_layers(norm_first, fast):
    torch.manual_seed(0)
    d, h, f = 32, 4, 64
    x, y = torch.randn(3, 7, d), torch.randn(3, 5, d)
    src_pad = padding_mask(torch.tensor([7, 5, 2]))
    ref_enc = nn.TransformerEncoderLayer(d, h, f, 0.0, batch_first=True, norm_first=norm_first).eval()
    enc = EncoderLayer(d, h, f, 0.0, norm_first, fast).eval()
    enc.load_state_dict(ref_enc.state_dict())  # same parameter names
    torch.testing.assert_close(enc(x, key_mask(src_pad)), ref_enc(x, src_key_padding_mask=src_pad),
                               rtol=1e-5, atol=1e-5)
    ref_dec = nn.TransformerDecoderLayer(d, h, f, 0.0, batch_first=True, norm_first=norm_first).eval()
    dec = DecoderLayer(d, h, f, 0.0, norm_first, fast).eval()
    dec.load_state_dict(ref_dec.state_dict())
    ours, _ = dec(y, dec.multihead_attn.project_kv(x), causal_mask(5), key_mask(src_pad))
    torch.testing.assert_close(ours, ref_dec(y, x, tgt_mask=causal_mask(5), memory_key_padding_mask=src_pad),
                               rtol=1e-5, atol=1e-5)


def _model_and_batch(seed=0, norm_first=True):
    torch.manual_seed(seed)
    model = Transformer(50, 60, 32, 4, 2, 2, 64, 0.1, norm_first=norm_first).eval()
    src = torch.randint(4, 50, (3, 7))
    lengths = torch.tensor([7, 5, 2])
    src[1, 5:], src[2, 2:] = enja.PAD, enja.PAD
    tgt = torch.randint(4, 60, (3, 6))
    tgt[:, 0] = enja.BOS
    return model, src, lengths, tgt


def test_future_targets_and_source_padding_are_invisible():
    model, src, lengths, tgt = _model_and_batch()
    logits = model(src, lengths, tgt)
    changed = tgt.clone()
    changed[:, 4:] = 7  # future tokens for positions 0-3
    torch.testing.assert_close(model(src, lengths, changed)[:, :4], logits[:, :4])
    assert not torch.allclose(model(src, lengths, changed)[:, 4:], logits[:, 4:])
    padded = src.clone()
    padded[1, 5:], padded[2, 2:] = 11, 13  # garbage in the padded source positions
    torch.testing.assert_close(model(padded, lengths, tgt), logits)


@pytest.mark.parametrize("norm_first", [False, True])
def test_kv_cache_decoding_equals_full_forward(norm_first):
    model, src, lengths, tgt = _model_and_batch(1, norm_first)
    full = torch.log_softmax(model(src, lengths, tgt), -1)
    memory, state, steps = model.encode(src, lengths), None, []
    for t in range(1, tgt.size(1) + 1):
        log_probs, state = model.decode_step(memory, tgt[:, :t], state)
        steps.append(log_probs)
    torch.testing.assert_close(torch.stack(steps, 1), full, rtol=1e-5, atol=1e-5)
    # a caller without state (full-prefix decoding) gets the same answer
    log_probs, _ = model.decode_step(memory, tgt, None)
    torch.testing.assert_close(log_probs, full[:, -1], rtol=1e-5, atol=1e-5)
    # reordering the batch reorders the cache consistently
    index = torch.tensor([2, 0, 0])
    memory2, state2 = model.reorder(memory, state[:], index)
    next_tokens = torch.cat([tgt[index], torch.full((3, 1), 9)], 1)
    log_probs, _ = model.decode_step(memory2, next_tokens, state2)
    reference = torch.log_softmax(model(src[index], lengths[index], next_tokens), -1)[:, -1]
    torch.testing.assert_close(log_probs, reference, rtol=1e-5, atol=1e-5)


def test_output_layer_shares_target_embedding():
    model, src, lengths, tgt = _model_and_batch()
    assert not any(p.shape == model.tgt_embed.weight.shape and p is not model.tgt_embed.weight
                   for p in model.parameters())
    model.train()
    loss, n = model.loss(src, lengths, tgt, torch.roll(tgt, -1, 1), label_smoothing=0.1)
    loss.backward()
    assert n == tgt.numel()
    assert model.tgt_embed.weight.grad[[int(t) for t in tgt[:, 1:].flatten()]].abs().sum() > 0


def test_beam_one_equals_greedy_and_outputs_are_ids():
    model, src, lengths, _ = _model_and_batch(2)
    greedy = decoding.greedy_decode(model, src, lengths, 8)
    assert greedy == decoding.beam_search(model, src, lengths, 1, 8, length_penalty=1.0)
    beams = decoding.beam_search(model, src, lengths, 3, 8, length_penalty=1.0)
    assert len(beams) == 3 and all(all(4 <= i < 60 or i == enja.UNK for i in b) for b in beams)


def test_flop_count_matches_torch_flop_counter():
    """Without padding the analytic count equals what torch's FlopCounterMode sees in forward + backward."""
    cfg = TransformerConfig(d_model=32, num_heads=4, encoder_layers=2, decoder_layers=3, d_ff=48, dropout=0.0)
    model = Transformer(40, 50, 32, 4, 2, 3, 48, 0.0, fast_attention=False).train()  # formula path: bmm is counted
    B, S, T = 4, 6, 5
    src, tgt_in, tgt_out = torch.randint(4, 40, (B, S)), torch.randint(4, 50, (B, T)), torch.randint(4, 50, (B, T))
    with FlopCounterMode(display=False) as counter:
        loss, _ = model.loss(src, torch.full((B,), S), tgt_in, tgt_out)
        loss.backward()
    assert counter.get_total_flops() == matmul_flops(cfg, 50, B, S, T, B * S, B * T)


def test_schedule_warms_up_then_decays():
    cfg = TransformerConfig(lr=1e-3, warmup_steps=10)
    lrs = [learning_rate(cfg, s, 100) for s in range(100)]
    assert lrs[9] == pytest.approx(1e-3) and all(a < b for a, b in zip(lrs[:9], lrs[1:10]))
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[-1] < 0.05e-3
    inv = TransformerConfig(lr=1e-3, warmup_steps=10, schedule="inverse_sqrt")
    assert learning_rate(inv, 39, 100) == pytest.approx(1e-3 * (10 / 40) ** 0.5)


def test_heads_must_divide_d_model(synthetic_data):
    with pytest.raises(DojoError, match="num_heads 6 must divide d_model 128"):
        run_experiment("transformer", preset="smoke", sets=["d_model=128", "num_heads=6"], quiet=True)


def test_translate_loader_rebuilds_the_trained_model(synthetic_data):
    from dldojo.text.cli import load_translator

    full = run_experiment("transformer", preset="smoke", sets=["beam_width=2"], seed=1, quiet=True, report=False)
    translator = load_translator(Path(full["run_dir"]))
    assert translator.direction == "en-ja" and translator.beam_width == 2
    src = [translator.src_vocab.encode("tom likes tea .".split())]
    out = decoding.translate_corpus(translator.model, src, translator.tgt_vocab, beam_width=2)
    assert len(out) == 1 and all(isinstance(t, str) for t in out[0])
    assert json.loads((Path(full["run_dir"]) / "vocab.json").read_text())["direction"] == "en-ja"
    # the reloaded model is the one that was evaluated: same test BLEU
    data = enja.load("en-ja", min_freq=2, max_train=300)
    test_bleu, _ = decoding.corpus_bleu_of(translator.model, data.test, data.test_refs, translator.tgt_vocab, 250, 2)
    assert test_bleu == full["metrics"]["test_bleu"]


@pytest.mark.realdata
@pytest.mark.slow  # ~30 s on 2 cores
def test_short_real_run_beats_trivial_baselines(real_data):
    """2 encoder + 2 decoder layers, 12k pairs, 2 epochs of small token batches (~340 updates, ~45 s):
    dev BLEU well above copying the source or always answering the most frequent training translation."""
    summary = run_experiment("transformer", preset="quick", quiet=True, report=False,
                             sets=["max_train=12000", "epochs=2", "max_tokens=1500", "beam_width=1",
                                   "warmup_steps=60"])
    data = enja.load("en-ja", max_train=12000)
    copy_source = sacrebleu_corpus(data.dev_src_tokens, data.dev_refs)
    train_refs = [tuple(data.tgt_vocab.decode(t)) for _, t in data.train]
    most_frequent = max(set(train_refs), key=train_refs.count)
    constant = sacrebleu_corpus([list(most_frequent)] * len(data.dev_refs), data.dev_refs)
    dev_bleu = summary["metrics"]["dev_bleu"]
    assert dev_bleu > max(copy_source, constant) + 5, (dev_bleu, copy_source, constant)
