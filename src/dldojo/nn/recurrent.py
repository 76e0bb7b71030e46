"""Recurrent cells and layers written from their equations: simple RNN, LSTM (optional peepholes), GRU.

Curriculum topic: 深層学習 / 再帰型ニューラルネットワーク — simple RNN, LSTM, GRU, 双方向RNN (bidirectional RNN),
多層 (stacked) RNN, variable-length (padded) mini-batches. Everything here is computed from the formulas
below with plain tensor ops; `torch.nn.RNN / LSTM / GRU` are used only by the parity tests
(tests/test_recurrent_cells.py), which check outputs, final states and gradients against them.

Notation: x is the input at one time step, h the previous hidden state, W·x means x Wᵀ (torch's
`F.linear`), σ the logistic sigmoid, ⊙ the element-wise product.

Simple RNN (Elman 1990):
    h' = tanh(W_ih x + b_ih + W_hh h + b_hh)            (or relu)

LSTM (Hochreiter & Schmidhuber 1997, with the forget gate of Gers, Schmidhuber & Cummins 2000).
Gate rows of weight_ih / weight_hh are stacked in torch's order [i, f, g, o]:
    i = σ(W_ii x + b_ii + W_hi h + b_hi  [+ p_i ⊙ c])      input gate
    f = σ(W_if x + b_if + W_hf h + b_hf  [+ p_f ⊙ c])      forget gate
    g = tanh(W_ig x + b_ig + W_hg h + b_hg)                candidate cell
    c' = f ⊙ c + i ⊙ g                                     cell state
    o = σ(W_io x + b_io + W_ho h + b_ho  [+ p_o ⊙ c'])     output gate
    h' = o ⊙ tanh(c')
The bracketed terms are the peephole connections of Gers & Schmidhuber (2000), "Recurrent nets that time
and count": diagonal weights that let the gates see the cell state — the input and forget gates the old
cell c, the output gate the new cell c'. They are off by default (torch has no peepholes); when on, they
are stored as `weight_peephole_l{k}` of shape (3, H), rows [p_i, p_f, p_o].

GRU (Cho et al. 2014), in torch's / cuDNN's convention, gate rows stacked as [r, z, n]:
    r = σ(W_ir x + b_ir + W_hr h + b_hr)                   reset gate
    z = σ(W_iz x + b_iz + W_hz h + b_hz)                   update gate — here the share of the OLD state kept
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))          candidate state
    h' = (1 − z) ⊙ n + z ⊙ h
Two other conventions appear in textbooks and course notes; all three describe the same family of models:
  * h_t = (1 − z) ⊙ h_{t−1} + z ⊙ h̃_t (Chung et al. 2014, many lecture notes, the E資格 material): there z is
    the share of the NEW candidate. It is torch's z with z ↔ 1 − z, i.e. negate the update-gate weights and
    biases, since σ(−a) = 1 − σ(a).
  * Cho et al. (2014) apply the reset gate before the recurrent matrix, h̃ = tanh(W x + U (r ⊙ h)); torch and
    cuDNN apply it after, r ⊙ (W_hn h + b_hn), which is what this file does (it lets W_hh h be computed
    for all three gates in one matrix product).

Layers (`RNN`, `LSTM`, `GRU`) run a cell over time with torch's arguments: `num_layers` stacks layers (the
output sequence of layer k is the input of layer k+1), `bidirectional` adds a second cell that reads each
sequence backwards and concatenates its outputs to the forward ones on the feature axis, `batch_first`
chooses (B, T, ·) instead of (T, B, ·). Parameter names match torch's (weight_ih_l{k}{_reverse},
weight_hh_…, bias_ih_…, bias_hh_…), so `layer.load_state_dict(torch_module.state_dict())` copies weights.

Padded batches: pass `lengths` (one per sequence) to get torch's packed-sequence semantics without packing:
the state stops updating after a sequence's last valid step, outputs at padded positions are zero, the
final state is the state at each sequence's own last valid step, and the reverse direction starts at that
last valid step (not at the padding).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

State = tuple[Tensor, ...]  # (h,) for RNN / GRU, (h, c) for LSTM


# ---------------------------------------------------------------------------------------------------------
# One time step, as functions of the weights (shared by the cell modules and the layers)
# ---------------------------------------------------------------------------------------------------------


def rnn_cell(x: Tensor, h: Tensor, weight_ih: Tensor, weight_hh: Tensor, bias_ih: Tensor | None,
             bias_hh: Tensor | None, nonlinearity: str = "tanh") -> Tensor:
    """h' = f(W_ih x + b_ih + W_hh h + b_hh) with f = tanh or relu."""
    u = F.linear(x, weight_ih, bias_ih) + F.linear(h, weight_hh, bias_hh)
    if nonlinearity == "tanh":
        return torch.tanh(u)
    if nonlinearity == "relu":
        return torch.relu(u)
    raise ValueError(f"unknown nonlinearity {nonlinearity!r}; choose 'tanh' or 'relu'")


