"""Gradient-descent optimisers from their update rules, in NumPy: SGD, Momentum, Nesterov, AdaGrad, RMSProp,
Adam, AdamW.

Curriculum topic: 深層モデルのための最適化 — SGD, モメンタム, NAG, AdaGrad, RMSProp, Adam (JDLA E資格), as
derived in Saito, "Deep Learning from Scratch" (2016), ch. 6 ("DLfS" below), and in the papers:
    Polyak 1964 (heavy ball); Nesterov 1983; Sutskever, Martens, Dahl & Hinton 2013 (NAG for deep learning);
    Bengio, Boulanger-Lewandowski & Pascanu 2013 (NAG reparametrised); Duchi, Hazan & Singer 2011 (AdaGrad);
    Tieleman & Hinton 2012 (RMSProp, Coursera lecture 6.5); Kingma & Ba 2015 (Adam);
    Loshchilov & Hutter 2019 (AdamW, decoupled weight decay).

Every class follows `torch.optim`'s convention exactly, so that `tests/test_scratch_optim.py` can require the
same parameter trajectory, step for step, as `torch.optim` in float64 (`torch_optimizer` builds the twin).
Notation: θ the parameters, g = ∇L(θ) at step t = 1, 2, ..., η the learning rate, λ the weight decay
(added to the gradient, g ← g + λθ, i.e. the gradient of L + λ/2·‖θ‖², in every class but AdamW).

    SGD        θ ← θ − η g
    Momentum   b ← μ b + (1 − τ) g  (b₁ = g);            θ ← θ − η b
    Nesterov   b ← μ b + g          (b₁ = g);            θ ← θ − η (g + μ b)
    AdaGrad    h ← h + g²           (h₀ = h_init);       θ ← θ − η_t g / (√h + ε),  η_t = η / (1 + (t − 1)·decay)
    RMSProp    h ← α h + (1 − α) g² (h₀ = 0);            θ ← θ − η g / (√h + ε)
               centered: ḡ ← α ḡ + (1 − α) g, √h → √(h − ḡ²);  with momentum μ: b ← μ b + g / (√h + ε), θ ← θ − η b
    Adam       m ← β₁ m + (1 − β₁) g;  v ← β₂ v + (1 − β₂) g²;  m̂ = m / (1 − β₁ᵗ);  v̂ = v / (1 − β₂ᵗ)
               θ ← θ − η m̂ / (√v̂ + ε)
    AdamW      θ ← θ − η λ θ  (decoupled: not through g, not divided by √v̂), then the Adam step with λ = 0

Where torch's form differs from the textbook one (each difference is tested):

- Momentum. Textbook (DLfS, Polyak): v ← μ v − η g, θ ← θ + v. torch keeps b in gradient units and applies
  η when stepping; with a constant η the two give the same θ (v = −η b), but when η changes (a schedule) the
  textbook velocity still carries the old η and torch's does not. torch's dampening τ (default 0) scales the
  gradient from the second step on; the first buffer is g itself.
- Nesterov. Sutskever et al. (2013): v ← μ v − η ∇L(θ + μ v), θ ← θ + v, a gradient at the look-ahead point.
  torch stores the look-ahead point itself, Θ = θ + μ v (Bengio et al. 2013, eq. 7), where the update needs
  only ∇L(Θ): Θ ← Θ + μ² v_old − (1 + μ) η g = Θ + μ v_new − η g, which is the b-form above (v = −η b).
  DLfS's `common/optimizer.py` writes `params += μ·μ·v; params −= (1 + μ)·η·g` *after* updating v, i.e. with
  v_new instead of v_old: Θ ← Θ + μ³ v_old − (1 + μ + μ²) η g. That is a momentum method, but not Nesterov's
  (`dlfs_nesterov_step` reproduces it; its first step is already (1 + μ + μ²) η g instead of (1 + μ) η g).
- AdaGrad. Duchi et al. and DLfS start from h₀ = 0 with ε after the square root (DLfS ε = 1e-7); torch adds
  `initial_accumulator_value` (h₀, default 0; TensorFlow's default 0.1) and `lr_decay`, and uses ε = 1e-10.
- RMSProp. torch (like DLfS) adds ε after the square root, g / (√h + ε), with α = 0.99 and ε = 1e-8;
  TensorFlow 1's `RMSPropOptimizer` adds it inside, g / √(h + ε) (decay 0.9, ε = 1e-10), and Hinton's lecture
  has none. The two placements differ when h is comparable to ε (tiny gradients), not otherwise.
- Adam. torch follows Kingma & Ba's Algorithm 1: ε is added to √v̂ (the bias-corrected second moment).
  DLfS uses the paper's "more efficient" reordering, η_t = η √(1 − β₂ᵗ) / (1 − β₁ᵗ), θ ← θ − η_t m / (√v + ε),
  which puts ε next to the *uncorrected* √v: the same update up to a rescaled ε (ε √(1 − β₂ᵗ)).
  torch's `weight_decay` in Adam is the coupled L2 term g ← g + λθ, which Adam then divides by √v̂, so
  parameters with large gradients are barely decayed: the problem AdamW solves.
- AdamW. Loshchilov & Hutter write θ ← θ − ζ_t (η m̂ / (√v̂ + ε) + λ θ) with ζ_t the schedule multiplier, so
  their decay is not multiplied by η; torch multiplies it by the full learning rate (θ ← θ (1 − η λ)), so
  torch's λ = the paper's λ / η. torch's default λ is 0.01 (Adam's is 0).

Parameters are NumPy arrays updated in place (`step(grads)`); `state` holds each parameter's buffers.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

import numpy as np


class Optimizer(abc.ABC):
    """Base: keeps the parameters, the step count t and one state dict per parameter; `update` is the rule."""

    decoupled_weight_decay = False

    def __init__(self, params: Sequence[np.ndarray], lr: float, weight_decay: float = 0.0):
        self.params = list(params)
        self.lr = lr
        self.weight_decay = weight_decay
        self.t = 0
        self.state: list[dict[str, Any]] = [{} for _ in self.params]

    def step(self, grads: Sequence[np.ndarray]) -> None:
        """One update of every parameter from its gradient (the gradients are not modified)."""
        if len(grads) != len(self.params):
            raise ValueError(f"{len(grads)} gradients for {len(self.params)} parameters")
        self.t += 1
        for theta, g, state in zip(self.params, grads, self.state):
            g = np.asarray(g, dtype=theta.dtype)
            if self.weight_decay and not self.decoupled_weight_decay:
                g = g + self.weight_decay * theta  # L2: the gradient of L + λ/2 ‖θ‖²
            self.update(theta, g, state)

    @abc.abstractmethod
    def update(self, theta: np.ndarray, g: np.ndarray, state: dict[str, Any]) -> None:
        ...


class SGD(Optimizer):
    """θ ← θ − η g"""

    def update(self, theta, g, state):
        theta -= self.lr * g


class Momentum(Optimizer):
    """b ← μ b + (1 − τ) g (b₁ = g);  θ ← θ − η b   (textbook: v = −η b, v ← μ v − η g, θ ← θ + v)"""

    def __init__(self, params, lr: float, momentum: float = 0.9, dampening: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, lr, weight_decay)
        self.momentum, self.dampening = momentum, dampening

    def update(self, theta, g, state):
        if "b" not in state:
            state["b"] = g.copy()
        else:
            state["b"] = self.momentum * state["b"] + (1 - self.dampening) * g
        theta -= self.lr * state["b"]


class Nesterov(Optimizer):
    """b ← μ b + g (b₁ = g);  θ ← θ − η (g + μ b)   (θ is Sutskever's look-ahead point θ + μ v)"""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0):
        super().__init__(params, lr, weight_decay)
        self.momentum = momentum

    def update(self, theta, g, state):
        state["b"] = g.copy() if "b" not in state else self.momentum * state["b"] + g
        theta -= self.lr * (g + self.momentum * state["b"])


class AdaGrad(Optimizer):
    """h ← h + g² (h₀ = initial_accumulator_value);  θ ← θ − η_t g / (√h + ε),  η_t = η / (1 + (t − 1) lr_decay)"""

    def __init__(self, params, lr: float = 0.01, eps: float = 1e-10, initial_accumulator_value: float = 0.0,
                 lr_decay: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, lr, weight_decay)
        self.eps, self.initial_accumulator_value, self.lr_decay = eps, initial_accumulator_value, lr_decay

    def update(self, theta, g, state):
        h = state.setdefault("h", np.full_like(theta, self.initial_accumulator_value))
        h += g * g
        lr_t = self.lr / (1 + (self.t - 1) * self.lr_decay)
        theta -= lr_t * g / (np.sqrt(h) + self.eps)


class RMSProp(Optimizer):
    """h ← α h + (1 − α) g²;  θ ← θ − η g / (√h + ε)   (ε after the square root, as torch and DLfS)"""

    def __init__(self, params, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8, momentum: float = 0.0,
                 centered: bool = False, weight_decay: float = 0.0):
        super().__init__(params, lr, weight_decay)
        self.alpha, self.eps, self.momentum, self.centered = alpha, eps, momentum, centered

    def update(self, theta, g, state):
        h = state.setdefault("h", np.zeros_like(theta))
        h *= self.alpha
        h += (1 - self.alpha) * g * g
        if self.centered:  # divide by an estimate of the gradient's standard deviation instead of its RMS
            g_mean = state.setdefault("g_mean", np.zeros_like(theta))
            g_mean *= self.alpha
            g_mean += (1 - self.alpha) * g
            denominator = np.sqrt(h - g_mean * g_mean) + self.eps
        else:
            denominator = np.sqrt(h) + self.eps
        if self.momentum > 0:
            b = state.setdefault("b", np.zeros_like(theta))
            b *= self.momentum
            b += g / denominator
            theta -= self.lr * b
        else:
            theta -= self.lr * g / denominator


class Adam(Optimizer):
    """m ← β₁ m + (1 − β₁) g;  v ← β₂ v + (1 − β₂) g²;  θ ← θ − η m̂ / (√v̂ + ε)
    with the bias corrections m̂ = m / (1 − β₁ᵗ), v̂ = v / (1 − β₂ᵗ)"""

    def __init__(self, params, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, lr, weight_decay)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def update(self, theta, g, state):
        m = state.setdefault("m", np.zeros_like(theta))
        v = state.setdefault("v", np.zeros_like(theta))
        m *= self.beta1
        m += (1 - self.beta1) * g
        v *= self.beta2
        v += (1 - self.beta2) * g * g
        m_hat = m / (1 - self.beta1 ** self.t)  # bias correction: m and v start at 0, so early averages are too small
        v_hat = v / (1 - self.beta2 ** self.t)
        theta -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


class AdamW(Adam):
    """θ ← θ − η λ θ (decoupled weight decay), then the Adam step on the plain gradient."""

    decoupled_weight_decay = True

    def __init__(self, params, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.01):
        super().__init__(params, lr, beta1, beta2, eps, weight_decay)

    def update(self, theta, g, state):
        theta *= 1 - self.lr * self.weight_decay
        super().update(theta, g, state)


OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov,
                                          "adagrad": AdaGrad, "rmsprop": RMSProp, "adam": Adam, "adamw": AdamW}
