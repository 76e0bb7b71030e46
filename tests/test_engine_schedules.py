"""engine/schedules.py: each schedule step for step against torch.optim.lr_scheduler, golden values, and the
experiments' learning-rate functions unchanged (bit for bit) by the move."""

from __future__ import annotations

import dataclasses
import math
import warnings

import pytest
import torch
from torch.optim import lr_scheduler as tl

from dldojo.engine import schedules as S

BASE_LR = 0.3


def seen(make_scheduler, steps: int, optimizer: str = "sgd", base_lr: float = BASE_LR):
    """The learning rates (and momenta / β1) an optimiser uses at steps 0 … steps-1 under a scheduler that is
    stepped after each optimiser step."""
    p = torch.nn.Parameter(torch.zeros(2))
    opt = (torch.optim.SGD([p], lr=base_lr, momentum=0.9) if optimizer == "sgd"
           else torch.optim.Adam([p], lr=base_lr, betas=(0.9, 0.99)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's own deprecation notes inside SequentialLR / ChainedScheduler
        scheduler = make_scheduler(opt)
        lrs, moms = [], []
        for _ in range(steps):
            group = opt.param_groups[0]
            lrs.append(group["lr"])
            moms.append(group["betas"][0] if "betas" in group else group["momentum"])
            p.grad = torch.ones_like(p)
            opt.step()
            scheduler.step()
    return lrs, moms


def engine(fn, steps: int) -> list[float]:
    """The learning rates of `fn` (a factor of the step) used through LambdaLR, as an experiment would."""
    lrs, _ = seen(lambda opt: tl.LambdaLR(opt, fn), steps)
    # and the lr= form gives the same learning rates directly
    torch.testing.assert_close(torch.tensor([fn(s) * BASE_LR for s in range(steps)], dtype=torch.float64),
                               torch.tensor(lrs, dtype=torch.float64), rtol=1e-15, atol=0)
    return lrs


def close(actual: list[float], expected: list[float]) -> None:
    torch.testing.assert_close(torch.tensor(actual, dtype=torch.float64), torch.tensor(expected, dtype=torch.float64),
                               rtol=1e-10, atol=1e-13)


def linear_warmup(opt, warmup: int):
    return tl.LinearLR(opt, start_factor=1 / warmup, end_factor=1.0, total_iters=warmup - 1)


# ----- step for step against torch -----

@pytest.mark.parametrize("warmup", [1, 4, 25])
def test_warmup_inverse_sqrt_matches_linear_lr_then_inverse_sqrt(warmup):
    steps = 120
    ours = engine(lambda s: S.warmup_inverse_sqrt(s, warmup), steps)
    ref, _ = seen(lambda opt: tl.SequentialLR(opt, [linear_warmup(opt, warmup),
                                                    tl.LambdaLR(opt, lambda k: math.sqrt(warmup / (warmup + k + 1)))],
                                              milestones=[warmup]), steps)
    close(ours, ref)
    # Vaswani et al.'s formula with n = step + 1, normalised to a peak of 1
    vaswani = [math.sqrt(warmup) * min(n**-0.5, n * warmup**-1.5) for n in range(1, steps + 1)]
    close([S.warmup_inverse_sqrt(s, warmup) for s in range(steps)], vaswani)


@pytest.mark.parametrize("total,warmup,final", [(50, 10, 0.01), (40, 1, 0.0), (31, 5, 0.2), (200, 60, 0.05)])
def test_warmup_cosine_rest_matches_sequential_linear_cosine(total, warmup, final):
    ours = engine(lambda s: S.warmup_cosine(s, total, warmup, final), total + 1)
    ref, _ = seen(lambda opt: tl.SequentialLR(opt, [linear_warmup(opt, warmup),
                                                    tl.CosineAnnealingLR(opt, T_max=total - warmup,
                                                                         eta_min=final * BASE_LR)],
                                              milestones=[warmup]), total + 1)
    close(ours, ref)
    assert ours[warmup - 1] == ours[warmup] == BASE_LR  # the peak, held for two steps
    assert ours[-1] == pytest.approx(final * BASE_LR)


@pytest.mark.parametrize("total,warmup", [(50, 10), (40, 1), (33, 7)])
def test_warmup_cosine_all_matches_chained_linear_cosine(total, warmup):
    ours = engine(lambda s: S.warmup_cosine(s, total, warmup, 0.0, cosine_over="all"), total + 1)
    ref, _ = seen(lambda opt: tl.ChainedScheduler([linear_warmup(opt, warmup),
                                                   tl.CosineAnnealingLR(opt, T_max=total)]), total + 1)
    close(ours, ref)


@pytest.mark.parametrize("total,warmup,final", [(50, 10, 0.05), (40, 1, 0.3), (33, 7, 1.0)])
def test_warmup_cosine_all_is_the_product_of_linear_lr_and_cosine_annealing(total, warmup, final):
    # ChainedScheduler multiplies only when eta_min = 0, so with a final ratio the two torch schedules run
    # side by side and their factors multiply
    ours = engine(lambda s: S.warmup_cosine(s, total, warmup, final, cosine_over="all"), total + 1)
    ramp, _ = seen(lambda opt: linear_warmup(opt, warmup), total + 1)
    cosine, _ = seen(lambda opt: tl.CosineAnnealingLR(opt, T_max=total, eta_min=final * BASE_LR), total + 1)
    close(ours, [r * c / BASE_LR for r, c in zip(ramp, cosine)])


@pytest.mark.parametrize("total,warmup,final", [(50, 10, 0.0), (40, 1, 0.1), (30, 7, 0.5)])
def test_warmup_linear_matches_sequential_linear_linear(total, warmup, final):
    ours = engine(lambda s: S.warmup_linear(s, total, warmup, final), total + 1)
    ref, _ = seen(lambda opt: tl.SequentialLR(opt, [linear_warmup(opt, warmup),
                                                    tl.LinearLR(opt, 1.0, final, total_iters=total - warmup)],
                                              milestones=[warmup]), total + 1)
    close(ours, ref)


@pytest.mark.parametrize("total,start,peak_at,end", [(100, 0.1, 0.2, 0.0), (97, 0.2, 0.23, 0.07),
                                                     (10, 0.2, 0.25, 0.05), (50, 0.3, 1.0, 0.5),
                                                     (40, 1.0, 0.001, 0.0)])
def test_triangle_matches_two_linear_lrs(total, start, peak_at, end):
    peak = max(1, int(peak_at * total))
    ours = engine(lambda s: S.triangle(s, total, start, peak_at, end), total + 1)
    if peak == total:  # no decay (LinearLR cannot have total_iters=0 after a milestone)
        ref, _ = seen(lambda opt: tl.LinearLR(opt, start, 1.0, total_iters=peak), total + 1)
    else:
        ref, _ = seen(lambda opt: tl.SequentialLR(opt, [tl.LinearLR(opt, start, 1.0, total_iters=peak),
                                                        tl.LinearLR(opt, 1.0, end, total_iters=total - peak)],
                                                  milestones=[peak]), total + 1)
    close(ours, ref)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("total,pct_start,div,div_final,moms", [(40, 0.25, 25.0, 1e5, (0.95, 0.85)),
                                                                (101, 0.3, 10.0, 1e3, (0.9, 0.8))])
def test_one_cycle_matches_one_cycle_lr(optimizer, total, pct_start, div, div_final, moms):
    ours_lr, ours_mom = seen(lambda opt: S.OneCycle(opt, BASE_LR, total, pct_start, div, div_final, moms),
                             total + 1, optimizer)
    ref_lr, ref_mom = seen(lambda opt: tl.OneCycleLR(opt, BASE_LR, total_steps=total + 1,
                                                     pct_start=(pct_start * total + 1) / (total + 1),
                                                     div_factor=div, final_div_factor=div_final,
                                                     base_momentum=moms[1], max_momentum=moms[0]),
                           total + 1, optimizer)
    close(ours_lr, ref_lr)
    close(ours_mom, ref_mom)
    assert (ours_lr[0], ours_lr[-1]) == pytest.approx((BASE_LR / div, BASE_LR / div / div_final))
    assert ours_mom[0] == ours_mom[-1] == pytest.approx(moms[0])
    assert max(ours_lr) == pytest.approx(BASE_LR, rel=1e-3) and min(ours_mom) == pytest.approx(moms[1], rel=1e-3)


# ----- golden values -----

def test_warmup_inverse_sqrt_golden():
    got = [S.warmup_inverse_sqrt(s, 4) for s in (0, 1, 3, 4, 15, 99)]
    assert got == pytest.approx([0.25, 0.5, 1.0, math.sqrt(4 / 5), 0.5, 0.2])
    assert S.warmup_inverse_sqrt(0, 0) == S.warmup_inverse_sqrt(0, 1) == 1.0  # no warm-up
    assert S.warmup_inverse_sqrt(15, 4, lr=2e-3) == pytest.approx(1e-3)


def test_warmup_cosine_golden():
    rest = [S.warmup_cosine(s, 110, 10, 0.01) for s in (0, 4, 9, 10, 60, 110, 500)]
    assert rest == pytest.approx([0.1, 0.5, 1.0, 1.0, 0.505, 0.01, 0.01])
    every = [S.warmup_cosine(s, 100, 10, 0.0, cosine_over="all") for s in (0, 4, 50, 100, 500)]
    assert every == pytest.approx([0.1, 0.5 * 0.5 * (1 + math.cos(0.04 * math.pi)), 0.5, 0.0, 0.0])
    flat = [S.warmup_cosine(s, 100, 10, 1.0, cosine_over="all") for s in (0, 4, 9, 50, 100)]
    assert flat == pytest.approx([0.1, 0.5, 1.0, 1.0, 1.0])
    assert S.warmup_cosine(60, 110, 10, 0.01, lr=2e-3) == pytest.approx(1.01e-3)
    with pytest.raises(ValueError):
        S.warmup_cosine(0, 10, 2, cosine_over="middle")


def test_warmup_linear_golden():
    got = [S.warmup_linear(s, 110, 10) for s in (0, 9, 10, 60, 110, 300)]
    assert got == pytest.approx([0.1, 1.0, 1.0, 0.5, 0.0, 0.0])
    assert S.warmup_linear(60, 110, 10, 0.2) == pytest.approx(0.6)
    assert S.warmup_linear(60, 110, 10, 0.2, lr=0.5) == pytest.approx(0.3)


def test_triangle_golden():
    got = [S.triangle(s, 100, 0.1, 0.2, 0.0) for s in (0, 10, 20, 60, 100, 150)]
    assert got == pytest.approx([0.1, 0.55, 1.0, 0.5, 0.0, 0.0])
    # norm_study's form: from 0, peak at the warm-up fraction
    assert [S.triangle(s, 10, 0.0, 0.3, 0.0) for s in (0, 3, 5, 10)] == pytest.approx([0.0, 1.0, 5 / 7, 0.0])
    assert S.triangle(3, 10, 0.0, 0.3, 0.0, lr=0.4) == pytest.approx(0.4)


def test_one_cycle_golden():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0, momentum=0.9)
    sched = S.OneCycle(opt, 1.0, 8)  # peak at step 2
    assert (opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"]) == pytest.approx((0.04, 0.95))
    assert sched.values(1) == pytest.approx((0.52, 0.9))
    assert sched.values(2) == pytest.approx((1.0, 0.85))
    assert sched.values(5) == pytest.approx(((1 + 4e-7) / 2, 0.9))
    assert sched.values(8) == sched.values(20) == pytest.approx((4e-7, 0.95))
    for _ in range(3):
        sched.step()
    state = sched.state_dict()
    other = S.OneCycle(opt, 1.0, 8)  # resets the optimiser to step 0
    other.load_state_dict(state)
    assert other.step_count == 3
    assert (opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"]) == sched.values(3)  # applied on load


def test_one_cycle_works_for_a_handful_of_steps():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=1.0)
    sched = S.OneCycle(opt, 1e-2, 2)
    lrs = []
    for _ in range(3):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    down = 0.5 + 0.5 * math.cos(math.pi / 3)  # step 1 is a third of the way down: (0.5 - 0.25) / 0.75
    assert lrs == pytest.approx([4e-4, 1e-2 * down + 4e-9 * (1 - down), 4e-9])


# ----- the experiments' schedules are unchanged, bit for bit -----
# Verbatim copies of the formulas as they were before engine/schedules.py held them (commit 4df36b8).

def old_transformer_lr(cfg, step: int, total_steps: int) -> float:
    warmup = max(cfg.warmup_steps, 1)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    if cfg.schedule == "inverse_sqrt":
        return cfg.lr * math.sqrt(warmup / (step + 1))
    progress = min((step - warmup) / max(total_steps - warmup, 1), 1.0)
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))


