"""Learning-rate schedules shared by experiments.

The schedules are plain functions of the step (0-based, the step about to be taken) that return the
learning-rate factor, 1 at the peak, so that they plug into `torch.optim.lr_scheduler.LambdaLR`:

    LambdaLR(optimizer, lambda s: warmup_cosine(s, total, warmup=200, final=0.01))

or, given `lr=` (the peak learning rate), the learning rate itself, for loops that set
`group["lr"]` by hand. Passing `lr` rather than multiplying the result keeps the floating-point
operation order of the formulas the experiments were written with, so their numbers are bit for bit
those of before.

Every warm-up here is the same linear ramp: the factor at step s < warmup is (s + 1) / warmup, so the
first step already learns (1 / warmup) and step warmup − 1 is at the peak. That is
`LinearLR(start_factor=1/warmup, end_factor=1, total_iters=warmup-1)`; Hugging Face's
`get_*_schedule_with_warmup` use s / warmup instead (a step with learning rate 0, the peak one step
later). warmup ≤ 1 means no warm-up. After `total` steps every schedule stays at its final value,
where torch's CosineAnnealingLR would climb again.

- `warmup_inverse_sqrt`: linear warm-up, then ∝ 1/√step (Vaswani et al. 2017, without d_model^-0.5).
- `warmup_cosine`: linear warm-up, then a cosine to `final` (after the warm-up, or over all steps
  scaled by the ramp).
- `warmup_linear`: linear warm-up, then a straight line to `final`.
- `triangle`: piecewise linear start → 1 → end (airbench's and transfer's schedule).
- `OneCycle`: fastai's one-cycle policy for learning rate and momentum, as a scheduler object.

tests/test_engine_schedules.py checks each one step for step against the matching composition of
`torch.optim.lr_scheduler` classes (the relation is stated in each docstring).
"""

from __future__ import annotations

import math
from typing import Literal

import torch


def _ramp(step: int, warmup: int, lr: float) -> float:
    return lr * (step + 1) / warmup


def _cosine(progress: float, final: float) -> float:
    """1 at progress 0, `final` at progress 1, half a cosine in between."""
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_inverse_sqrt(step: int, warmup: int, *, lr: float = 1.0) -> float:
    """Linear warm-up to 1 at step warmup − 1, then √(warmup / (step + 1)).

    This is Vaswani et al. (2017)'s d_model^-0.5 · min(n^-0.5, n · warmup^-1.5) with n = step + 1,
    divided by its peak value d_model^-0.5 · warmup^-0.5, so that the peak is 1 (or `lr`). torch has no
    built-in inverse-√ decay: `SequentialLR` of `LinearLR(1/warmup, 1, warmup-1)` and, from step
    `warmup`, `LambdaLR(lambda k: √(warmup / (warmup + k + 1)))`.
    """
    warmup = max(warmup, 1)
    if step < warmup:
        return _ramp(step, warmup, lr)
    return lr * math.sqrt(warmup / (step + 1))


def warmup_cosine(step: int, total: int, warmup: int, final: float = 0.0, *,
                  cosine_over: Literal["rest", "all"] = "rest", lr: float = 1.0) -> float:
    """Linear warm-up, then a half cosine from 1 down to `final` (a fraction of the peak) at step `total`.

    cosine_over="rest" (the transformer's schedule): the ramp reaches 1 at step warmup − 1, the cosine
    starts at step `warmup` (so the peak is held for two steps) and ends at `total`. Torch:
    `SequentialLR([LinearLR(1/warmup, 1, total_iters=warmup-1),
    CosineAnnealingLR(T_max=total-warmup, eta_min=final·lr)], milestones=[warmup])`.

    cosine_over="all" (seq2seq's schedule): the cosine runs over all steps, from 1 at step 0 to `final`
    at `total`, and the warm-up ramp min(1, (step + 1) / warmup) multiplies it (the top is a little
    below 1). Torch: the product of `LinearLR(1/warmup, 1, total_iters=warmup-1)` and
    `CosineAnnealingLR(T_max=total, eta_min=final·lr)`; with final = 0 that is
    `ChainedScheduler([LinearLR(...), CosineAnnealingLR(T_max=total)])` (which multiplies only when
    eta_min is 0).
    """
    warmup = max(warmup, 1)
    if cosine_over == "all":
        warm = min(1.0, (step + 1) / warmup)
        progress = min(1.0, step / max(total, 1))
        return lr * warm * _cosine(progress, final)
    if cosine_over != "rest":
        raise ValueError(f"cosine_over must be 'rest' or 'all', got {cosine_over!r}")
    if step < warmup:
        return _ramp(step, warmup, lr)
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return lr * _cosine(progress, final)