"""Name -> class; `make(name, params, lr, **hyper)` builds one."""

NAMES = {"sgd": "SGD", "momentum": "Momentum", "nesterov": "Nesterov", "adagrad": "AdaGrad", "rmsprop": "RMSProp",
         "adam": "Adam", "adamw": "AdamW"}


def make(name: str, params: Sequence[np.ndarray], lr: float, **hyper: Any) -> Optimizer:
    """The NumPy optimiser `name` ('sgd', 'momentum', ..., 'adamw') on `params`."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimiser {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](params, lr=lr, **hyper)


def torch_optimizer(name: str, params, lr: float, **hyper: Any):
    """The `torch.optim` optimiser whose steps equal `make(name, ..., lr, **hyper)` (same keyword names)."""
    import torch

    weight_decay = hyper.pop("weight_decay", None)
    wd = {} if weight_decay is None else {"weight_decay": weight_decay}
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, **wd, **hyper)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=hyper.pop("momentum", 0.9), **wd, **hyper)
    if name == "nesterov":
        return torch.optim.SGD(params, lr=lr, momentum=hyper.pop("momentum", 0.9), nesterov=True, **wd, **hyper)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, **wd, **hyper)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, **wd, **hyper)
    if name in ("adam", "adamw"):
        betas = (hyper.pop("beta1", 0.9), hyper.pop("beta2", 0.999))
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(params, lr=lr, betas=betas, **wd, **hyper)
    raise ValueError(f"unknown optimiser {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def dlfs_nesterov_step(theta: np.ndarray, v: np.ndarray, g: np.ndarray, lr: float, momentum: float = 0.9) -> None:
    """DLfS's `Nesterov.update` (common/optimizer.py), in place, for comparison only: it applies μ² to the
    *updated* velocity, which Bengio et al.'s eq. 7 applies to the previous one — not Nesterov's method."""
    v *= momentum
    v -= lr * g
    theta += momentum * momentum * v
    theta -= (1 + momentum) * lr * g
