"""Sequence-to-sequence translation with GRUs: `seq2seq-gru` and `seq2seq-attn` (English → Japanese).

Curriculum: 深層学習 / 自然言語処理 — encoder-decoder (seq2seq) models, teacher forcing, attention,
greedy and beam-search decoding, BLEU.
Papers: Sutskever, Vinyals & Le 2014 (seq2seq); Cho et al. 2014 (GRU encoder-decoder); Bahdanau, Cho &
Bengio 2015 (additive attention); Luong, Pham & Manning 2015 (global attention, dot / general scores);
Papineni et al. 2002 (BLEU); Szegedy et al. 2016 (label smoothing).

Encoder: embedding → (bi)GRU over the packed source (`pack_padded_sequence`, so padding never enters
the recurrence) → outputs h̄_1..h̄_S and a final state that initialises the decoder (for a bidirectional
encoder: s_0 = tanh(W [h→_S ; h←_1])).
Decoder: s_t = GRU(s_{t-1}, E y_{t-1}); without attention p(y_t | y_<t, x) = softmax(W_o s_t).
With attention (Luong's global attention, computed after the GRU step so that training runs the decoder
GRU over the whole target in one call):

    additive (Bahdanau):  e_ts = vᵀ tanh(W_q s_t + W_k h̄_s)
    dot (Luong):          e_ts = s_tᵀ (W_k h̄_s)         (W_k maps the 2H-wide bi-encoder states to H)
    α_t = softmax_s(e_t·) over real source positions,  c_t = Σ_s α_ts h̄_s
    s̃_t = tanh(W_c [s_t ; c_t]),  p(y_t | y_<t, x) = softmax(W_o s̃_t)

Training: cross-entropy on target tokens (with optional label smoothing), Adam, gradient clipping,
token-based length-bucketed batches (`dldojo.data.enja.token_batches`). Teacher forcing with a
probability p: each decoder input token is the gold y_{t-1} with probability p and otherwise the model's
own greedy prediction from a no-grad teacher-forced pass (parallel scheduled sampling, Duckworth et al.
2019 — it keeps training one GRU call per batch instead of a Python loop over time steps).
Evaluation: dev BLEU (greedy) after every epoch; test BLEU with beam search, corpus BLEU by sacrebleu
with `tokenize="none"` because the data are already tokenized (English: Stanford tokenizer,
Japanese: KyTea), so scores are over those tokens.

Reference: the course's GRU seq2seq (hidden 256, 10 epochs on a GPU) reaches test BLEU 17.89 on en→ja.
Target (this project): `seq2seq-attn --preset full` test BLEU ≥ 22 in ≤ 20 minutes on 2 CPU cores.
"""

from __future__ import annotations

import dataclasses
import time
from types import SimpleNamespace
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from dldojo.data import enja
from dldojo.data.enja import PAD
from dldojo.engine.errors import DojoError
from dldojo.engine.registry import Experiment, Reference, register
from dldojo.engine.reload import LoadedRun
from dldojo.engine.run import RunContext
from dldojo.metrics.bleu import corpus_bleu, sacrebleu_corpus
from dldojo.text import decoding

Attention = Literal["none", "additive", "dot"]


