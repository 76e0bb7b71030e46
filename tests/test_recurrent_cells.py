"""Parity of dldojo.nn.recurrent with torch.nn.RNN / LSTM / GRU: outputs, final states and gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from dldojo.nn import recurrent

INPUT_SIZE, HIDDEN_SIZE, NUM_STEPS, BATCH_SIZE = 4, 6, 5, 3
TOLERANCE = dict(rtol=1e-5, atol=1e-5)

# (our class, torch class, extra constructor arguments)
MODELS = {
    "rnn_tanh": (recurrent.RNN, nn.RNN, dict(nonlinearity="tanh")),
    "rnn_relu": (recurrent.RNN, nn.RNN, dict(nonlinearity="relu")),
    "lstm": (recurrent.LSTM, nn.LSTM, {}),
    "gru": (recurrent.GRU, nn.GRU, {}),
}

# name -> (layer arguments, lengths or None, pass an initial state?)
SETTINGS = {
    "single_layer": (dict(), None, False),
    "two_layers": (dict(num_layers=2), None, False),
    "bidirectional": (dict(bidirectional=True), None, False),
    "two_layers_bidirectional_batch_first_hx": (dict(num_layers=2, bidirectional=True, batch_first=True),
                                                None, True),
    "padded": (dict(), [5, 2, 4], False),
    "padded_two_layers_bidirectional": (dict(num_layers=2, bidirectional=True), [3, 5, 1], True),
    "padded_batch_first_no_bias": (dict(batch_first=True, bidirectional=True, bias=False), [2, 5, 4], False),
}


def make_pair(model: str, **layer_arguments):
    ours_class, torch_class, extra = MODELS[model]
    torch.manual_seed(0)
    reference = torch_class(INPUT_SIZE, HIDDEN_SIZE, **extra, **layer_arguments)
    ours = ours_class(INPUT_SIZE, HIDDEN_SIZE, **extra, **layer_arguments)
    ours.load_from_torch(reference)
    return ours, reference


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("model", MODELS)
def test_matches_torch_outputs_states_and_gradients(model, setting):
    layer_arguments, lengths, with_initial_state = SETTINGS[setting]
    ours, reference = make_pair(model, **layer_arguments)
    batch_first = layer_arguments.get("batch_first", False)
    num_directions = 2 if layer_arguments.get("bidirectional") else 1
    num_layers = layer_arguments.get("num_layers", 1)

    generator = torch.Generator().manual_seed(1)
    shape = (BATCH_SIZE, NUM_STEPS, INPUT_SIZE) if batch_first else (NUM_STEPS, BATCH_SIZE, INPUT_SIZE)
    x = torch.randn(shape, generator=generator)  # padded positions hold noise: both must ignore it
    hx = None
    if with_initial_state:
        state_shape = (num_layers * num_directions, BATCH_SIZE, HIDDEN_SIZE)
        hx = tuple(torch.randn(state_shape, generator=generator) for _ in range(2 if model == "lstm" else 1))

    def run(layer, use_packing):
        inputs = x.clone().requires_grad_()
        initial = None if hx is None else tuple(h.clone().requires_grad_() for h in hx)
        initial_arg = None if initial is None else (initial if model == "lstm" else initial[0])
        if lengths is None:
            output, state = layer(inputs, initial_arg)
        elif use_packing:
            packed = pack_padded_sequence(inputs, torch.tensor(lengths), batch_first=batch_first,
                                          enforce_sorted=False)
            packed_output, state = layer(packed, initial_arg)
            output, _ = pad_packed_sequence(packed_output, batch_first=batch_first, total_length=NUM_STEPS)
        else:
            output, state = layer(inputs, initial_arg, lengths=lengths)
        return inputs, initial, output, as_tuple(state)

    ours_inputs, ours_initial, ours_output, ours_state = run(ours, use_packing=False)
    ref_inputs, ref_initial, ref_output, ref_state = run(reference, use_packing=True)

    torch.testing.assert_close(ours_output, ref_output, **TOLERANCE)
    assert len(ours_state) == len(ref_state)
    for ours_tensor, ref_tensor in zip(ours_state, ref_state):
        torch.testing.assert_close(ours_tensor, ref_tensor, **TOLERANCE)

    # Gradients of a random linear function of everything the layer returns.
    probes = [torch.randn(t.shape, generator=generator) for t in (ref_output, *ref_state)]

    def gradients(layer, inputs, initial, output, state):
        loss = sum((t * probe).sum() for t, probe in zip((output, *state), probes))
        names, parameters = zip(*layer.named_parameters())
        leaves = [inputs, *(initial or ()), *parameters]
        return dict(zip(["input", *[f"h0_{k}" for k in range(len(initial or ()))], *names],
                        torch.autograd.grad(loss, leaves)))

    ours_grads = gradients(ours, ours_inputs, ours_initial, ours_output, ours_state)
    ref_grads = gradients(reference, ref_inputs, ref_initial, ref_output, ref_state)
    assert ours_grads.keys() == ref_grads.keys()
    for name in ref_grads:
        torch.testing.assert_close(ours_grads[name], ref_grads[name], **TOLERANCE, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("model", MODELS)
def test_parameter_names_and_shapes_match_torch(model):
    ours, reference = make_pair(model, num_layers=2, bidirectional=True)
    assert [(name, p.shape) for name, p in ours.state_dict().items()] == \
           [(name, p.shape) for name, p in reference.state_dict().items()]


@pytest.mark.parametrize(
    "ours_class, torch_class, extra",
    [(recurrent.RNNCell, nn.RNNCell, dict(nonlinearity="relu")), (recurrent.RNNCell, nn.RNNCell, {}),
     (recurrent.LSTMCell, nn.LSTMCell, {}), (recurrent.GRUCell, nn.GRUCell, {})],
)
def test_single_cells_match_torch(ours_class, torch_class, extra):
    torch.manual_seed(0)
    reference = torch_class(INPUT_SIZE, HIDDEN_SIZE, **extra)
    ours = ours_class(INPUT_SIZE, HIDDEN_SIZE, **extra)
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(BATCH_SIZE, INPUT_SIZE)
    state = tuple(torch.randn(BATCH_SIZE, HIDDEN_SIZE) for _ in range(2 if ours_class is recurrent.LSTMCell else 1))
    state_arg = state if len(state) == 2 else state[0]
    for ours_tensor, ref_tensor in zip(as_tuple(ours(x, state_arg)), as_tuple(reference(x, state_arg))):
        torch.testing.assert_close(ours_tensor, ref_tensor, **TOLERANCE)


def test_reverse_padded_reverses_within_each_length():
    sequences = torch.arange(6.0).reshape(3, 2)  # (T=3, B=2): columns [0, 2, 4] and [1, 3, 5]
    reversed_ = recurrent.reverse_padded(sequences, torch.tensor([3, 2]))
    assert reversed_.T.tolist() == [[4.0, 2.0, 0.0], [3.0, 1.0, 5.0]]  # the padded step 5 stays put
    torch.testing.assert_close(recurrent.reverse_padded(reversed_, torch.tensor([3, 2])), sequences)


# -- peephole LSTM (Gers & Schmidhuber 2000) -----------------------------------------------------------------


def test_peephole_lstm_shapes():
    lstm = recurrent.LSTM(INPUT_SIZE, HIDDEN_SIZE, num_layers=2, bidirectional=True, batch_first=True,
                          peephole=True)
    peepholes = {name: p.shape for name, p in lstm.named_parameters() if "peephole" in name}
    assert peepholes == {f"weight_peephole_l{k}{s}": (3, HIDDEN_SIZE) for k in (0, 1) for s in ("", "_reverse")}
    output, (h_n, c_n) = lstm(torch.randn(BATCH_SIZE, NUM_STEPS, INPUT_SIZE), lengths=[5, 3, 1])
    assert output.shape == (BATCH_SIZE, NUM_STEPS, 2 * HIDDEN_SIZE)
    assert h_n.shape == c_n.shape == (4, BATCH_SIZE, HIDDEN_SIZE)
    assert (output[2, 1:] == 0).all()  # padded steps of the length-1 sequence

    cell = recurrent.LSTMCell(INPUT_SIZE, HIDDEN_SIZE, peephole=True)
    h, c = cell(torch.randn(BATCH_SIZE, INPUT_SIZE))
    assert h.shape == c.shape == (BATCH_SIZE, HIDDEN_SIZE) and cell.weight_peephole.shape == (3, HIDDEN_SIZE)


def test_peephole_lstm_with_zero_peepholes_is_the_plain_lstm():
    torch.manual_seed(0)
    reference = nn.LSTM(INPUT_SIZE, HIDDEN_SIZE, num_layers=2, bidirectional=True)
    peephole = recurrent.LSTM(INPUT_SIZE, HIDDEN_SIZE, num_layers=2, bidirectional=True, peephole=True)
    peephole.load_from_torch(reference)
    x = torch.randn(NUM_STEPS, BATCH_SIZE, INPUT_SIZE)

    with torch.no_grad():
        for name, parameter in peephole.named_parameters():
            if "peephole" in name:
                parameter.zero_()
        output, (h_n, c_n) = peephole(x)
        ref_output, (ref_h_n, ref_c_n) = reference(x)
        torch.testing.assert_close(output, ref_output, **TOLERANCE)
        torch.testing.assert_close(h_n, ref_h_n, **TOLERANCE)
        torch.testing.assert_close(c_n, ref_c_n, **TOLERANCE)

        # …and non-zero peepholes do change the result (they are actually wired in).
        peephole.weight_peephole_l0.fill_(0.5)
        assert not torch.allclose(peephole(x)[0], ref_output, **TOLERANCE)
