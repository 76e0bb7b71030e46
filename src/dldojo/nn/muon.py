"""Muon for convolution filters, Nesterov SGD for every other parameter, in one optimiser.

Muon (Jordan et al. 2024, "Muon: an optimizer for hidden layers", kellerjordan.github.io/posts/muon; used
for convolution filters in airbench's `airbench94_muon.py`) replaces a weight matrix's momentum update by
its nearest semi-orthogonal matrix, so that every direction of the update moves by about the same amount:

    B ← μ B + (1 − μ) G,   U = (1 − μ) G + μ B (Nesterov),   O ≈ orthogonalise(U) = U (Uᵀ U)^(-1/2),
    W ← W − η · s · O

(PyTorch's averaged momentum; airbench's B ← μ B + G, U = G + μ B is the same U times 1/(1 − μ), and O does
not depend on U's scale.)
O comes from a few steps of the quintic Newton–Schulz iteration X ← a X + (b A + c A²) X with A = X Xᵀ,
started from X = U / ‖U‖_F (a, b, c = 3.4445, −4.7750, 2.0315: pushes all singular values into ~[0.7, 1.2]
in 3-5 steps, run in bf16). A conv filter (out, in, kh, kw) is treated as the matrix (out, in·kh·kw);
s = √max(1, rows / cols) (PyTorch's "original" adjustment). With `normalize=True` a filter is rescaled to
Frobenius norm √out before each step (airbench: the scale of a filter followed by BatchNorm is arbitrary,
so only its direction is learned and the step size stays meaningful).

Groups flagged `use_muon=False` are updated by PyTorch's Nesterov SGD with L2 weight decay:
g ← g + λ θ,  v ← μ v + g,  θ ← θ − η (g + μ v). One optimiser (rather than two) keeps `fit`, the learning
rate scheduler and the checkpoints unchanged. Tested against `torch.optim.Muon` (2-D weights) and
`torch.optim.SGD`.
"""

from __future__ import annotations

import math

import torch

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalise(update: torch.Tensor, steps: int = 5, eps: float = 1e-7,
                  coefficients: tuple[float, float, float] = NS_COEFFICIENTS) -> torch.Tensor:
    """Quintic Newton–Schulz approximation of U (UᵀU)^(-1/2) for a 2-D `update` (bf16 result)."""
    a, b, c = coefficients
    x = update.bfloat16()
    transposed = x.size(0) > x.size(1)
    if transposed:  # iterate on the short side: A = X Xᵀ is then the smaller Gram matrix
        x = x.T
    x = x / x.norm().clamp(min=eps)  # spectral norm ≤ Frobenius norm = 1
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if transposed else x


class MuonWithSGD(torch.optim.Optimizer):
    """Param groups with `use_muon=True` take Muon steps, the others Nesterov SGD (see the module docstring).

    Group options: lr, momentum, weight_decay (SGD groups; L2 added to the gradient, as torch.optim.SGD),
    ns_steps and normalize (Muon groups)."""

    def __init__(self, groups: list[dict], lr: float = 0.02, momentum: float = 0.9, weight_decay: float = 0.0,
                 ns_steps: int = 5, normalize: bool = False):
        for group in groups:
            group.setdefault("use_muon", False)
            if group["use_muon"] and any(p.ndim < 2 for p in group["params"]):
                raise ValueError("Muon groups take matrices or conv filters (ndim >= 2); put the rest in an SGD group")
        if lr < 0 or not 0 <= momentum < 1 or weight_decay < 0 or ns_steps < 1:
            raise ValueError(f"need lr >= 0, 0 <= momentum < 1, weight_decay >= 0, ns_steps >= 1; got "
                             f"{lr}, {momentum}, {weight_decay}, {ns_steps}")
        super().__init__(groups, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, ns_steps=ns_steps,
                                      normalize=normalize))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, mu = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if group["use_muon"]:
                    self._muon_step(p, state, lr, mu, group["ns_steps"], group["normalize"])
                else:
                    grad = p.grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else p.grad
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = grad.clone()
                    else:
                        state["momentum_buffer"].mul_(mu).add_(grad)
                    p.add_(grad.add(state["momentum_buffer"], alpha=mu), alpha=-lr)
        return loss

    @staticmethod
    def _muon_step(p: torch.Tensor, state: dict, lr: float, mu: float, ns_steps: int, normalize: bool) -> None:
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p)
        buf = state["momentum_buffer"].lerp_(p.grad, 1 - mu)
        update = p.grad.lerp(buf, mu).reshape(len(p), -1)  # (out, in·kh·kw), whatever the memory layout
        rows, cols = update.shape
        if normalize:
            p.mul_(math.sqrt(len(p)) / p.norm().clamp(min=1e-12))
        ortho = orthogonalise(update, ns_steps).reshape(p.shape).to(p.dtype)
        p.add_(ortho, alpha=-lr * math.sqrt(max(1.0, rows / cols)))
