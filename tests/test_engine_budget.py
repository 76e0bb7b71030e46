"""Time budgets (engine/budget.py): the epochs a preset trains are what fits its minutes on this machine."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from dldojo.engine import budget
from dldojo.engine.errors import DojoError, RunInterrupted
from dldojo.engine.launch import run_experiment
from dldojo.engine.reload import load_weights
from dldojo.engine.run import INTERRUPT_ENV
from dldojo.vision.classify import ClassifyConfig


def test_epochs_within_is_the_formula_in_tenths_capped_and_never_zero(capsys):
    # 0.95 · (100 − 10 elapsed − 5 final − 5 reserved for the report) / 10 s per epoch = 7.6
    assert budget.epochs_within(100, 10, epoch_seconds=10, cap=50, final_seconds=5) == pytest.approx(7.6)
    # an evaluation of 4 s every 2 epochs makes an epoch cost 12 s: 0.95 · 80 / 12 = 6.33 → 6.3
    assert budget.epochs_within(100, 10, epoch_seconds=10, cap=50, eval_seconds=4, eval_every=2,
                                final_seconds=5) == pytest.approx(6.3)
    assert budget.epochs_within(100, 10, epoch_seconds=10, cap=3.5, final_seconds=5) == 3.5
    assert budget.epochs_within(10, 30, epoch_seconds=10, cap=5) == budget.GRID
    assert "raise time_budget_minutes" in capsys.readouterr().err


def test_timing_a_step_leaves_the_random_stream_as_it_was():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    seconds = budget.seconds_per_call(lambda: torch.rand(1000), calls=3)
    assert seconds >= 0 and torch.equal(torch.rand(3), expected)


def test_a_negative_budget_is_a_clear_error():
    with pytest.raises(DojoError, match="time_budget_minutes must be >= 0"):
        ClassifyConfig(time_budget_minutes=-1).validate()


def test_a_budget_that_fits_the_cap_changes_nothing(synthetic_data):
    sets = ["epochs=1.5", "batch_size=16", "train_subset=160"]
    plain = run_experiment("cifar10-airbench93", preset="smoke", sets=sets, seed=1, quiet=True, report=False)
    budgeted = run_experiment("cifar10-airbench93", preset="smoke", sets=sets + ["time_budget_minutes=60"], seed=1,
                              quiet=True, report=False)
    assert budgeted["facts"]["epochs"] == plain["facts"]["epochs"] == 1.5
    assert budgeted["metrics"] == plain["metrics"]
    a, b = load_weights(plain["run_dir"]), load_weights(budgeted["run_dir"])
    assert all(torch.equal(a[k], b[k]) for k in a)


def _pretend_loading_took_no_time(monkeypatch):
    """The time really spent loading data before the choice depends on the machine (a CI box took seconds more
    than a laptop); these tests check the arithmetic of the choice, so that part is pinned at 0 s."""
    within = budget.epochs_within
    monkeypatch.setattr(budget, "epochs_within", lambda budget_seconds, elapsed_seconds, **kw: within(
        budget_seconds, 0.0, **kw))


def test_a_budgeted_run_trains_what_fits_and_a_resumed_run_keeps_that_choice(synthetic_data, monkeypatch):
    # pretend every timed call (a training step of 16, a test prediction) takes 0.5 s on this machine
    monkeypatch.setattr(budget, "seconds_per_call", lambda fn, calls=3, warmup=1: 0.5)
    _pretend_loading_took_no_time(monkeypatch)
    sets = ["epochs=20", "batch_size=16", "train_subset=160", "time_budget_minutes=0.3"]  # 10 steps = 5 s an epoch
    monkeypatch.setenv(INTERRUPT_ENV, "12")
    with pytest.raises(RunInterrupted):
        run_experiment("cifar10-airbench93", preset="smoke", sets=sets, quiet=True, report=False)
    run_dir = next(Path(os.environ["DLDOJO_RUNS"], "cifar10-airbench93").iterdir())
    chosen = json.loads((run_dir / "decisions.json").read_text())["epochs"]
    assert 1.5 <= chosen <= 2.4  # 0.95 · (18 s − 0.5 s of testing − 5 s reserved) / 5 s, in tenths
    # the machine is slower now: choosing again would give 0.1 epoch; the resumed run keeps its choice
    monkeypatch.setattr(budget, "seconds_per_call", lambda fn, calls=3, warmup=1: 100.0)
    monkeypatch.delenv(INTERRUPT_ENV)
    resumed = run_experiment(resume=run_dir, quiet=True, report=False)
    assert resumed["facts"]["epochs"] == chosen
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == math.ceil(chosen * 10)


def test_transfer_budget_counts_its_evaluations(synthetic_data, monkeypatch):
    monkeypatch.setattr(budget, "seconds_per_call", lambda fn, calls=3, warmup=1: 0.25)
    _pretend_loading_took_no_time(monkeypatch)
    # 65 flowers in batches of 16 = 4 steps (1 s) an epoch, a validation pass after each one (10 images: half
    # the 0.25 s of a 20-image test pass), and 7 predictions (6 TTA views + the plain one) of test and validation
    # at the end, 7 · 1.5 · 0.25 s, plus 4 timed steps: 0.95 · (12 s − 3.6 s − 5 s) / 1.125 s ≈ 2.8.
    # Without the evaluations it would be 0.95 · (12 − 5) / 1 = 6.6.
    summary = run_experiment("transfer-flowers", preset="smoke", quiet=True, report=False,
                             sets=["epochs=20", "tta=2", "time_budget_minutes=0.2", "variants=scratch,finetune",
                                   "train_subset=64"])
    assert 2.5 <= summary["facts"]["epochs"] <= 4.0
