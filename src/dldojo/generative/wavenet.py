"""`wavenet-fsdd`: WaveNet, an autoregressive model of raw audio, on spoken digits, and fast generation.

Curriculum: 深層生成モデル — WaveNet (拡張因果畳み込み, ゲート付き活性化, 残差接続とスキップ接続, μ-law 量子化)
(JDLA E資格). Papers: van den Oord et al. 2016, "WaveNet: A Generative Model for Raw Audio" (arXiv:1609.03499);
Paine et al. 2016, "Fast Wavenet Generation Algorithm" (arXiv:1611.09482); μ-law: ITU-T G.711.

The model factorises a waveform x = (x_1 … x_T) into one-step-ahead predictions, conditioned on the digit y:

    p(x | y) = Π_t p(x_t | x_1 … x_{t−1}, y)

μ-law. Samples in [−1, 1] are companded, F(x) = sign(x) ln(1 + μ|x|) / ln(1 + μ) with μ = 255, and F(x) is
quantised to 256 classes, c = ⌊(F(x) + 1) / 2 · μ + ½⌋ (`mu_law_encode`; `mu_law_decode` inverts F at the
class's level). Each p(x_t | …) is a 256-way softmax: −log₂ of it is the cost of the sample in bits,
so a model that knows nothing pays log₂ 256 = 8 bits per sample.

Network (`WaveNet`). The previous samples, one-hot, go through a causal convolution of width 2, then through
`stacks` × `layers_per_stack` residual layers with dilations 1, 2, 4, …, 2^(layers_per_stack − 1) (repeated per
stack; 10 layers give 1 … 512). Layer k, input h (R channels), digit embedding V_k (global conditioning added
inside both gates):

    z = tanh(W_f,k ∗_d h + V_f,k y) ⊙ σ(W_g,k ∗_d h + V_g,k y)       (∗_d: causal convolution, width 2, dilation d)
    h ← h + W_r,k z  (1×1, residual)            skip_k = W_s,k z  (1×1, to S channels)

and the output is softmax(W_2 ReLU(W_1 ReLU(Σ_k skip_k))) over the 256 classes. A causal convolution pads on
the left only, so the output at t never sees an input after t (tested bit for bit). The receptive field — how
many past samples one prediction sees — is (2 − 1) + Σ_k (2 − 1) d_k + 1 = 2 + Σ_k d_k samples
(`receptive_field`): 2,048 samples (256 ms at 8 kHz) for two stacks of 1 … 512; the run also measures it,
as the span of inputs with a non-zero gradient of one output.

Data (`load_fsdd`): the Free Spoken Digit Dataset (dldojo.data.audio): 2,700 training and 300 test recordings
at 8 kHz (official split). The publisher trimmed the silence at both ends, so nothing is trimmed here; the
16-bit samples are divided by 32,768 and μ-law encoded, with no loudness normalisation. Every recording is
preceded by receptive-field many samples of silence (class 128, F(0)), so that its first samples are predicted
from silence as at generation time. Training is teacher forcing: an epoch visits every training recording once
in a random order, `batch_size` recordings per Adam step; a recording longer than `max_target_samples`
contributes a random span of that many samples, predicted from its real preceding context. The loss is the mean
cross-entropy over the predicted samples, reported in bits.

Evaluation: `test_nll_bits` = the mean of −log₂ p(x_t | x_<t, y) over every sample of the test recordings
(all 300, or the first `test_recordings` in (index, digit, speaker) order: 60 = index 0 of every digit and
speaker), each predicted from silence before its start; every `eval_every` steps for the curve, and for the
last model, which is the one reported. `train_nll_bits` is the same on the first 60 training recordings (index 5
of every digit and speaker). `test_nll_bits_unigram` is the baseline that ignores the past: the training set's
μ-law class frequencies (add-one smoothed) scored on the same test samples.

Generation (`generate_naive`, `generate_fast`): x_t is drawn from p(x_t | x_<t, y) by inverting its CDF at a
uniform number u_t taken from a seeded stream, starting from receptive-field many samples of silence. The naive
generator recomputes the whole network over the last receptive field for every new sample; the fast one (Paine
et al.) keeps, for the layer of dilation d, a queue of its last d inputs, so that each new sample costs one
column per layer: the same numbers, without recomputation. Both produce the same sequence for the same u (the
run checks it on `naive_samples` samples and reports the measured speed-up). Generated audio: one clip of
`generate_seconds` per digit by the fast generator, written as WAV files into the run directory and played in
the report, next to a real test recording of the same digit, with their waveforms and spectrograms.

Presets. quick: one cycle of dilations 1 … 512 (receptive field 1,025 samples = 128 ms: a step costs ~2.5×
less than with two cycles), Adam lr 1e-2 decayed to 0 on a cosine, as many steps of 4 recordings as fit 1.4
minutes with everything else (`engine.budget`), the test NLL on the first 60 test recordings, clips of 0.5 s.
full: the paper's repeated cycle, 1 … 512 twice (receptive field 2,048 = 256 ms), lr 3e-3 on a cosine over 2,400
steps of 4 recordings (≈ 3.6 epochs), the test NLL on all 300 test recordings (every 400 steps for the curve),
clips of 1 s. The length of the clips is what the fast generator affords: a step of the 10 clips costs about a
millisecond here, so a second of audio (8,000 steps) takes seconds; the naive generator would take minutes
(it is timed on `naive_samples` samples only).
Measured (`python benchmarks/run.py wavenet-fsdd --preset quick`, seed 0, 2 threads, AMD EPYC Zen 2 with AVX2
only, commit de62e15, 74 s of wall, results/wavenet-fsdd-quick.json): 276 steps, test 5.39 bits per sample (train
5.39; unigram baseline 7.17); naive generation 11.9 ms and fast 0.80 ms per sample (15.0× faster, identical
samples). The quick model's clips
are noise under a loudness envelope (see the spectrograms), not yet words. The full preset has not been run here yet.

Reference numbers: the WaveNet paper reports no likelihood on this data (its speech results are listening
tests); the comparison here is with the 8 bits of the uniform distribution and with the unigram baseline.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dldojo.data import audio as audio_data
from dldojo.engine import budget
from dldojo.engine.errors import DojoError
from dldojo.engine.registry import Experiment, Reference, register
from dldojo.engine.reload import LoadedRun
from dldojo.engine.run import RunContext
from dldojo.engine.schedules import warmup_cosine

MU = 255
NUM_CLASSES = MU + 1
NUM_DIGITS = 10
SAMPLE_RATE = audio_data.SAMPLE_RATE
LN2 = math.log(2)
TRAIN_PROBE = 60  # `train_nll_bits`: the first 60 training recordings (index 5 of every digit and speaker)


# ----- μ-law (ITU-T G.711, continuous form) -----

def mu_law_compand(x: torch.Tensor, mu: int = MU) -> torch.Tensor:
    """F(x) = sign(x) ln(1 + μ|x|) / ln(1 + μ): [−1, 1] → [−1, 1], fine steps near 0, coarse ones near ±1."""
    return torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)


def mu_law_expand(y: torch.Tensor, mu: int = MU) -> torch.Tensor:
    """F⁻¹(y) = sign(y) ((1 + μ)^|y| − 1) / μ."""
    return torch.sign(y) * torch.expm1(y.abs() * math.log1p(mu)) / mu


def mu_law_encode(x: torch.Tensor, mu: int = MU) -> torch.Tensor:
    """x in [−1, 1] → classes 0 … μ: c = ⌊(F(x) + 1) / 2 · μ + ½⌋ (F(x) rounded to the nearest of μ + 1 levels)."""
    return torch.floor((mu_law_compand(x.double().clamp(-1.0, 1.0), mu) + 1) / 2 * mu + 0.5).long()


def mu_law_decode(c: torch.Tensor, mu: int = MU) -> torch.Tensor:
    """Classes 0 … μ → x in [−1, 1] (float32): F⁻¹ at the level of the class, y = 2c / μ − 1."""
    return mu_law_expand(2 * c.double() / mu - 1, mu).float()


SILENCE = int(mu_law_encode(torch.zeros(())))  # 128: the class of x = 0


@dataclasses.dataclass
class WaveNetConfig:
    RANGES: ClassVar[dict] = {
        "residual_channels": (1, 1024), "gate_channels": (1, 1024), "skip_channels": (1, 4096),
        "layers_per_stack": (1, 14), "stacks": (1, 8), "steps": (1, 10**7), "batch_size": (1, 2700),
        "max_target_samples": (1, 10**6), "lr": (1e-7, 1.0), "grad_clip": (0, 10**6), "train_recordings": (0, 2700),
        "test_recordings": (0, 300), "eval_every": (0, 10**7), "log_points": (1, 10**5),
        "generate_seconds": (0.05, 10.0), "naive_samples": (1, 10**4), "time_budget_minutes": (0, 10**5)}
    """Allowed (low, high) of the numeric fields, checked before anything is created (`engine.config`)."""

    residual_channels: int = 32
    """R: channels of the residual stream h (the input causal convolution's output)."""
    gate_channels: int = 32
    """Channels of each gate's tanh and σ halves (the dilated convolution outputs twice this many)."""
    skip_channels: int = 128
    """S: channels of every skip connection and of the output head's hidden layer."""
    layers_per_stack: int = 10
    """Residual layers per stack, with dilations 1, 2, 4, …, 2^(layers_per_stack − 1) (10: 1 … 512)."""
    stacks: int = 2
    """How often the dilation cycle is repeated (the receptive field is 2 + stacks · (2^layers_per_stack − 1))."""
    steps: int = 2400
    """Adam steps (batches of recordings); with a time budget, the most that may be trained."""
    batch_size: int = 4
    """Training recordings per Adam step."""
    max_target_samples: int = 2048
    """A longer training recording contributes a random span of this many predicted samples (its real context
    before the span is still seen)."""
    lr: float = 3e-3
    """Adam learning rate."""
    lr_schedule: Literal["constant", "cosine"] = "constant"
    """'constant', or 'cosine': the learning rate decays from `lr` to 0 over the training steps."""
    grad_clip: float = 1.0
    """Clip the gradient's global norm to this value before each step; 0 = off."""
    train_recordings: int = 0
    """Training recordings used, the first ones in (index, digit, speaker) order (0 = all 2,700)."""
    test_recordings: int = 0
    """Test recordings the NLL is reported on, the first ones in (index, digit, speaker) order (0 = all 300;
    60 = index 0 of every digit and speaker)."""
    eval_every: int = 0
    """Steps between test-NLL evaluations for the learning curve; 0 = only at the end."""
    log_points: int = 100
    """Points of the training curve (running mean of the training NLL between two points)."""
    generate_seconds: float = 1.0
    """Length of the generated clip per digit (fast generator), in seconds at 8 kHz."""
    naive_samples: int = 200
    """Samples generated by both the naive and the fast generator (one digit) to check that they agree and
    to time them."""
    time_budget_minutes: float = 0.0
    """Train as many steps (at most `steps`) as fit this many minutes on this machine, evaluation and
    generation included (`engine.budget`); 0 = train exactly `steps`."""

    def validate(self) -> None:
        if self.train_recordings and self.train_recordings < self.batch_size:
            raise DojoError(f"train_recordings {self.train_recordings} is smaller than one batch ({self.batch_size}).")


def dilations(cfg: WaveNetConfig) -> list[int]:
    """1, 2, …, 2^(layers_per_stack − 1), repeated `stacks` times."""
    return [2 ** i for i in range(cfg.layers_per_stack)] * cfg.stacks


def receptive_field(dilation_list: list[int], kernel_size: int = 2, input_kernel_size: int = 2) -> int:
    """Past samples one prediction sees: (input_kernel − 1) + Σ_k (kernel − 1) d_k + 1."""
    return (input_kernel_size - 1) + sum((kernel_size - 1) * d for d in dilation_list) + 1


# ----- the model -----

class ResidualLayer(nn.Module):
    """z = tanh(W_f ∗_d h + V_f y) ⊙ σ(W_g ∗_d h + V_g y); returns (h + W_r z, W_s z)."""

    def __init__(self, residual: int, gate: int, skip: int, dilation: int):
        super().__init__()
        self.dilation = dilation
        self.dilated = nn.Conv1d(residual, 2 * gate, kernel_size=2, dilation=dilation)  # [W_f; W_g]
        self.condition = nn.Embedding(NUM_DIGITS, 2 * gate)                            # [V_f; V_g] y
        self.residual = nn.Conv1d(gate, residual, 1)
        self.skip = nn.Conv1d(gate, skip, 1)

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h (B, R, T), y (B,) digits → (B, R, T), (B, S, T). Left padding by d keeps it causal."""
        a = self.dilated(F.pad(h, (self.dilation, 0))) + self.condition(y)[:, :, None]
        f, g = a.chunk(2, dim=1)
        z = torch.tanh(f) * torch.sigmoid(g)
        return h + self.residual(z), self.skip(z)


class WaveNet(nn.Module):
    """p(x_t | x_<t, y): one-hot inputs → causal conv (width 2) → residual layers → ReLU, 1×1, ReLU, 1×1 → logits."""

    def __init__(self, cfg: WaveNetConfig):
        super().__init__()
        self.dilations = dilations(cfg)
        self.receptive_field = receptive_field(self.dilations)
        self.sample_length = round(cfg.generate_seconds * SAMPLE_RATE)  # what `sample_audio` generates
        self.causal = nn.Conv1d(NUM_CLASSES, cfg.residual_channels, kernel_size=2)
        self.layers = nn.ModuleList(ResidualLayer(cfg.residual_channels, cfg.gate_channels, cfg.skip_channels, d)
                                    for d in self.dilations)
        self.head1 = nn.Conv1d(cfg.skip_channels, cfg.skip_channels, 1)
        self.head2 = nn.Conv1d(cfg.skip_channels, NUM_CLASSES, 1)

    def forward_onehot(self, x: torch.Tensor, y: torch.Tensor, layer_inputs: list | None = None) -> torch.Tensor:
        """x (B, 256, T) one-hot (or any real values, for gradients), y (B,) → logits (B, 256, T); the logits at t
        depend on x at t and before only. Appends every layer's input h to `layer_inputs` when given."""
        h = self.causal(F.pad(x, (1, 0)))
        skips = 0
        for layer in self.layers:
            if layer_inputs is not None:
                layer_inputs.append(h)
            h, skip = layer(h, y)
            skips = skips + skip
        return self.head2(F.relu(self.head1(F.relu(skips))))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x (B, T) classes, y (B,) digits → logits (B, 256, T); logits[:, :, t] is the distribution of the sample
        after x[:, t]."""
        return self.forward_onehot(F.one_hot(x, NUM_CLASSES).transpose(1, 2).float(), y)


def build_model(cfg: WaveNetConfig, run: LoadedRun | None = None) -> WaveNet:
    return WaveNet(cfg)


# ----- generation -----

def sample_class(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Draw one class per row of `logits` (B, 256) by inverting the softmax's CDF at u (B,) in [0, 1)."""
    cdf = torch.softmax(logits.double(), dim=-1).cumsum(-1)
    return torch.searchsorted(cdf, (u.double() * cdf[:, -1])[:, None]).squeeze(1).clamp_(max=NUM_CLASSES - 1)


def silence(batch: int, length: int) -> torch.Tensor:
    return torch.full((batch, length), SILENCE, dtype=torch.long)


@torch.inference_mode()
def generate_naive(model: WaveNet, y: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """(B, n) classes: every new sample runs the whole network over the last receptive field of samples
    (silence before the start) and keeps only the last output."""
    rf = model.receptive_field
    x = silence(len(y), rf)
    for t in range(uniforms.shape[1]):
        logits = model(x[:, -rf:], y)[:, :, -1]
        x = torch.cat([x, sample_class(logits, uniforms[:, t])[:, None]], dim=1)
    return x[:, rf:]


@torch.inference_mode()
def generate_fast(model: WaveNet, y: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """(B, n) classes, the same as `generate_naive` for the same uniforms (Paine et al. 2016): the layer of
    dilation d keeps a queue of its last d inputs, so a step computes one column per layer.

    The queues are filled once by running the network over the silence before the start (all but its last
    sample). Then each step feeds the latest sample: the input convolution needs the previous and the current
    sample; the layer of dilation d needs its input from d steps ago, the queue's oldest entry (slot t mod d of
    a ring buffer), which the current input then replaces. A width-2 convolution at one time step is one matrix
    product, [h_{t−d}, h_t] · [W_tap0; W_tap1], and the skip sum Σ_k W_s,k z_k is one product of all layers' z."""
    rf, batch = model.receptive_field, len(y)
    history = silence(batch, rf)
    inputs: list[torch.Tensor] = []
    model.forward_onehot(F.one_hot(history[:, :-1], NUM_CLASSES).transpose(1, 2).float(), y, inputs)
    queues = [h[:, :, -layer.dilation:].transpose(1, 2).contiguous() for h, layer in zip(inputs, model.layers)]
    residual, gate = model.causal.out_channels, model.layers[0].residual.in_channels
    # the per-step weights as (in, out) matrices
    w_in, b_in = model.causal.weight, model.causal.bias  # (R, 256, 2): a one-hot input selects a column
    gates = [(torch.cat([layer.dilated.weight[:, :, 0].T, layer.dilated.weight[:, :, 1].T]).contiguous(),
              layer.dilated.bias + layer.condition(y)) for layer in model.layers]
    residuals = [(layer.residual.weight[:, :, 0].T.contiguous(), layer.residual.bias) for layer in model.layers]
    w_skip = torch.cat([layer.skip.weight[:, :, 0].T for layer in model.layers]).contiguous()  # (layers · G, S)
    b_skip = sum(layer.skip.bias for layer in model.layers)
    both = torch.empty(batch, 2 * residual)                # [h_{t−d}, h_t] of the current layer
    z = torch.empty(batch, len(model.layers) * gate)      # every layer's gate output, for the skip product
    previous, current = history[:, -2], history[:, -1]
    out = torch.empty(uniforms.shape, dtype=torch.long)
    for t in range(uniforms.shape[1]):
        h = w_in[:, previous, 0].T + w_in[:, current, 1].T + b_in  # (B, R)
        for k, (queue, layer) in enumerate(zip(queues, model.layers)):
            slot = t % layer.dilation
            both[:, :residual] = queue[:, slot]                       # h_{t−d}
            both[:, residual:] = h
            queue[:, slot] = h
            (w_gate, b_gate), (w_res, b_res) = gates[k], residuals[k]
            a = torch.addmm(b_gate, both, w_gate)
            z_k = z[:, k * gate:(k + 1) * gate]
            torch.mul(torch.tanh(a[:, :gate]), torch.sigmoid(a[:, gate:]), out=z_k)
            h = torch.addmm(h + b_res, z_k, w_res)
        skips = torch.addmm(b_skip, z, w_skip)
        hidden = F.relu(F.linear(F.relu(skips), model.head1.weight[:, :, 0], model.head1.bias))
        logits = F.linear(hidden, model.head2.weight[:, :, 0], model.head2.bias)
        previous, current = current, sample_class(logits, uniforms[:, t])
        out[:, t] = current
    return out


def digits_for(n: int, label: int | None) -> torch.Tensor:
    """`label` n times, or the digits 0 … 9 in turn."""
    if label is not None and not 0 <= label < NUM_DIGITS:
        raise DojoError(f"label must be a digit 0..{NUM_DIGITS - 1}, got {label}")
    return torch.full((n,), label) if label is not None else torch.arange(n) % NUM_DIGITS


def sample_audio(model: WaveNet, n: int, *, label: int | None, generator: torch.Generator
                 ) -> tuple[torch.Tensor, int]:
    """n clips of `generate_seconds` from the fast generator: waveforms (n, T) in [−1, 1] and the sample rate.
    Digit `label`, or with label None the digits 0 … 9 in turn. The family's convention for `dldojo sample`."""
    y = digits_for(n, label)
    uniforms = torch.rand((n, model.sample_length), generator=generator)
    was_training = model.training
    model.eval()
    classes = generate_fast(model, y, uniforms)
    model.train(was_training)
    return mu_law_decode(classes), SAMPLE_RATE


# ----- data -----

@dataclasses.dataclass
class Recordings:
    """μ-law classes of every recording (uint8, different lengths) and their digits."""

    classes: list[torch.Tensor]
    digits: torch.Tensor
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.classes)


def encode_split(split: audio_data.AudioSplit) -> Recordings:
    classes = [mu_law_encode(torch.from_numpy(w.astype(np.float32) / 32768.0)).to(torch.uint8) for w in split.waveforms]
    return Recordings(classes, torch.as_tensor(split.digits), split.names)


def load_fsdd(cfg: WaveNetConfig) -> tuple[Recordings, Recordings, audio_data.AudioSplit]:
    """(train, test) μ-law recordings, and the whole raw test split (the report plays a real clip of every digit)."""
    train, test_all = audio_data.load("fsdd")
    train, test = train.head(cfg.train_recordings), test_all.head(cfg.test_recordings)
    if cfg.batch_size > len(train):
        raise DojoError(f"batch_size {cfg.batch_size} exceeds the {len(train)} training recordings; lower it")
    return encode_split(train), encode_split(test), test_all


def make_batch(recordings: list[torch.Tensor], starts: list[int], lengths: list[int], rf: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (B, rf − 1 + L_max) and targets (B, L_max) for predicting x[s : s + L] of every recording x: the
    inputs are (silence × rf, x)[s : s + rf − 1 + L], so the output at input position rf − 1 + i (the last L)
    predicts x[s + i] from the rf samples before it. Shorter rows are padded (targets −100: ignored)."""
    width = max(lengths)
    inputs = silence(len(recordings), rf - 1 + width)
    targets = torch.full((len(recordings), width), -100, dtype=torch.long)
    for row, (x, s, n) in enumerate(zip(recordings, starts, lengths)):
        padded = torch.cat([silence(1, rf)[0], x.long()])
        inputs[row, :rf - 1 + n] = padded[s:s + rf - 1 + n]
        targets[row, :n] = x[s:s + n].long()
    return inputs, targets


def nll_nats(model: WaveNet, inputs: torch.Tensor, targets: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample −ln p(x_t | x_<t, y) (B, L), 0 where the target is padding."""
    logits = model(inputs, y)[:, :, model.receptive_field - 1:]
    return F.cross_entropy(logits, targets, ignore_index=-100, reduction="none")


def training_batch(train: Recordings, index: torch.Tensor, cfg: WaveNetConfig, rf: int, crops: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    recordings = [train.classes[int(i)] for i in index]
    starts, lengths = [], []
    for x in recordings:
        extra = len(x) - cfg.max_target_samples
        starts.append(int(torch.randint(extra + 1, (1,), generator=crops)) if extra > 0 else 0)
        lengths.append(min(len(x), cfg.max_target_samples))
    inputs, targets = make_batch(recordings, starts, lengths, rf)
    return inputs, targets, train.digits[index]


# ----- evaluation -----

@torch.no_grad()
def evaluate(model: WaveNet, data: Recordings, batch_size: int = 8) -> torch.Tensor:
    """Per recording: the sum of −log₂ p(x_t | x_<t, y) over all its samples (each from silence before its start).
    Batches of similar lengths (sorted), so that little is padding."""
    was_training = model.training
    model.eval()
    bits = torch.zeros(len(data), dtype=torch.float64)
    order = sorted(range(len(data)), key=lambda i: len(data.classes[i]))
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        recordings = [data.classes[i] for i in index]
        inputs, targets = make_batch(recordings, [0] * len(index), [len(x) for x in recordings], model.receptive_field)
        nll = nll_nats(model, inputs, targets, data.digits[index])
        bits[index] = nll.double().sum(1) / LN2
    model.train(was_training)
    return bits


def unigram_bits(train: Recordings, test: Recordings) -> float:
    """Mean −log₂ q(x_t) of the test samples under the training set's class frequencies q (add-one smoothed)."""
    counts = torch.bincount(torch.cat([x.long() for x in train.classes]), minlength=NUM_CLASSES).double() + 1
    log_q = torch.log2(counts / counts.sum())
    test_classes = torch.cat([x.long() for x in test.classes])
    return float(-log_q[test_classes].mean())


def measured_receptive_field(model: WaveNet, y: torch.Tensor | None = None) -> tuple[int, np.ndarray]:
    """(span, |gradient| per lag): the inputs that one output depends on, found by backpropagating the output's
    logits at position t of a random input of length 3 · receptive field to the one-hot inputs."""
    length = 3 * model.receptive_field
    generator = torch.Generator().manual_seed(0)
    x = F.one_hot(torch.randint(NUM_CLASSES, (1, length), generator=generator), NUM_CLASSES).transpose(1, 2).float()
    x.requires_grad_(True)
    y = torch.zeros(1, dtype=torch.long) if y is None else y
    t = length - model.receptive_field // 2  # later inputs exist too: they must get no gradient
    model.forward_onehot(x, y)[0, :, t].sum().backward()
    per_position = x.grad[0].abs().sum(0)
    nonzero = torch.nonzero(per_position).flatten()
    span = int(t - nonzero.min() + 1) if len(nonzero) and int(nonzero.max()) <= t else -1
    return span, per_position[:t + 1].flip(0).numpy()  # lag 0 = position t


# ----- the time budget -----

def budgeted_steps(ctx: RunContext, cfg: WaveNetConfig, train: Recordings, test: Recordings, elapsed: float) -> int:
    """The steps (at most cfg.steps) that fit `time_budget_minutes`: a training step, a test pass and the
    generation timed on a throwaway copy (engine/budget.py, with one step as its "epoch")."""
    trial = WaveNet(cfg)
    optimizer = torch.optim.Adam(trial.parameters(), cfg.lr)
    generator = torch.Generator().manual_seed(0)
    batches = [training_batch(train, torch.randperm(len(train), generator=generator)[:cfg.batch_size], cfg,
                              trial.receptive_field, generator) for _ in range(4)]
    cycle = itertools.cycle(batches)

    def step() -> None:
        inputs, targets, y = next(cycle)
        nll = nll_nats(trial, inputs, targets, y)
        loss = nll.sum() / (targets >= 0).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def positions(data: Recordings) -> int:  # what an evaluation computes
        return sum(len(x) + trial.receptive_field for x in data.classes)

    def fast(steps: int) -> float:
        return budget.seconds_per_call(lambda: generate_fast(trial, y, torch.rand(NUM_DIGITS, steps)), calls=1)

    started = time.perf_counter()
    step_seconds = budget.seconds_per_call(step)
    probe = Recordings(test.classes[:8], test.digits[:8], test.names[:8])
    test_seconds = budget.seconds_per_call(lambda: evaluate(trial, probe), calls=1) * positions(test) / positions(probe)
    y = torch.arange(NUM_DIGITS)
    fast_seconds = (fast(120) - fast(20)) / 100  # per step, without the priming pass
    naive_seconds = budget.seconds_per_call(lambda: generate_naive(trial, y[:1], torch.rand(1, 3)), calls=1) / 3
    elapsed += time.perf_counter() - started
    generation = fast_seconds * round(cfg.generate_seconds * SAMPLE_RATE) + naive_seconds * cfg.naive_samples
    train_probe = Recordings(train.classes[:TRAIN_PROBE], train.digits[:TRAIN_PROBE], train.names[:TRAIN_PROBE])
    steps = budget.epochs_within(60 * cfg.time_budget_minutes, elapsed, epoch_seconds=step_seconds, cap=cfg.steps,
                                 eval_seconds=test_seconds, eval_every=cfg.eval_every or 0.0,
                                 final_seconds=test_seconds * (1 + positions(train_probe) / positions(test))
                                 + generation + 2.0 * fast_seconds * cfg.naive_samples)
    steps = max(1, int(steps))
    if not ctx.quiet:
        print(f"[dldojo] time budget {cfg.time_budget_minutes:g} min: {steps} of at most {cfg.steps} steps "
              f"({step_seconds:.2f} s per step, {test_seconds:.1f} s per test pass, {generation:.0f} s of generation; "
              f"{'periodic evaluations included; ' if cfg.eval_every else ''}{elapsed:.0f} s spent so far)", flush=True)
    return steps


# ----- figures -----

def spectrogram_db(waveform: torch.Tensor) -> np.ndarray:
    """|STFT|² in dB (Hann window of 256 samples = 32 ms, hop 64), frequencies × frames."""
    spec = torch.stft(waveform.float(), n_fft=256, hop_length=64, window=torch.hann_window(256), return_complex=True)
    return (10 * torch.log10(spec.abs().pow(2) + 1e-10)).numpy()


def save_audio_figure(ctx: RunContext, generated: torch.Tensor, real: dict[int, tuple[str, np.ndarray]]) -> None:
    """Per digit: the generated clip and a real test recording, waveform and spectrogram side by side (one time
    axis per row)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(NUM_DIGITS, 4, figsize=(14, 1.3 * NUM_DIGITS), squeeze=False)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.04, top=0.96, wspace=0.12, hspace=0.35)
    for d in range(NUM_DIGITS):
        clips = [("generated", generated[d], "C0")]
        if d in real:
            clips.append((f"real {real[d][0]}", torch.from_numpy(real[d][1].astype(np.float32) / 32768), "C2"))
        seconds = max(len(clip) for _, clip, _ in clips) / SAMPLE_RATE
        for c, (what, clip, colour) in enumerate(clips):
            axes[d, 2 * c].plot(np.arange(len(clip)) / SAMPLE_RATE, clip.numpy(), lw=0.4, color=colour)
            axes[d, 2 * c].set(ylim=(-1, 1), yticks=[-1, 0, 1])
            axes[d, 2 * c].text(0.99, 0.92, what, transform=axes[d, 2 * c].transAxes, ha="right", va="top", fontsize=7)
            spec = spectrogram_db(clip)
            axes[d, 2 * c + 1].imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=spec.max() - 80,
                                      extent=(0, len(clip) / SAMPLE_RATE, 0, SAMPLE_RATE / 2000))
            axes[d, 2 * c + 1].set(yticks=[0, 2, 4])
        axes[d, 0].set_ylabel(f"digit {d}", fontsize=8)
        for ax in axes[d]:
            ax.set_xlim(0, seconds)
            ax.tick_params(labelsize=6, pad=1)
            if d < NUM_DIGITS - 1:
                ax.tick_params(labelbottom=False)
        if d not in real:
            for ax in axes[d, 2:]:
                ax.axis("off")
    for c, what in enumerate(("generated", "real (test)")):
        axes[0, 2 * c].set_title(f"{what}: waveform", fontsize=9)
        axes[0, 2 * c + 1].set_title(f"{what}: spectrogram (0–4 kHz, dB)", fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("seconds (the row's own time axis)", fontsize=7)
    ctx.save_figure(fig, "generated_audio")


def save_figures(ctx: RunContext, unigram: float, field: int, measured: int, gradient: np.ndarray) -> None:
    import matplotlib.pyplot as plt

    train = ctx.history("train_nll_bits_running")
    test = ctx.history("test_nll_bits")
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.plot(train["step"], train["train_nll_bits_running"], label="train (running mean over the batches)")
    ax.plot(test["step"], test["test_nll_bits"], marker="o", ms=4, label="test")
    ax.axhline(8.0, color="grey", ls="--", lw=0.8, label="uniform: 8 bits")
    ax.axhline(unigram, color="C3", ls=":", lw=1, label=f"unigram (class frequencies): {unigram:.2f} bits")
    ax.set(xlabel="step", ylabel="bits per sample", title="negative log-likelihood, −log₂ p(x_t | x_<t, digit)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    ctx.save_figure(fig, "likelihood_curves")

    fig, ax = plt.subplots(figsize=(7, 3.2))
    lags = np.arange(len(gradient))
    ax.semilogy(lags, np.where(gradient > 0, gradient, np.nan), lw=0.6)
    ax.axvline(field - 1, color="C3", ls="--", lw=1, label=f"formula: receptive field {field} (lags 0 … {field - 1})")
    ax.set(xlabel="lag (0 = x_{t−1}, the sample just before the predicted x_t)", ylabel="|∂ logits / ∂ input|",
           title=f"receptive field measured by the gradient: {measured} samples")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    ctx.save_figure(fig, "receptive_field")


# ----- the run -----

def run(ctx: RunContext, cfg: WaveNetConfig) -> dict[str, float]:
    # 1. data, model, optimiser
    train, test, test_audio = load_fsdd(cfg)
    model = WaveNet(cfg)
    rf = model.receptive_field
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    steps_per_epoch = len(train) // cfg.batch_size
    total = cfg.steps
    if cfg.time_budget_minutes:
        total = ctx.decide("steps", lambda: budgeted_steps(ctx, cfg, train, test, ctx.wall_seconds))
    log_every = max(1, math.ceil(total / cfg.log_points))
    crops = ctx.rng("crops", "torch")

    # 2. the loop: teacher forcing, one Adam step on the mean NLL of a batch of recordings
    state = {"model": model, "optimizer": optimizer, "window": {"bits": 0.0, "samples": 0}, "train_seconds": 0.0}
    step = ctx.restore(state)
    bar = ctx.progress(total, initial=step)
    clock = time.perf_counter()
    while step < total:
        epoch, i = divmod(step, steps_per_epoch)
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(ctx.seed_for(f"order/{epoch}")))
        inputs, targets, y = training_batch(train, order[i * cfg.batch_size:(i + 1) * cfg.batch_size], cfg, rf, crops)
        if cfg.lr_schedule == "cosine":
            for group in optimizer.param_groups:
                group["lr"] = warmup_cosine(step, total, warmup=0, lr=cfg.lr)
        nll = nll_nats(model, inputs, targets, y)
        count = int((targets >= 0).sum())
        loss = nll.sum() / count
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        step += 1
        ctx.check_finite(loss.item(), step, hint="lower lr or keep grad_clip on.")
        window = state["window"]
        window["bits"] += loss.item() / LN2 * count
        window["samples"] += count
        bar.update(1)
        if step % log_every == 0 or step == total:
            ctx.log(step, epoch=step / steps_per_epoch, train_nll_bits_running=window["bits"] / window["samples"])
            bar.set_postfix(bits=f"{window['bits'] / window['samples']:.3f}")
            state["window"] = {"bits": 0.0, "samples": 0}
        if cfg.eval_every and step % cfg.eval_every == 0 and step < total:
            state["train_seconds"] += time.perf_counter() - clock
            ctx.log(step, test_nll_bits=float(evaluate(model, test).sum()) / sum(len(x) for x in test.classes))
            clock = time.perf_counter()
        ctx.tick(step, state)
    bar.close()
    state["train_seconds"] += time.perf_counter() - clock
    model.eval()

    # 3. evaluation: test NLL in bits per sample (per digit too), the unigram baseline, the receptive field
    started = time.perf_counter()
    bits = evaluate(model, test)
    lengths = torch.tensor([len(x) for x in test.classes], dtype=torch.float64)
    test_bits = float(bits.sum() / lengths.sum())
    eval_seconds = time.perf_counter() - started
    ctx.log(total, test_nll_bits=test_bits)
    unigram = unigram_bits(train, test)
    measured, gradient = measured_receptive_field(model)
    if measured != rf:
        raise DojoError(f"the measured receptive field ({measured}) differs from the formula ({rf}): the model is "
                        f"broken")
    seen = Recordings(train.classes[:TRAIN_PROBE], train.digits[:TRAIN_PROBE], train.names[:TRAIN_PROBE])
    train_bits = float(evaluate(model, seen).sum()) / sum(len(x) for x in seen.classes)
    metrics = {"test_nll_bits": test_bits, "test_nll_bits_unigram": unigram, "train_nll_bits": train_bits}

    # 4. generation: naive and fast from the same uniforms (one digit), then one clip per digit (fast)
    uniforms = torch.rand((1, cfg.naive_samples), generator=torch.Generator().manual_seed(ctx.seed_for("compare")))
    started = time.perf_counter()
    naive = generate_naive(model, torch.zeros(1, dtype=torch.long), uniforms)
    naive_seconds = time.perf_counter() - started
    started = time.perf_counter()
    fast = generate_fast(model, torch.zeros(1, dtype=torch.long), uniforms)
    fast_seconds = time.perf_counter() - started
    agree = int((naive == fast).cumprod(1).sum())  # samples equal before the first difference
    started = time.perf_counter()
    generated, _ = sample_audio(model, NUM_DIGITS, label=None,
                                generator=torch.Generator().manual_seed(ctx.seed_for("generate")))
    clip_seconds = time.perf_counter() - started

    # 5. the report: audio, pictures, tables
    real = {}  # digit -> (name, samples) of its first test recording
    for d in range(NUM_DIGITS):
        ctx.save_audio(f"generated_audio/digit{d}_generated", generated[d].numpy(), SAMPLE_RATE)
        if (test_audio.digits == d).any():
            first = int(np.flatnonzero(test_audio.digits == d)[0])
            real[d] = (test_audio.names[first].removesuffix(".wav"), test_audio.waveforms[first])
            ctx.save_audio(f"generated_audio/digit{d}_real_{real[d][0]}", real[d][1], SAMPLE_RATE)
    save_audio_figure(ctx, generated, real)
    save_figures(ctx, unigram, rf, measured, gradient)
    ctx.save_table("likelihood_by_digit", [
        {"digit": d, "recordings": int((test.digits == d).sum()), "samples": int(lengths[test.digits == d].sum()),
         "bits per sample": f"{float(bits[test.digits == d].sum() / lengths[test.digits == d].sum()):.4f}"}
        for d in range(NUM_DIGITS) if (test.digits == d).any()],
        caption="Test NLL per digit, −log₂ p(x_t | x_<t, digit) averaged over the samples of its recordings.")
    ctx.save_table("generation", [
        {"generator": "naive (whole receptive field per sample)", "samples": cfg.naive_samples,
         "seconds": f"{naive_seconds:.3f}", "ms per sample": f"{1000 * naive_seconds / cfg.naive_samples:.2f}"},
        {"generator": "fast (a queue per layer)", "samples": cfg.naive_samples, "seconds": f"{fast_seconds:.3f}",
         "ms per sample": f"{1000 * fast_seconds / cfg.naive_samples:.2f}"},
        {"generator": f"fast, {NUM_DIGITS} clips of {cfg.generate_seconds:g} s at once", "samples": generated.numel(),
         "seconds": f"{clip_seconds:.3f}",
         "ms per sample": f"{1000 * clip_seconds / generated.shape[1]:.2f} per step"}],
        caption=f"Both generators started from the same uniforms (digit 0, batch 1): they agree on {agree} of "
                f"{cfg.naive_samples} samples. Wall-clock times of this run.")
    ctx.save_weights(model.state_dict())
    ctx.add_facts(params=sum(p.numel() for p in model.parameters()), receptive_field=rf,
                  receptive_field_ms=1000 * rf / SAMPLE_RATE, receptive_field_measured=measured,
                  dilations=f"1 … {2 ** (cfg.layers_per_stack - 1)} × {cfg.stacks}", steps=total,
                  train_recordings=len(train), test_recordings=len(test), test_samples=int(lengths.sum()),
                  fast_equals_naive=agree == cfg.naive_samples, generated_samples_per_clip=generated.shape[1])
    ctx.add_timings(train_seconds=state["train_seconds"], eval_seconds=eval_seconds,
                    naive_seconds_per_sample=naive_seconds / cfg.naive_samples,
                    fast_seconds_per_sample=fast_seconds / cfg.naive_samples,
                    generation_speedup=naive_seconds / max(fast_seconds, 1e-9),
                    fast_seconds_per_audio_second=clip_seconds / cfg.generate_seconds)
    return metrics


PRESETS = {
    "smoke": {"residual_channels": 8, "gate_channels": 8, "skip_channels": 16, "layers_per_stack": 4, "stacks": 2,
              "steps": 6, "batch_size": 4, "max_target_samples": 512, "train_recordings": 16, "test_recordings": 10,
              "eval_every": 3, "log_points": 6, "generate_seconds": 0.05, "naive_samples": 20},
    # one cycle of dilations (receptive field 1,025 samples) trains ~2.5x more steps per second than two;
    # quick measured 78 s of wall on 2 AVX2 cores (loading, evaluation, generation and the report included)
    "quick": {"stacks": 1, "lr": 1e-2, "lr_schedule": "cosine", "steps": 2000, "time_budget_minutes": 1.4,
              "test_recordings": 60, "eval_every": 100, "generate_seconds": 0.5, "naive_samples": 100},
    "full": {"steps": 2400, "lr_schedule": "cosine", "eval_every": 400},  # est. ~22 min on 2 cores (~0.5 s a step)
}

register(Experiment(
    name="wavenet-fsdd",
    topic="Deep generative models: WaveNet (dilated causal convolutions, gated activations, residual and skip "
          "connections, μ-law 256-class softmax, digit conditioning), fast generation with per-layer queues "
          "(Free Spoken Digit Dataset, 8 kHz)",
    paper="van den Oord et al. 2016 (WaveNet: A Generative Model for Raw Audio); Paine et al. 2016 (Fast Wavenet "
          "Generation Algorithm); ITU-T G.711 (μ-law)",
    config_cls=WaveNetConfig, presets=PRESETS, run=run, build_model=build_model,
    metric="test_nll_bits", direction="min", datasets=("fsdd",),
    references=(
        Reference(8.0, "uniform distribution over the 256 μ-law classes (no model): log₂ 256",
                  "what a model that learned nothing pays per sample"),
    ),
))