@dataclasses.dataclass
class Seq2SeqConfig:
    RANGES: ClassVar[dict] = {
        "min_freq": (0, 10**6), "max_train": (0, 10**8), "max_eval": (0, 10**8), "embed_dim": (1, 4096),
        "hidden_size": (1, 4096), "num_layers": (1, 16), "dropout": (0, 0.99), "epochs": (0, 10**4),
        "max_tokens": (1, 10**6), "warmup_steps": (0, 10**7), "final_lr_ratio": (0, 10),
        "weight_decay": (0, 10), "grad_clip": (0, 1e6), "label_smoothing": (0, 0.99), "teacher_forcing": (0, 1),
        "average_last": (1, 100), "beam_width": (1, 100), "length_penalty": (0, 10), "eval_batch_size": (1, 10**5),
        "heatmaps": (0, 100)}
    """Allowed (low, high) of the numeric fields, checked before anything is created (`engine.config`)."""

    direction: Literal["en-ja", "ja-en"] = "en-ja"
    """Translation direction; en-ja is the reference direction."""
    min_freq: int = 2
    """Vocabulary: tokens seen at least this often in the training side of their language."""
    max_train: int = 0
    """Use only the first N training pairs (0 = all 50,000)."""
    max_eval: int = 0
    """Evaluate on only the first N dev and test pairs (0 = all 500); for smoke tests."""
    attention: Attention = "none"
    """Attention score: 'none' (plain encoder-decoder), 'additive' (Bahdanau) or 'dot' (Luong)."""
    embed_dim: int = 256
    """Width of the source and target word embeddings."""
    hidden_size: int = 256
    """GRU hidden size (per direction in the encoder)."""
    num_layers: int = 1
    """Stacked GRU layers in encoder and decoder."""
    bidirectional: bool = False
    """Bidirectional encoder (outputs are 2 x hidden_size wide)."""
    dropout: float = 0.1
    """Dropout on embeddings and on the decoder output before the softmax layer."""
    tie_embeddings: bool = False
    """Share the decoder's input embedding and output projection (needs embed_dim == hidden_size)."""
    epochs: int = 10
    """Passes over the training pairs."""
    max_tokens: int = 4000
    """Padded source + target tokens per batch (length-bucketed batches)."""
    lr: float = 1e-3
    """Peak Adam learning rate."""
    warmup_steps: int = 200
    """Linear learning-rate warm-up steps."""
    final_lr_ratio: float = 1.0
    """Learning rate at the end as a fraction of lr (cosine decay; 1.0 = constant after warm-up)."""
    weight_decay: float = 0.0
    """Adam L2 weight decay."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 = off)."""
    label_smoothing: float = 0.0
    """Label smoothing of the cross-entropy targets."""
    teacher_forcing: float = 1.0
    """Probability that a decoder input is the gold previous token (else the model's own prediction)."""
    average_last: int = 1
    """Evaluate the average of the weights at the end of the last N epochs (checkpoint averaging)."""
    beam_width: int = 5
    """Beam width for the test set (1 = greedy); dev BLEU per epoch is always greedy."""
    length_penalty: float = 1.0
    """GNMT length-penalty exponent alpha for beam search (0 = raw log-probability)."""
    eval_batch_size: int = 100
    """Sentences per decoding batch."""
    heatmaps: int = 4
    """Attention heat-maps of this many test sentences in the report (attention models only)."""

    def validate(self) -> None:
        for key in ("embed_dim", "hidden_size", "num_layers", "epochs", "max_tokens", "beam_width", "average_last",
                    "eval_batch_size", "min_freq"):
            if getattr(self, key) < 1:
                raise DojoError(f"{key} must be >= 1, got {getattr(self, key)}")
        if not 0 <= self.teacher_forcing <= 1:
            raise DojoError(f"teacher_forcing is a probability in [0, 1], got {self.teacher_forcing}")
        if not 0 <= self.dropout < 1 or not 0 <= self.label_smoothing < 1:
            raise DojoError("dropout and label_smoothing must be in [0, 1)")
        if self.tie_embeddings and self.embed_dim != self.hidden_size:
            raise DojoError(f"tie_embeddings needs embed_dim == hidden_size (got {self.embed_dim} and "
                            f"{self.hidden_size}); --set tie_embeddings=false or make them equal.")
        if not self.lr > 0:
            raise DojoError(f"lr must be > 0, got {self.lr}")
        if self.average_last > self.epochs:
            raise DojoError(f"average_last ({self.average_last}) cannot exceed epochs ({self.epochs})")


# ----- model -----