def lstm_cell(x: Tensor, state: tuple[Tensor, Tensor], weight_ih: Tensor, weight_hh: Tensor,
              bias_ih: Tensor | None, bias_hh: Tensor | None,
              weight_peephole: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """One LSTM step (gate order i, f, g, o); `weight_peephole` (3, H) adds Gers & Schmidhuber's peepholes."""
    h, c = state
    gate_inputs = F.linear(x, weight_ih, bias_ih) + F.linear(h, weight_hh, bias_hh)
    a_i, a_f, a_g, a_o = gate_inputs.chunk(4, dim=-1)
    if weight_peephole is not None:
        p_i, p_f, p_o = weight_peephole
        a_i = a_i + p_i * c  # input and forget gates peek at the OLD cell state …
        a_f = a_f + p_f * c
    i = torch.sigmoid(a_i)
    f = torch.sigmoid(a_f)
    g = torch.tanh(a_g)
    c_next = f * c + i * g
    if weight_peephole is not None:
        a_o = a_o + p_o * c_next  # … the output gate at the NEW one (it is computed after c' in the paper)
    o = torch.sigmoid(a_o)
    h_next = o * torch.tanh(c_next)
    return h_next, c_next


def gru_cell(x: Tensor, h: Tensor, weight_ih: Tensor, weight_hh: Tensor, bias_ih: Tensor | None,
             bias_hh: Tensor | None) -> Tensor:
    """One GRU step in torch's convention (gate order r, z, n; h' = (1 − z) ⊙ n + z ⊙ h)."""
    input_r, input_z, input_n = F.linear(x, weight_ih, bias_ih).chunk(3, dim=-1)
    hidden_r, hidden_z, hidden_n = F.linear(h, weight_hh, bias_hh).chunk(3, dim=-1)
    r = torch.sigmoid(input_r + hidden_r)
    z = torch.sigmoid(input_z + hidden_z)
    n = torch.tanh(input_n + r * hidden_n)  # reset gate applied after W_hn h + b_hn (cuDNN / torch)
    return (1 - z) * n + z * h


def _uniform_init_(parameters, hidden_size: int) -> None:
    # torch initialises every recurrent weight and bias from U(−1/√H, 1/√H); we do the same so the
    # defaults train like torch's.
    bound = 1.0 / math.sqrt(hidden_size)
    with torch.no_grad():
        for parameter in parameters:
            parameter.uniform_(-bound, bound)


# ---------------------------------------------------------------------------------------------------------
# Cells: one step, parameters named like torch.nn.RNNCell / LSTMCell / GRUCell
# ---------------------------------------------------------------------------------------------------------


class _Cell(nn.Module):
    num_gates: int

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        rows = self.num_gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size))
        self.weight_hh = nn.Parameter(torch.empty(rows, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(rows)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(rows)) if bias else None

    def reset_parameters(self) -> None:
        _uniform_init_(self.parameters(), self.hidden_size)

    def _zeros(self, x: Tensor) -> Tensor:
        return x.new_zeros(x.shape[0], self.hidden_size)


class RNNCell(_Cell):
    """h' = tanh(W_ih x + b_ih + W_hh h + b_hh) (or relu). Input (B, input_size), state (B, hidden_size)."""

    num_gates = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh"):
        super().__init__(input_size, hidden_size, bias)
        self.nonlinearity = nonlinearity
        self.reset_parameters()

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        h = self._zeros(x) if h is None else h
        return rnn_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, self.nonlinearity)


