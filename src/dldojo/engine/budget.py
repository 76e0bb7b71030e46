"""Time budgets: how many epochs fit into N minutes on *this* machine.

A preset that promises "≤ 2 minutes" (quick) or "best accuracy in 30 minutes" (a speed benchmark) cannot
fix its epochs once for every CPU: the same airbench94 step runs ~3× faster on a CPU with native bf16
(AVX512-BF16 / AMX) than on one with AVX2 only. So such a preset gives a time budget and an epoch cap;
before training, the experiment times a few steps on throwaway copies of its model and optimiser and
trains for

    epochs = min(cap, ⌊0.95 · (budget − elapsed − final evaluation − 5 s) / (epoch + evaluation per epoch)⌋)

rounded down to a tenth of an epoch. The choice goes through `RunContext.decide`, so a resumed run keeps
it, and into the summary (`epochs`), so a budgeted run can be replayed exactly with `--set epochs=E
--set time_budget_minutes=0`. On a machine fast enough for the cap the budget changes nothing.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable

import torch

SAFETY = 0.95  # the probe's steps are the run's first (cold caches); leave room for its noise
GRID = 0.1     # epochs are chosen in tenths, so timing noise rarely changes the choice
RESERVE = 5.0  # seconds for what follows the evaluation: weights, figures, the report


def seconds_per_call(fn: Callable[[], object], calls: int = 3, warmup: int = 1) -> float:
    """Median wall seconds of `fn()` after `warmup` calls; every RNG is restored afterwards, so probing
    leaves the run's random stream exactly as it was."""
    with torch.random.fork_rng(devices=[]):
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def epochs_within(budget_seconds: float, elapsed_seconds: float, *, epoch_seconds: float, cap: float,
                  eval_seconds: float = 0.0, eval_every: float = 0.0, final_seconds: float = 0.0) -> float:
    """The most epochs (≤ cap, in tenths) whose training, periodic evaluation (`eval_seconds` every
    `eval_every` epochs; 0 = none) and final evaluation fit in what is left of the budget."""
    per_epoch = epoch_seconds + (eval_seconds / eval_every if eval_every else 0.0)
    left = SAFETY * (budget_seconds - elapsed_seconds - final_seconds - RESERVE)
    # round(…, 6) first: 7.6 / 0.1 is 75.99999… in floating point, and 7.6 epochs do fit
    epochs = math.floor(round(max(left, 0.0) / per_epoch / GRID, 6)) * GRID if per_epoch > 0 else cap
    if epochs < GRID:
        print(f"[dldojo] the time budget ({budget_seconds / 60:.1f} min) leaves no room here: one epoch takes "
              f"{per_epoch:.0f} s and {elapsed_seconds + final_seconds:.0f} s go to loading and evaluation; "
              f"training {GRID:g} epoch anyway (raise time_budget_minutes, or set it to 0 to use epochs)",
              file=sys.stderr)
        return GRID
    return round(min(cap, epochs), 6)


def optimiser_step(loss_fn: Callable, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                   batch: tuple) -> Callable[[], None]:
    """One training step of `model` — a throwaway copy, with its own optimiser — as a callable to time."""
    def step() -> None:
        loss = loss_fn(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def choose_epochs(minutes: float, elapsed_seconds: float, *, cap: float, steps_per_epoch: int,
                  train_step: Callable[[], object], predict_probe: Callable[[], object], probe_fraction: float,
                  predictions_at_end: int, steps_at_end: int = 0, eval_every: float = 0.0, quiet: bool = False,
                  what: str = "") -> float:
    """Time `train_step` (one optimiser step on throwaway copies) and `predict_probe` (a prediction on
    `probe_fraction` of the test set), then `epochs_within` the budget: `predictions_at_end` test passes
    and `steps_at_end` training steps (throughput measurements) after training, and a test pass every
    `eval_every` epochs. The probe's own time (~15 s of a 2-minute quick run on a slow CPU) counts as
    spent. Prints the choice."""
    probe_started = time.perf_counter()
    step_seconds = seconds_per_call(train_step)
    with torch.no_grad():
        test_seconds = seconds_per_call(predict_probe, calls=1) / probe_fraction
    elapsed_seconds += time.perf_counter() - probe_started
    epochs = epochs_within(60 * minutes, elapsed_seconds, epoch_seconds=step_seconds * steps_per_epoch, cap=cap,
                           eval_seconds=test_seconds, eval_every=eval_every,
                           final_seconds=predictions_at_end * test_seconds + steps_at_end * step_seconds)
    if not quiet:
        print(f"[dldojo] time budget {minutes:g} min: {epochs:g} of at most {cap:g} epochs ({step_seconds:.2f} s "
              f"per training step{what}, {test_seconds:.1f} s per test pass on this machine; "
              f"{elapsed_seconds:.0f} s spent so far)", file=sys.stderr)
    return epochs