class Encoder(nn.Module):
    def __init__(self, vocab_size: int, embed_dim: int, hidden_size: int, num_layers: int, bidirectional: bool,
                 dropout: float):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(embed_dim, hidden_size, num_layers, batch_first=True, bidirectional=bidirectional,
                          dropout=dropout if num_layers > 1 else 0.0)
        self.bidirectional = bidirectional
        self.num_layers = num_layers
        self.bridge = nn.Linear(2 * hidden_size, hidden_size) if bidirectional else None

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h̄ (B, S, D) with D = H or 2H, and the decoder's initial state s_0 (num_layers, B, H)."""
        packed = pack_padded_sequence(self.dropout(self.embedding(src)), src_lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        outputs, h_n = self.gru(packed)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=src.shape[1])
        if self.bidirectional:  # h_n: (layers * 2, B, H) -> per layer [forward ; backward] -> H
            h_n = h_n.view(self.num_layers, 2, *h_n.shape[1:])
            h_n = torch.tanh(self.bridge(torch.cat([h_n[:, 0], h_n[:, 1]], dim=-1)))
        return outputs, h_n


class GlobalAttention(nn.Module):
    """e_ts = vᵀ tanh(W_q s_t + W_k h̄_s) (additive) or s_tᵀ W_k h̄_s (dot); α = masked softmax; c = α h̄."""

    def __init__(self, kind: str, query_dim: int, memory_dim: int, attention_dim: int):
        super().__init__()
        self.kind = kind
        self.key = nn.Linear(memory_dim, attention_dim if kind == "additive" else query_dim, bias=False)
        if kind == "additive":
            self.query = nn.Linear(query_dim, attention_dim, bias=False)
            self.v = nn.Linear(attention_dim, 1, bias=False)

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        return self.key(memory)  # W_k h̄, computed once per source sentence

    def forward(self, s: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor):
        """s (B, T, H), keys (B, S, A), memory (B, S, D), mask (B, S) True at real tokens -> c (B, T, D), α."""
        if self.kind == "additive":
            scores = self.v(torch.tanh(self.query(s)[:, :, None, :] + keys[:, None, :, :]))[..., 0]
        else:
            scores = torch.bmm(s, keys.transpose(1, 2))
        scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
        alpha = torch.softmax(scores, dim=-1)
        return torch.bmm(alpha, memory), alpha


@dataclasses.dataclass
class Memory:
    """What the decoder reads about the source: h̄, precomputed keys, the padding mask and s_0."""

    outputs: torch.Tensor
    keys: torch.Tensor | None
    mask: torch.Tensor
    initial_state: torch.Tensor

    def select(self, index: torch.Tensor) -> Memory:
        return Memory(self.outputs[index], None if self.keys is None else self.keys[index], self.mask[index],
                      self.initial_state[:, index])


class Seq2Seq(nn.Module):
    """GRU encoder-decoder with optional global attention; follows `dldojo.text.decoding.Seq2SeqModel`."""

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, embed_dim: int, hidden_size: int,
                 num_layers: int = 1, bidirectional: bool = False, attention: str = "none", dropout: float = 0.1,
                 tie_embeddings: bool = False):
        super().__init__()
        self.encoder = Encoder(src_vocab_size, embed_dim, hidden_size, num_layers, bidirectional, dropout)
        memory_dim = hidden_size * (2 if bidirectional else 1)
        self.embedding = nn.Embedding(tgt_vocab_size, embed_dim, padding_idx=PAD)
        self.gru = nn.GRU(embed_dim, hidden_size, num_layers, batch_first=True,
                          dropout=dropout if num_layers > 1 else 0.0)
        self.attention = GlobalAttention(attention, hidden_size, memory_dim, hidden_size) \
            if attention != "none" else None
        self.combine = nn.Linear(hidden_size + memory_dim, hidden_size) if self.attention is not None else None
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, tgt_vocab_size)
        if tie_embeddings:
            self.out.weight = self.embedding.weight

    # --- the decoding protocol ---
    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> Memory:
        outputs, s0 = self.encoder(src, src_lengths)
        keys = self.attention.keys(outputs) if self.attention is not None else None
        return Memory(outputs, keys, src != PAD, s0)

    def decode_step(self, memory: Memory, prev_tokens: torch.Tensor, state: torch.Tensor | None):
        s = memory.initial_state if state is None else state
        logits, s, _ = self._decode(memory, prev_tokens[:, -1:], s)
        return F.log_softmax(logits[:, -1].float(), dim=-1), s

    def reorder(self, memory: Memory, state: torch.Tensor | None, index: torch.Tensor):
        return memory.select(index), (None if state is None else state[:, index])

    # --- training ---
    def _decode(self, memory: Memory, tokens: torch.Tensor, s: torch.Tensor):
        """Run the decoder over `tokens` (B, T) from state s -> logits (B, T, V), last state, attention."""
        states, s_last = self.gru(self.dropout(self.embedding(tokens)), s)
        alpha = None
        if self.attention is not None:
            context, alpha = self.attention(states, memory.keys, memory.outputs, memory.mask)
            states = torch.tanh(self.combine(torch.cat([states, context], dim=-1)))  # s̃_t
        return self.out(self.dropout(states)), s_last, alpha

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor):
        """Teacher-forced logits (B, T, V) and attention weights (B, T, S) or None."""
        memory = self.encode(src, src_lengths)
        logits, _, alpha = self._decode(memory, tgt_in, memory.initial_state)
        return logits, alpha