def warmup_linear(step: int, total: int, warmup: int, final: float = 0.0, *, lr: float = 1.0) -> float:
    """Linear warm-up to 1 at step warmup − 1, then a straight line from 1 at step `warmup` to `final`
    at step `total`. Torch: `SequentialLR([LinearLR(1/warmup, 1, total_iters=warmup-1),
    LinearLR(1, final, total_iters=total-warmup)], milestones=[warmup])`.
    """
    warmup = max(warmup, 1)
    if step < warmup:
        return _ramp(step, warmup, lr)
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return lr * (1 + (final - 1) * progress)


def triangle(step: int, total: int, start: float, peak_at: float, end: float, *, lr: float = 1.0) -> float:
    """Piecewise-linear: `start` at step 0, 1 at step peak = max(1, int(peak_at · total)), `end` at `total`
    (and after it). Torch (for start > 0, which LinearLR needs): `SequentialLR([LinearLR(start, 1,
    total_iters=peak), LinearLR(1, end, total_iters=total-peak)], milestones=[peak])`.
    """
    step, peak = min(step, total), max(1, int(peak_at * total))
    if step <= peak:
        return lr * (start + (1 - start) * step / peak)
    return lr * (1 + (end - 1) * (step - peak) / max(1, total - peak))


def _cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2 * (math.cos(math.pi * pct) + 1)


class OneCycle:
    """fastai's `fit_one_cycle` (Smith 2018, "A disciplined approach to neural network hyper-parameters").

    The learning rate rises from max_lr/div to max_lr over the first `pct_start` of the steps and falls
    to max_lr/div/div_final by step `total_steps`, both along cosines, while momentum (SGD momentum or
    Adam's β1) moves the opposite way, moms[0] → moms[1] → moms[0]. Call `step()` after each optimiser
    step; it is checkpointed through `state_dict`.

    torch's `OneCycleLR(max_lr, total_steps=T + 1, pct_start=(pct_start·T + 1) / (T + 1),
    div_factor=div, final_div_factor=div_final, base_momentum=moms[1], max_momentum=moms[0])` gives the
    same learning rates and momenta for steps 0…T: torch reaches the peak at step pct_start·total − 1
    and the end at step total − 1, this class at pct_start·T and T. Unlike OneCycleLR it also works for
    runs of a handful of steps, and after T it stays at the end values.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, max_lr: float, total_steps: int, pct_start: float = 0.25,
                 div: float = 25.0, div_final: float = 1e5, moms: tuple[float, float] = (0.95, 0.85)):
        self.optimizer, self.max_lr, self.total_steps = optimizer, max_lr, max(1, total_steps)
        self.pct_start, self.div, self.div_final, self.moms = pct_start, div, div_final, moms
        self.step_count = 0
        self._apply()

    def values(self, step: int) -> tuple[float, float]:
        pct = min(step / self.total_steps, 1.0)
        warm = max(self.pct_start, 1e-8)
        if pct < self.pct_start:
            p = pct / warm
            return _cos(self.max_lr / self.div, self.max_lr, p), _cos(self.moms[0], self.moms[1], p)
        p = (pct - self.pct_start) / max(1 - self.pct_start, 1e-8)
        return (_cos(self.max_lr, self.max_lr / self.div / self.div_final, p),
                _cos(self.moms[1], self.moms[0], p))

    def _apply(self) -> None:
        lr, mom = self.values(self.step_count)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
            if "betas" in group:
                group["betas"] = (mom, group["betas"][1])
            elif "momentum" in group:
                group["momentum"] = mom

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def state_dict(self) -> dict:
        return {"step_count": self.step_count}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = state["step_count"]
        self._apply()
