"""seq2seq-gru / seq2seq-attn: decoding (greedy = beam 1, exhaustive beam = brute force), packing and
masking properties, the translate command, and learning on real data. (Interrupt -> resume equality, with
scheduled sampling and checkpoint averaging in the smoke presets, is tests/test_smoke_registry.py's.)"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

from dldojo.cli import main as cli_main
from dldojo.data.enja import BOS, EOS, PAD, UNK, collate
from dldojo.engine.launch import run_experiment
from dldojo.text import decoding
from dldojo.text.cli import longest_match, tokenize
from dldojo.text.seq2seq import Seq2Seq


def _model(attention: str, bidirectional: bool, seed: int = 0, vocab: int = 30) -> Seq2Seq:
    torch.manual_seed(seed)
    model = Seq2Seq(vocab, vocab, 16, 16, num_layers=2, bidirectional=bidirectional, attention=attention, dropout=0.0)
    with torch.no_grad():  # sharpen the untrained distributions so decoding choices differ between methods
        model.out.weight.mul_(8.0)
    return model.eval()


def _batch(seed: int = 0, n: int = 7, vocab: int = 30):
    g = torch.Generator().manual_seed(seed)
    pairs = [(torch.randint(4, vocab, (int(torch.randint(1, 9, (1,), generator=g)),), generator=g).tolist(), [])
             for _ in range(n)]
    src, src_lengths, _, _ = collate(pairs, list(range(n)))
    return src, src_lengths


@pytest.mark.parametrize("attention,bidirectional", [("none", False), ("additive", True), ("dot", True),
                                                     ("dot", False)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_width_one_equals_greedy(attention, bidirectional, seed):
    model = _model(attention, bidirectional, seed)
    src, src_lengths = _batch(seed)
    greedy = decoding.greedy_decode(model, src, src_lengths, max_len=12)
    beam = decoding.beam_search(model, src, src_lengths, beam_width=1, max_len=12, length_penalty=0.7)
    assert beam == greedy
    assert any(len(h) > 0 for h in greedy)


class MarkovToy:
    """A fixed random distribution over the next token given (position, previous token)."""

    def __init__(self, vocab: int = 6, max_len: int = 4, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.table = torch.log_softmax(2 * torch.randn(max_len + 1, vocab, vocab, generator=g), dim=-1)

    def encode(self, src, src_lengths):
        return src.float().sum(1)  # per-sentence offset, so sentences in a batch differ

    def decode_step(self, memory, prev_tokens, state):
        t = prev_tokens.shape[1] - 1
        logits = self.table[t, prev_tokens[:, -1]] + 0.3 * torch.sin(memory[:, None] * torch.arange(6.0))
        return torch.log_softmax(logits, dim=-1), state

    def reorder(self, memory, state, index):
        return memory[index], state

    def score(self, memory: float, sequence: list[int]) -> float:
        tokens, total = [BOS], 0.0
        for y in sequence:
            m = torch.tensor([memory])
            log_probs, _ = self.decode_step(m, torch.tensor([tokens]), None)
            log_probs[:, [PAD, BOS]] = float("-inf")
            total += float(log_probs[0, y])
            tokens.append(y)
        return total


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.5])
def test_exhaustive_beam_search_finds_the_best_length_normalised_sequence(alpha):
    toy, max_len, outputs = MarkovToy(), 4, [EOS, UNK, 4, 5]
    src, src_lengths = torch.tensor([[4, 5], [5, 5], [4, PAD]]), torch.tensor([2, 2, 1])
    result = decoding.beam_search(toy, src, src_lengths, beam_width=4 ** 4, max_len=max_len, length_penalty=alpha)
    for b, memory in enumerate(src.float().sum(1).tolist()):
        candidates = []
        for length in range(1, max_len + 1):
            for seq in itertools.product(outputs, repeat=length):
                if EOS in seq[:-1] or (length < max_len and seq[-1] != EOS):
                    continue  # EOS only at the end; without EOS only when cut at max_len
                lp = ((5 + length) / 6) ** alpha
                candidates.append((toy.score(memory, list(seq)) / lp, [y for y in seq if y != EOS]))
        best = max(candidates, key=lambda c: c[0])[1]
        assert result[b] == best


@pytest.mark.parametrize("attention", ["additive", "dot"])
def test_packing_and_masking_make_padding_invisible(attention):
    model = _model(attention, True, 3)
    src, src_lengths = _batch(4, n=5)
    sentences = [row[:n].tolist() for row, n in zip(src, src_lengths)]
    together = decoding.translate_ids(model, sentences, beam_width=3, max_len=12)  # one padded batch
    alone = [decoding.translate_ids(model, [sentence], beam_width=3, max_len=12)[0] for sentence in sentences]
    assert together == alone
    tgt_in = torch.full((src.shape[0], 3), BOS)
    _, alpha = model(src, src_lengths, tgt_in)
    assert torch.all(alpha.masked_select((src == PAD)[:, None, :].expand_as(alpha)) == 0)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(alpha.shape[:2]))


def test_tokenizer_matches_corpus_conventions():
    assert tokenize("I can't tell who'll arrive first.", "en") == "i can 't tell who 'll arrive first .".split()
    vocab = {"私": 4, "は": 5, "学生": 6, "で": 7, "す": 8, "。": 9}
    assert longest_match("私は学生です。", vocab) == ["私", "は", "学生", "で", "す", "。"]
    assert tokenize("私 は 学生", "ja", vocab) == ["私", "は", "学生"]


def test_translate_command(synthetic_data, capsys, monkeypatch):
    summary = run_experiment("seq2seq-attn", preset="smoke", sets=["epochs=3"], quiet=True)
    run_dir = summary["run_dir"]
    assert json.loads((Path(run_dir) / "vocab.json").read_text())["direction"] == "en-ja"
    assert (Path(run_dir) / "figures" / "attention_heatmaps.png").exists()
    assert cli_main(["translate", run_dir, "Tom likes zebras.", "--beam", "2"]) == 0
    out = capsys.readouterr()
    assert out.out.strip() and "zebras" in out.err  # unknown word reported, still translated
    assert cli_main(["translate", run_dir, "   "]) == 2
    assert "empty input" in capsys.readouterr().err
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("i like tea .\n\n" + "tea " * 60 + "\nwe read books .\n"))
    assert cli_main(["translate", run_dir]) == 1
    out = capsys.readouterr()
    assert len(out.out.splitlines()) == 4  # one output line per input line
    assert out.out.splitlines()[1] == "" and "line 2: empty input" in out.err
    assert "line 3: input too long" in out.err


def test_translate_refuses_what_is_not_a_finished_translation_run(synthetic_data, capsys, tmp_path):
    assert cli_main(["translate", str(tmp_path), "i like tea ."]) == 2
    assert "not a dldojo run directory" in capsys.readouterr().err
    recsys_run = run_experiment("collab-dot", preset="smoke", quiet=True, report=False)["run_dir"]
    assert cli_main(["translate", recsys_run, "i like tea ."]) == 2
    err = capsys.readouterr().err
    assert "run of collab-dot (family recsys)" in err and "text family" in err and len(err.strip().splitlines()) == 1


@pytest.mark.realdata
@pytest.mark.slow  # ~30 s on 2 cores
def test_short_training_on_real_data_beats_copy_baseline(real_data):
    summary = run_experiment("seq2seq-attn", preset="quick", quiet=True, report=False,
                             sets=["max_train=10000", "max_eval=200", "beam_width=1"])
    metrics = summary["metrics"]
    assert metrics["dev_bleu_copy_source"] < 1.0
    assert metrics["dev_bleu"] > metrics["dev_bleu_copy_source"] + 2.0