def make_model(cfg: Seq2SeqConfig, src_vocab_size: int, tgt_vocab_size: int) -> Seq2Seq:
    return Seq2Seq(src_vocab_size, tgt_vocab_size, cfg.embed_dim, cfg.hidden_size, cfg.num_layers,
                   cfg.bidirectional, cfg.attention, cfg.dropout, cfg.tie_embeddings)


def build_model(cfg: Seq2SeqConfig, run: LoadedRun) -> Seq2Seq:
    """The trained model's shape, for `dldojo translate` (the vocabulary sizes come from vocab.json)."""
    src_vocab, tgt_vocab, _ = decoding.load_vocabs(run)
    return make_model(cfg, len(src_vocab), len(tgt_vocab))


# ----- training loop -----

def learning_rate(cfg: Seq2SeqConfig, step: int, total_steps: int) -> float:
    """Linear warm-up ramp times a cosine over all steps, from lr to lr * final_lr_ratio at the last step."""
    from dldojo.engine import schedules
    return schedules.warmup_cosine(step, total_steps, cfg.warmup_steps, cfg.final_lr_ratio, cosine_over="all",
                                   lr=cfg.lr)


def mix_inputs(model: Seq2Seq, src, src_lengths, tgt_in: torch.Tensor, p_gold: float) -> torch.Tensor:
    """Parallel scheduled sampling: keep each gold input token with probability p_gold, else use the
    model's own greedy prediction of that position (from a teacher-forced pass without gradients)."""
    with torch.no_grad():
        logits, _ = model(src, src_lengths, tgt_in)
    predicted = torch.cat([tgt_in[:, :1], logits[:, :-1].argmax(-1)], dim=1)  # prediction of y_{t-1}
    keep = (torch.rand(tgt_in.shape) < p_gold) | (tgt_in == PAD)
    keep[:, 0] = True  # <bos> stays
    return torch.where(keep, tgt_in, predicted)


def evaluate_bleu(model: Seq2Seq, pairs, refs, tgt_vocab, cfg: Seq2SeqConfig, beam_width: int,
                  ctx: RunContext | None = None, what: str = "decoding"):
    """Corpus BLEU of the translations of `pairs`; with `ctx`, a progress bar `what` over the sentences."""
    return decoding.corpus_bleu_of(model, pairs, refs, tgt_vocab, cfg.eval_batch_size, beam_width,
                                   cfg.length_penalty, ctx=ctx, what=what)


