"""small_parallel_enja loading, vocabulary, length-bucketed batching, and BLEU against sacrebleu."""

from __future__ import annotations

import random

import pytest
import torch

from dldojo.data import enja
from dldojo.data.enja import BOS, EOS, PAD, UNK
from dldojo.metrics.bleu import corpus_bleu, sacrebleu_corpus


# ----- vocabulary -----

def test_vocab_min_freq_specials_encode_decode():
    vocab = enja.build_vocab([["a", "b", "a"], ["c", "a", "b"]], min_freq=2)
    assert vocab.itos == ["<pad>", "<bos>", "<eos>", "<unk>", "a", "b"]  # c seen once: dropped
    assert len(vocab) == 6
    assert vocab.encode(["a", "c", "b"]) == [4, UNK, 5]
    assert vocab.decode([BOS, 4, PAD, 5, EOS, 4]) == ["a", "b"]  # skips PAD/BOS, stops at EOS
    assert enja.Vocab.from_json(vocab.to_json()).stoi == vocab.stoi


def test_token_batches_cover_everything_once_and_respect_budget():
    rng = random.Random(0)
    pairs = [([4] * rng.randint(1, 16), [5] * rng.randint(1, 18)) for _ in range(700)]
    batches = enja.token_batches(pairs, max_tokens=300, seed=3, epoch=1)
    assert sorted(i for b in batches for i in b) == list(range(len(pairs)))
    for b in batches:
        src, src_lengths, tgt_in, tgt_out = enja.collate(pairs, b)
        assert src.shape[0] * (src.shape[1] + tgt_in.shape[1]) <= 300
    assert batches == enja.token_batches(pairs, max_tokens=300, seed=3, epoch=1)  # resumable
    assert batches != enja.token_batches(pairs, max_tokens=300, seed=3, epoch=2)
    unshuffled = enja.token_batches(pairs, max_tokens=300, seed=0, epoch=0, shuffle=False)
    lengths = [len(pairs[i][0]) for b in unshuffled for i in b]
    assert lengths == sorted(lengths)  # bucketed by source length


def test_collate_adds_bos_eos_and_pads():
    pairs = [([4, 5, 6], [7, 8]), ([9], [10, 11, 12])]
    src, src_lengths, tgt_in, tgt_out = enja.collate(pairs, [0, 1])
    assert src.tolist() == [[4, 5, 6], [9, PAD, PAD]]
    assert src_lengths.tolist() == [3, 1]
    assert tgt_in.tolist() == [[BOS, 7, 8, PAD], [BOS, 10, 11, 12]]
    assert tgt_out.tolist() == [[7, 8, EOS, PAD], [10, 11, 12, EOS]]
    assert src.dtype == torch.long


def test_fixture_loads_in_both_directions(synthetic_data):
    en_ja = enja.load("en-ja")
    ja_en = enja.load("ja-en")
    assert len(en_ja.train) == len(ja_en.train) > 100
    assert en_ja.src_vocab.itos == ja_en.tgt_vocab.itos  # English vocabulary either way
    assert ja_en.dev_src_tokens == en_ja.dev_refs
    with pytest.raises(Exception, match="direction"):
        enja.load("en-fr")  # type: ignore[arg-type]


@pytest.mark.realdata
def test_real_data_sizes_and_vocabulary(real_data):
    from dldojo.data import store

    assert store.status("small_parallel_enja").state == "ok"  # every sha256 verified
    data = enja.load("en-ja")
    assert (len(data.train), len(data.dev), len(data.test)) == (50_000, 500, 500)
    # tokens seen >= 2 times in train + 4 specials (6,634 / 8,774 distinct tokens in all)
    assert (len(data.src_vocab), len(data.tgt_vocab)) == (4109, 4906)
    assert data.test_refs[0] == "彼 ら は つい に それ が 真実 だ と 認め た 。".split()
    assert all(4 <= len(s) <= 16 for s, _ in data.train[:1000])


# ----- BLEU -----

def _random_corpus(rng: random.Random, n: int, vocab: int, max_len: int) -> list[list[str]]:
    return [[f"w{rng.randrange(vocab)}" for _ in range(rng.randint(0, max_len))] for _ in range(n)]


def test_bleu_golden_value():
    # hyp "the cat sat on the mat" vs ref "the cat is on the mat":
    # p1 = 5/6, p2 = 3/5, p3 = 1/4, p4 = 0/3 -> exp-smoothed 1/(2*3); BP = 1
    hyp, ref = "the cat sat on the mat".split(), "the cat is on the mat".split()
    expected = 100 * (5 / 6 * 3 / 5 * 1 / 4 * 1 / 6) ** 0.25
    assert corpus_bleu([hyp], [ref]) == pytest.approx(expected, rel=1e-12)
    assert sacrebleu_corpus([hyp], [ref]) == pytest.approx(expected, rel=1e-12)
    assert corpus_bleu([ref], [ref]) == pytest.approx(100.0)


@pytest.mark.parametrize("seed", range(30))
def test_bleu_equals_sacrebleu_on_random_corpora(seed):
    rng = random.Random(seed)
    vocab = rng.choice([3, 8, 30])  # small vocabularies: many matches; large: orders without any match
    refs = _random_corpus(rng, rng.randint(1, 40), vocab, 12)
    hyps = [ref[: rng.randint(0, len(ref))] + _random_corpus(rng, 1, vocab, 4)[0] for ref in refs]
    assert corpus_bleu(hyps, refs) == pytest.approx(sacrebleu_corpus(hyps, refs), abs=1e-9)


@pytest.mark.parametrize("hyps,refs", [
    ([[]], [["a", "b"]]),                      # empty output
    ([["a"]], [["a", "b"]]),                   # too short for 2..4-grams
    ([["a", "b", "c"]], [["a", "b", "d"]]),    # no 4-gram at all
    ([["x", "y", "z", "w"]], [["a", "b", "c", "d"]]),  # no match of any order
    ([["a", "a", "a", "a", "a"]], [["a", "b"]]),  # clipping: "a" credited once
    ([["a", "b", "c", "d", "e"], []], [["a", "b", "c", "d", "e"], ["f"]]),
])
def test_bleu_edge_cases_equal_sacrebleu(hyps, refs):
    assert corpus_bleu(hyps, refs) == pytest.approx(sacrebleu_corpus(hyps, refs), abs=1e-9)


def test_bleu_without_smoothing_when_all_orders_match():
    refs = [s.split() for s in ("a b c d e f", "g h i j k", "a b x d e")]
    hyps = [s.split() for s in ("a b c d e", "g h i j k l", "a b c d")]
    assert corpus_bleu(hyps, refs) == pytest.approx(sacrebleu_corpus(hyps, refs, smooth_method="none"), abs=1e-9)


@pytest.mark.realdata
def test_bleu_equals_sacrebleu_on_real_test_set(real_data):
    data = enja.load("en-ja")
    rng = random.Random(0)
    for hyps in (
        [r[: max(1, len(r) - 2)] for r in data.test_refs],             # truncated: brevity penalty
        [rng.sample(r, len(r)) for r in data.test_refs],               # shuffled tokens
        [r + ["。"] for r in data.test_refs],                           # too long
        data.test_src_tokens,                                            # copy-the-source baseline
    ):
        assert corpus_bleu(hyps, data.test_refs) == pytest.approx(sacrebleu_corpus(hyps, data.test_refs), abs=1e-9)