class LSTMCell(_Cell):
    """One LSTM step; returns (h', c'). `peephole=True` adds `weight_peephole` (3, H): rows p_i, p_f, p_o."""

    num_gates = 4

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, peephole: bool = False):
        super().__init__(input_size, hidden_size, bias)
        self.weight_peephole = nn.Parameter(torch.empty(3, hidden_size)) if peephole else None
        self.reset_parameters()

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        state = (self._zeros(x), self._zeros(x)) if state is None else state
        return lstm_cell(x, state, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh,
                         self.weight_peephole)


class GRUCell(_Cell):
    """One GRU step in torch's convention: h' = (1 − z) ⊙ n + z ⊙ h (see the module docstring)."""

    num_gates = 3

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__(input_size, hidden_size, bias)
        self.reset_parameters()

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        h = self._zeros(x) if h is None else h
        return gru_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)


# ---------------------------------------------------------------------------------------------------------
# Variable-length helpers
# ---------------------------------------------------------------------------------------------------------


def reverse_padded(sequences: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence within its own length along the time axis (axis 0); padding stays in place.

    With lengths [3, 2] and T = 3: [a0 a1 a2], [b0 b1 pad] -> [a2 a1 a0], [b1 b0 pad]. Applying it twice
    gives the input back, so the same call also puts reversed outputs back in time order.
    """
    if lengths is None:
        return sequences.flip(0)
    time = torch.arange(sequences.shape[0], device=sequences.device)[:, None]  # (T, 1)
    source = torch.where(time < lengths, lengths - 1 - time, time)  # (T, B): which step lands at t
    source = source.reshape(*source.shape, *([1] * (sequences.dim() - 2))).expand_as(sequences)
    return sequences.gather(0, source)


# ---------------------------------------------------------------------------------------------------------
# Layers: a cell run over time, stacked and optionally bidirectional
# ---------------------------------------------------------------------------------------------------------


class _RecurrentLayers(nn.Module):
    """Shared machinery of RNN / LSTM / GRU; subclasses say how many gates and how one step works."""

    num_gates: int
    num_state_tensors: int = 1  # h only; the LSTM adds c

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, dropout
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        rows = self.num_gates * hidden_size
        # Registered in torch's order (layer, direction, ih, hh, bias_ih, bias_hh) so state_dicts line up.
        for layer in range(num_layers):
            layer_input_size = input_size if layer == 0 else hidden_size * self.num_directions
            for suffix in self._suffixes(layer):
                self.register_parameter(f"weight_ih{suffix}", nn.Parameter(torch.empty(rows, layer_input_size)))
                self.register_parameter(f"weight_hh{suffix}", nn.Parameter(torch.empty(rows, hidden_size)))
                if bias:
                    self.register_parameter(f"bias_ih{suffix}", nn.Parameter(torch.empty(rows)))
                    self.register_parameter(f"bias_hh{suffix}", nn.Parameter(torch.empty(rows)))
                self._register_extra_parameters(suffix)
        self.reset_parameters()

    def _suffixes(self, layer: int) -> list[str]:
        """Parameter-name suffixes of one layer: '_l0' for forward, '_l0_reverse' for the backward direction."""
        return [f"_l{layer}", f"_l{layer}_reverse"][: self.num_directions]

    def _register_extra_parameters(self, suffix: str) -> None:
        """Hook for parameters torch does not have (LSTM peepholes)."""

    def reset_parameters(self) -> None:
        _uniform_init_(self.parameters(), self.hidden_size)

    def _cell_weights(self, suffix: str) -> tuple[Tensor | None, ...]:
        names = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
        return tuple(getattr(self, name + suffix, None) for name in names)

    def step(self, x: Tensor, state: State, weights: tuple[Tensor | None, ...]) -> State:
        raise NotImplementedError

    def load_from_torch(self, module: nn.Module) -> None:
        """Copy the weights of the matching torch.nn.RNN / LSTM / GRU (peepholes, if any, are left alone)."""
        for attribute in ["input_size", "hidden_size", "num_layers", "bias", "bidirectional"]:
            if getattr(module, attribute) != getattr(self, attribute):
                raise ValueError(f"{attribute} differs: torch module has {getattr(module, attribute)!r}, "
                                 f"this layer has {getattr(self, attribute)!r}")
        if getattr(module, "proj_size", 0):
            raise ValueError("LSTM projections (proj_size > 0) are not implemented here")
        missing, unexpected = self.load_state_dict(module.state_dict(), strict=False)
        if unexpected or any("peephole" not in name for name in missing):
            raise ValueError(f"parameter names do not match: missing {missing}, unexpected {unexpected}")

    # -- running over time ---------------------------------------------------------------------------------

    def _run_one_direction(self, inputs: Tensor, state: State, weights: tuple[Tensor | None, ...],
                           valid: Tensor | None) -> tuple[Tensor, State]:
        """Step through inputs (T, B, ·) in order; `valid` (T, B, 1) freezes the state on padded steps."""
        outputs = []
        for t in range(inputs.shape[0]):
            new_state = self.step(inputs[t], state, weights)
            if valid is not None:
                # Past a sequence's end its state stays at the last valid step and its output is zero,
                # which is exactly what a packed sequence gives in torch.
                new_state = tuple(torch.where(valid[t], new, old) for new, old in zip(new_state, state))
                outputs.append(torch.where(valid[t], new_state[0], torch.zeros_like(new_state[0])))
            else:
                outputs.append(new_state[0])
            state = new_state
        return torch.stack(outputs), state

    def _initial_state(self, hx: Tensor | tuple[Tensor, ...] | None, inputs: Tensor) -> State:
        if hx is None:
            zeros = inputs.new_zeros(self.num_layers * self.num_directions, inputs.shape[1], self.hidden_size)
            return (zeros,) * self.num_state_tensors
        return (hx,) if isinstance(hx, Tensor) else tuple(hx)

    def _run(self, inputs: Tensor, hx, lengths: Tensor | Sequence[int] | None) -> tuple[Tensor, State]:
        """Returns the output sequence (in the caller's layout) and the stacked final states (L·D, B, H)."""
        x = inputs.transpose(0, 1) if self.batch_first else inputs  # (T, B, features) from here on
        num_steps = x.shape[0]
        initial = self._initial_state(hx, x)

        valid = None
        if lengths is not None:
            lengths = torch.as_tensor(lengths, dtype=torch.long, device=x.device)
            if lengths.min() < 1 or lengths.max() > num_steps:
                raise ValueError(f"lengths must lie in [1, {num_steps}], got {lengths.tolist()}")
            valid = (torch.arange(num_steps, device=x.device)[:, None] < lengths)[..., None]  # (T, B, 1)

        final_states: list[State] = []  # index layer * num_directions + direction, like torch's h_n
        layer_input = x
        for layer in range(self.num_layers):
            direction_outputs = []
            for direction, suffix in enumerate(self._suffixes(layer)):
                index = layer * self.num_directions + direction
                state = tuple(s[index] for s in initial)
                weights = self._cell_weights(suffix)
                if direction == 0:
                    outputs, state = self._run_one_direction(layer_input, state, weights, valid)
                else:
                    # Reverse each sequence within its length, run forward, reverse the outputs back: the
                    # backward cell thus starts at each sequence's own last valid step.
                    reversed_input = reverse_padded(layer_input, lengths)
                    outputs, state = self._run_one_direction(reversed_input, state, weights, valid)
                    outputs = reverse_padded(outputs, lengths)
                direction_outputs.append(outputs)
                final_states.append(state)
            layer_input = torch.cat(direction_outputs, dim=-1)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, training=True)

        output = layer_input.transpose(0, 1) if self.batch_first else layer_input
        stacked = tuple(torch.stack([s[k] for s in final_states]) for k in range(self.num_state_tensors))
        return output, stacked


class RNN(_RecurrentLayers):
    """Elman RNN over a sequence; same arguments and outputs as torch.nn.RNN, plus `lengths`.

    forward(input, hx=None, lengths=None) -> (output, h_n)
        input  (T, B, input_size), or (B, T, input_size) with batch_first
        hx     (num_layers · num_directions, B, hidden_size), zeros if None
        output (T, B, num_directions · hidden_size) (batch_first: (B, T, …)), zero at padded steps
        h_n    (num_layers · num_directions, B, hidden_size), each sequence's state at its last valid step
    """

    num_gates = 1

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False):
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)

    def step(self, x: Tensor, state: State, weights: tuple[Tensor | None, ...]) -> State:
        return (rnn_cell(x, state[0], *weights, nonlinearity=self.nonlinearity),)

    def forward(self, input: Tensor, hx: Tensor | None = None,
                lengths: Tensor | Sequence[int] | None = None) -> tuple[Tensor, Tensor]:
        output, (h_n,) = self._run(input, hx, lengths)
        return output, h_n