def train_seq2seq(ctx: RunContext, cfg: Seq2SeqConfig) -> dict[str, float]:
    data = enja.load(cfg.direction, cfg.min_freq, cfg.max_train)
    dev, dev_refs = data.dev, data.dev_refs
    test, test_refs, test_src = data.test, data.test_refs, data.test_src_tokens
    if cfg.max_eval:
        dev, dev_refs = dev[:cfg.max_eval], dev_refs[:cfg.max_eval]
        test, test_refs, test_src = test[:cfg.max_eval], test_refs[:cfg.max_eval], test_src[:cfg.max_eval]
    decoding.save_vocabs(ctx, data)
    model = make_model(cfg, len(data.src_vocab), len(data.tgt_vocab))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_estimate = cfg.epochs * len(enja.token_batches(data.train, cfg.max_tokens, ctx.seed_for("batches"), 0))

    state = SimpleNamespace(model=model, optimizer=optimizer, epoch=0, batch_in_epoch=0, loss_sum=0.0,
                            token_count=0, train_seconds=0.0, train_tokens=0, epoch_states=[], history=[])
    step = ctx.restore(state)
    bar = ctx.progress(steps_estimate, initial=step)
    while state.epoch < cfg.epochs:
        batches = enja.token_batches(data.train, cfg.max_tokens, ctx.seed_for("batches"), state.epoch)
        model.train()
        epoch_done = False
        while not epoch_done:
            t0 = time.perf_counter()
            src, src_lengths, tgt_in, tgt_out = enja.collate(data.train, batches[state.batch_in_epoch])
            if cfg.teacher_forcing < 1:
                tgt_in = mix_inputs(model, src, src_lengths, tgt_in, cfg.teacher_forcing)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(cfg, step, steps_estimate)
            logits, _ = model(src, src_lengths, tgt_in)
            n_tokens = int((tgt_out != PAD).sum())
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1), ignore_index=PAD,
                                   label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            step += 1
            state.batch_in_epoch += 1
            loss_value = loss.item()
            ctx.check_finite(loss_value, step)
            ctx.log_sampled(step, steps_estimate, lr=optimizer.param_groups[0]["lr"])  # the schedule with its warm-up
            state.loss_sum += loss_value * n_tokens
            state.token_count += n_tokens
            state.train_seconds += time.perf_counter() - t0
            state.train_tokens += int((src != PAD).sum()) + n_tokens
            bar.update(1)
            bar.set_postfix(loss=f"{state.loss_sum / max(state.token_count, 1):.3f}", epoch=state.epoch + 1)
            epoch_done = state.batch_in_epoch == len(batches)
            if epoch_done:  # end of epoch: dev BLEU (greedy), log, keep weights to average
                model.eval()
                dev_bleu, _ = evaluate_bleu(model, dev, dev_refs, data.tgt_vocab, cfg, beam_width=1)
                record = {"epoch": state.epoch + 1, "train_loss": state.loss_sum / max(state.token_count, 1),
                          "dev_bleu": dev_bleu,
                          "train_tokens_per_second": state.train_tokens / max(state.train_seconds, 1e-9)}
                state.history.append(record)
                ctx.log(step, **record)
                if cfg.epochs - (state.epoch + 1) < cfg.average_last:
                    state.epoch_states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
                state.loss_sum, state.token_count = 0.0, 0
                state.epoch, state.batch_in_epoch = state.epoch + 1, 0
                model.train()
            ctx.tick(step, state)
    bar.close()

    if len(state.epoch_states) > 1:
        model.load_state_dict(decoding.average_state_dicts(state.epoch_states))
    model.eval()
    ctx.save_weights({k: v.clone() for k, v in model.state_dict().items()})  # tied weights: a copy each
    dev_bleu, _ = evaluate_bleu(model, dev, dev_refs, data.tgt_vocab, cfg, beam_width=1, ctx=ctx,
                                what="dev BLEU, greedy")
    test_greedy, greedy_hyps = evaluate_bleu(model, test, test_refs, data.tgt_vocab, cfg, beam_width=1, ctx=ctx,
                                             what="test BLEU, greedy")
    t0 = time.perf_counter()
    test_bleu, hyps = evaluate_bleu(model, test, test_refs, data.tgt_vocab, cfg, beam_width=cfg.beam_width, ctx=ctx,
                                    what=f"test BLEU, beam {cfg.beam_width}")
    ctx.add_timings(test_beam_seconds=time.perf_counter() - t0, train_seconds=state.train_seconds,
                    train_tokens_per_second=state.train_tokens / max(state.train_seconds, 1e-9))
    copy_baseline = sacrebleu_corpus([data.dev_src_tokens[i] for i in range(len(dev))], dev_refs)
    metrics = {"test_bleu": test_bleu, "test_bleu_greedy": test_greedy, "dev_bleu": dev_bleu,
               "dev_bleu_copy_source": copy_baseline, "test_bleu_teaching": corpus_bleu(hyps, test_refs)}
    report(ctx, cfg, model, data, test, test_src, test_refs, hyps, greedy_hyps, state.history, metrics)
    return metrics


