"""Muon + Nesterov SGD in one optimiser (`dldojo.nn.muon`): equal to torch.optim.Muon and torch.optim.SGD."""

from __future__ import annotations

import math

import pytest
import torch

from dldojo.nn.muon import MuonWithSGD, orthogonalise


def _steps(optimizers, params, grads):
    for grad in grads:
        for p in params:
            p.grad = grad.clone()
        for opt in optimizers:
            opt.step()


@pytest.mark.parametrize("shape", [(16, 40), (40, 16)])
def test_muon_group_equals_torch_muon(shape):
    torch.manual_seed(0)
    start = torch.randn(*shape)
    ours, theirs = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    grads = [torch.randn(*shape) for _ in range(6)]
    _steps([MuonWithSGD([{"params": [ours], "use_muon": True}], lr=0.05, momentum=0.9, ns_steps=5)], [ours], grads)
    _steps([torch.optim.Muon([theirs], lr=0.05, momentum=0.9, weight_decay=0.0, nesterov=True, ns_steps=5)],
           [theirs], grads)
    assert not torch.equal(ours, start)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_sgd_group_equals_torch_sgd_nesterov_with_weight_decay():
    torch.manual_seed(1)
    start = torch.randn(7, 3)
    ours, theirs = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    grads = [torch.randn(7, 3) for _ in range(6)]
    _steps([MuonWithSGD([{"params": [ours], "weight_decay": 0.01}], lr=0.1, momentum=0.85)], [ours], grads)
    _steps([torch.optim.SGD([theirs], lr=0.1, momentum=0.85, weight_decay=0.01, nesterov=True)], [theirs], grads)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shape", [(8, 4, 3, 3), (12, 1, 3, 3)])  # a standard and a depthwise (tall) filter bank
def test_conv_filters_step_as_their_matrix_in_any_memory_layout(shape):
    torch.manual_seed(2)
    start, rows = torch.randn(*shape), shape[0]
    conv = torch.nn.Parameter(start.clone().to(memory_format=torch.channels_last))
    matrix = torch.nn.Parameter(start.reshape(rows, -1).clone())
    grads = [torch.randn(*shape) for _ in range(3)]
    opt_conv = MuonWithSGD([{"params": [conv], "use_muon": True}], lr=0.1, momentum=0.6, ns_steps=3)
    opt_matrix = MuonWithSGD([{"params": [matrix], "use_muon": True}], lr=0.1, momentum=0.6, ns_steps=3)
    for grad in grads:
        conv.grad, matrix.grad = grad.clone().to(memory_format=torch.channels_last), grad.reshape(rows, -1).clone()
        opt_conv.step()
        opt_matrix.step()
    assert not torch.equal(conv, start)
    torch.testing.assert_close(conv.reshape(rows, -1), matrix, rtol=0, atol=0)


def test_normalize_rescales_each_filter_bank_to_norm_sqrt_out_before_the_step():
    weight = torch.nn.Parameter(5 * torch.randn(6, 3, 3, 3))
    weight.grad = torch.randn_like(weight)
    MuonWithSGD([{"params": [weight], "use_muon": True, "normalize": True}], lr=0.0).step()
    assert weight.norm().item() == pytest.approx(math.sqrt(6), rel=1e-5)


def test_orthogonalise_flattens_the_singular_values():
    torch.manual_seed(3)
    update = torch.randn(64, 200) @ torch.diag(torch.logspace(-2, 1, 200))
    before, after = torch.linalg.svdvals(update), torch.linalg.svdvals(orthogonalise(update, steps=5).float())
    assert before.max() / before.min() > 40  # an ill-conditioned update ...
    assert after.max() / after.min() < 1.8 and 0.6 < after.min() and after.max() < 1.2  # ... comes out ~U Vᵀ


def test_muon_groups_reject_vectors():
    with pytest.raises(ValueError, match="ndim >= 2"):
        MuonWithSGD([{"params": [torch.nn.Parameter(torch.zeros(3))], "use_muon": True}])
