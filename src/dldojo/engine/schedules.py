"""Learning-rate schedules shared by experiments.

`OneCycle` is fastai's `fit_one_cycle` (Smith 2018, "A disciplined approach to neural network
hyper-parameters"): the learning rate rises from lr/div to lr over the first `pct_start` of the steps
and falls to lr/div_final, both with cosine curves, while momentum (SGD momentum or Adam's β1) moves
the opposite way. Unlike torch's OneCycleLR it also works for runs of a handful of steps.
"""

from __future__ import annotations

import math

import torch


def _cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2 * (math.cos(math.pi * pct) + 1)


class OneCycle:
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