# ----- report -----

def report(ctx: RunContext, cfg: Seq2SeqConfig, model: Seq2Seq, data: enja.ParallelData, test, test_src, test_refs,
           hyps, greedy_hyps, history, metrics) -> None:
    ctx.save_table("bleu", [
        {"what": f"test BLEU, beam {cfg.beam_width}, length penalty {cfg.length_penalty}",
         "sacrebleu": metrics["test_bleu"], "teaching corpus_bleu": metrics["test_bleu_teaching"]},
        {"what": "test BLEU, greedy", "sacrebleu": metrics["test_bleu_greedy"], "teaching corpus_bleu": ""},
        {"what": "dev BLEU, greedy (final weights)", "sacrebleu": metrics["dev_bleu"], "teaching corpus_bleu": ""},
        {"what": "dev BLEU of copying the source (baseline)", "sacrebleu": metrics["dev_bleu_copy_source"],
         "teaching corpus_bleu": ""},
    ], "Corpus BLEU by sacrebleu with tokenize='none': the data are pre-tokenized (English: Stanford tokenizer, "
       "lowercased; Japanese: KyTea), so n-grams are over those tokens. The teaching implementation "
       "(dldojo.metrics.bleu.corpus_bleu) must agree with sacrebleu.")
    ctx.save_table("dev_bleu_per_epoch", [{"epoch": int(r["epoch"]), "train_loss": r["train_loss"],
                                           "dev_bleu (greedy)": r["dev_bleu"]} for r in history],
                   "Dev BLEU after each epoch (greedy decoding, weights of that epoch).")
    rows = [{"source": " ".join(test_src[i]), "reference": " ".join(test_refs[i]),
             f"beam {cfg.beam_width}": " ".join(hyps[i]), "greedy": " ".join(greedy_hyps[i])}
            for i in range(min(10, len(test)))]
    ctx.save_table("sample_translations", rows, "The first test sentences.")
    if model.attention is not None and cfg.heatmaps > 0:
        save_heatmaps(ctx, model, data, test, test_src, hyps, cfg.heatmaps)


def save_heatmaps(ctx: RunContext, model: Seq2Seq, data: enja.ParallelData, test, test_src, hyps, count: int) -> None:
    """α_ts of the model reading its own (beam) translation: rows = output tokens, columns = source tokens."""
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    japanese_fonts = [f.name for f in font_manager.fontManager.ttflist
                      if any(k in f.name for k in ("Noto Sans CJK", "IPAexGothic", "IPAGothic", "TakaoGothic"))]
    picks = [i for i in range(len(test)) if hyps[i]][:count]
    if not picks:
        return
    fig, axes = plt.subplots(1, len(picks), figsize=(4.5 * len(picks), 4.8), squeeze=False)
    rows = []
    for ax, i in zip(axes[0], picks):
        src_ids = test[i][0]
        out_ids = data.tgt_vocab.encode(hyps[i])
        src, src_lengths, tgt_in, _ = enja.collate([(src_ids, out_ids)], [0])
        with torch.no_grad():
            _, alpha = model(src, src_lengths, tgt_in)
        ax.imshow(alpha[0].numpy(), cmap="viridis", aspect="auto", vmin=0, vmax=1)
        src_tokens = [t if t in data.src_vocab.stoi else "<unk>" for t in test_src[i]]
        out_tokens = hyps[i] + ["<eos>"]
        ax.set_xticks(range(len(src_tokens)), _printable(src_tokens, bool(japanese_fonts)), rotation=90, fontsize=8)
        ax.set_yticks(range(len(out_tokens)), _printable(out_tokens, bool(japanese_fonts)), fontsize=8)
        if japanese_fonts:
            for label in ax.get_yticklabels() + ax.get_xticklabels():
                label.set_fontfamily(japanese_fonts[0])
        ax.set_title(f"test sentence {i + 1}", fontsize=9)
        rows.append({"test sentence": i + 1, "source (columns)": _numbered(src_tokens),
                     "output (rows)": _numbered(out_tokens)})
    fig.suptitle("Attention weights α (rows: generated tokens, columns: source tokens)")
    fig.tight_layout()
    ctx.save_figure(fig, "attention_heatmaps")
    ctx.save_table("attention_heatmap_tokens", rows, "Tokens of the heat-map axes, numbered; Japanese tokens are "
                                                     "shown by number in the figure when no CJK font is installed.")