def old_seq2seq_lr(cfg, step: int, total_steps: int) -> float:
    warm = min(1.0, (step + 1) / max(cfg.warmup_steps, 1))
    progress = min(1.0, step / max(total_steps, 1))
    decay = cfg.final_lr_ratio + (1 - cfg.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return cfg.lr * warm * decay


def old_triangle(step: int, total: int, start: float, peak_at: float, end: float) -> float:
    step, peak = min(step, total), max(1, int(peak_at * total))
    if step <= peak:
        return start + (1 - start) * step / peak
    return 1 + (end - 1) * (step - peak) / max(1, total - peak)


LRS = (2e-3, 1e-3, 7e-4, 5e-4, 3e-4, 3.7e-3)


@pytest.mark.parametrize("schedule", ["cosine", "inverse_sqrt"])
def test_transformer_learning_rate_is_unchanged(schedule):
    from dldojo.text.transformer import TransformerConfig, learning_rate
    for lr in LRS:
        for warmup in (0, 1, 5, 50, 200):
            cfg = dataclasses.replace(TransformerConfig(), lr=lr, warmup_steps=warmup, schedule=schedule)
            for total in (3, 60, 1000):
                for step in range(total + 20):
                    assert learning_rate(cfg, step, total) == old_transformer_lr(cfg, step, total), (cfg, step)


def test_seq2seq_learning_rate_is_unchanged():
    from dldojo.text.seq2seq import Seq2SeqConfig, learning_rate
    for lr in LRS:
        for warmup in (0, 1, 5, 100, 300):
            for final in (1.0, 0.05, 0.0, 0.3):
                cfg = dataclasses.replace(Seq2SeqConfig(), lr=lr, warmup_steps=warmup, final_lr_ratio=final)
                for total in (3, 60, 1000):
                    for step in range(total + 20):
                        assert learning_rate(cfg, step, total) == old_seq2seq_lr(cfg, step, total), (cfg, step)


def test_vision_triangles_are_unchanged():
    from dldojo.vision import classify, transfer
    for total in (1, 2, 7, 97, 100, 1234):
        for start, peak_at, end in ((0.2, 0.23, 0.07), (0.1, 0.15, 0.0), (1.0, 0.001, 0.0), (0.0, 0.3, 0.0),
                                    (0.0, 0.05, 0.0), (0.2, 0.25, 0.05), (0.1, 1.0, 0.3)):
            for step in range(total + 10):
                assert (classify.triangle(step, total, start, peak_at, end)
                        == old_triangle(step, total, start, peak_at, end)), (total, start, peak_at, end, step)
        for step in range(total + 10):
            assert transfer.triangle(step, total) == old_triangle(step, total, 0.1, 0.2, 0.0), (total, step)