class LSTM(_RecurrentLayers):
    """LSTM over a sequence; torch.nn.LSTM's arguments and outputs (no proj_size), plus peepholes and `lengths`.

    forward(input, hx=None, lengths=None) -> (output, (h_n, c_n)); shapes as in `RNN`, c_n like h_n.
    `peephole=True` adds `weight_peephole_l{k}{_reverse}` (3, hidden_size), rows p_i, p_f, p_o.
    """

    num_gates = 4
    num_state_tensors = 2

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 peephole: bool = False):
        self.peephole = peephole
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)

    def _register_extra_parameters(self, suffix: str) -> None:
        if self.peephole:
            self.register_parameter(f"weight_peephole{suffix}", nn.Parameter(torch.empty(3, self.hidden_size)))

    def _cell_weights(self, suffix: str) -> tuple[Tensor | None, ...]:
        return super()._cell_weights(suffix) + (getattr(self, f"weight_peephole{suffix}", None),)

    def step(self, x: Tensor, state: State, weights: tuple[Tensor | None, ...]) -> State:
        return lstm_cell(x, state, *weights)

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None,
                lengths: Tensor | Sequence[int] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        output, (h_n, c_n) = self._run(input, hx, lengths)
        return output, (h_n, c_n)


class GRU(_RecurrentLayers):
    """GRU over a sequence (torch's convention, see the module docstring); torch.nn.GRU's API plus `lengths`.

    forward(input, hx=None, lengths=None) -> (output, h_n); shapes as in `RNN`.
    """

    num_gates = 3

    def step(self, x: Tensor, state: State, weights: tuple[Tensor | None, ...]) -> State:
        return (gru_cell(x, state[0], *weights),)

    def forward(self, input: Tensor, hx: Tensor | None = None,
                lengths: Tensor | Sequence[int] | None = None) -> tuple[Tensor, Tensor]:
        output, (h_n,) = self._run(input, hx, lengths)
        return output, h_n