def _numbered(tokens: list[str]) -> str:
    return " ".join(f"{k + 1}:{t}" for k, t in enumerate(tokens))


def _printable(tokens: list[str], has_cjk_font: bool) -> list[str]:
    """Without a CJK font matplotlib draws empty boxes: label non-ASCII tokens by their position instead."""
    if has_cjk_font:
        return tokens
    return [t if t.isascii() else f"#{k + 1}" for k, t in enumerate(tokens)]


# ----- registration -----

PAPERS = ("Sutskever, Vinyals & Le 2014, Sequence to Sequence Learning with Neural Networks; Cho et al. 2014, "
          "Learning Phrase Representations using RNN Encoder-Decoder")
COURSE_REF = Reference(17.89, "course material: GRU seq2seq, hidden 256, 10 epochs on a GPU", "en→ja test BLEU",
                       metric="test_bleu")
SMOKE = {"max_train": 400, "max_eval": 20, "epochs": 2, "embed_dim": 32, "hidden_size": 32, "max_tokens": 600,
         "beam_width": 2, "min_freq": 1, "warmup_steps": 5, "heatmaps": 2}
# each smoke preset takes the code paths of its full preset (the generic resume test checks them)

register(Experiment(
    name="seq2seq-gru",
    topic="Sequence-to-sequence translation: GRU encoder-decoder, teacher forcing, beam search, BLEU (en→ja)",
    paper=PAPERS,
    config_cls=Seq2SeqConfig,
    presets={
        "smoke": {**SMOKE, "teacher_forcing": 0.9},
        "quick": {"max_train": 15000, "epochs": 2, "lr": 2e-3, "warmup_steps": 100},
        "full": {"epochs": 10, "teacher_forcing": 0.9},
    },
    run=train_seq2seq, build_model=build_model, metric="test_bleu", direction="max",
    datasets=("small_parallel_enja",), references=(COURSE_REF,), family="text", threads=2,
))

ATTN_DEFAULTS = {"attention": "additive", "bidirectional": True}
register(Experiment(
    name="seq2seq-attn",
    topic="Sequence-to-sequence translation with attention (additive / Bahdanau or dot / Luong), "
          "beam search, BLEU (en→ja)",
    paper=PAPERS + "; Bahdanau, Cho & Bengio 2015, Neural Machine Translation by Jointly Learning to Align and "
                   "Translate; Luong, Pham & Manning 2015, Effective Approaches to Attention-based NMT",
    config_cls=Seq2SeqConfig,
    presets={
        "smoke": {**ATTN_DEFAULTS, **SMOKE, "label_smoothing": 0.1, "dropout": 0.2, "final_lr_ratio": 0.05,
                  "average_last": 2},
        "quick": {**ATTN_DEFAULTS, "max_train": 15000, "epochs": 2, "lr": 2e-3, "warmup_steps": 100},
        "full": {**ATTN_DEFAULTS, "epochs": 8, "label_smoothing": 0.1, "dropout": 0.2, "lr": 2e-3,
                 "warmup_steps": 300, "final_lr_ratio": 0.05, "average_last": 2},
    },
    run=train_seq2seq, build_model=build_model, metric="test_bleu", direction="max",
    datasets=("small_parallel_enja",), references=(COURSE_REF,), target=22.0, family="text", threads=2,
))

