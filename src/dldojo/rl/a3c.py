"""`a3c-cartpole`: asynchronous advantage actor-critic — worker processes updating one shared model.

Curriculum: A3C (Mnih et al. 2016, "Asynchronous methods for deep reinforcement learning", ICML).
The loss is A2C's (see `dldojo.rl.policy_gradient`),

    L = −mean(log π(a_t|s_t) · A_t) + c_v · mean((R_t − V(s_t))²) − c_H · mean(H(π(·|s_t))),
    R_t = Σ_(k<n) γ^k r_(t+k) + γ^n V(s_(t+n)),   A_t = R_t − V(s_t),

but instead of N environments stepped in lock-step, `num_workers` processes (torch.multiprocessing,
started by a fork server) each own one environment and a local copy of the network. A worker repeatedly

    1. copies the shared parameters θ into its local network,
    2. runs n steps in its own environment and computes ∇L on the local copy,
    3. writes that gradient into the shared parameters' .grad and applies an Adam step to the shared
       parameters in shared memory — without locks (Hogwild!, Recht et al. 2011) — with Adam's moment
       estimates also in shared memory (the paper's "shared statistics"),

so updates from different workers interleave asynchronously; each worker reports every update it applied
(`updates` per worker in the run's table: the "parameter versions" each process produced).

`update_order="round_robin"` takes the race out: the workers compute their gradients in parallel from the
same θ, then apply them one after another in rank order, so each gradient is stale by up to
`num_workers − 1` updates, as in Hogwild with equally fast workers. The same seed then gives the same
numbers and a resumed run continues step for step (the smoke preset uses it; `hogwild`, the paper's
order, is the default: there the same seed gives different numbers, and a resume continues from the
checkpoint without being identical).

Comparison: with `compare_a2c`, the run first requires a synchronous A2C run (`a2c-cartpole`, its own
run directory, found when it already exists) with as many environments as A3C has workers and the same
hyperparameters, and plots both learning curves against wall time in one figure. Time-to-solve = wall
seconds until the mean of the last `solve_window` training episodes reaches `solve_threshold` (for A3C
measured from the moment every worker is ready, i.e. excluding process start-up, reported separately).
It is a timing, not a metric: it differs from run to run.

Reported: the metric `eval_return_mean` (100 greedy episodes of the final shared model; CartPole-v1's
threshold is 475), `train_solved` (1 or 0) and, only for a run that solved, `train_steps_to_solve` and the
timing `time_to_solve_seconds`: a run that stopped at its step or time budget without solving has no
solve point to report (`train_steps` and `train_seconds` say how far it got). On a 2-core machine, 2
workers is the honest maximum: more workers than cores only time-slice.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import signal
import threading
import time
from types import SimpleNamespace
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.multiprocessing as mp
from torch import nn

from dldojo.engine.errors import DojoError
from dldojo.engine.registry import Experiment, Reference, register
from dldojo.engine.run import RunContext
from dldojo.rl import common
from dldojo.rl.policy_gradient import (ActorCritic, PGConfig, actor_critic_loss, build_model, discounted_returns,
                                      greedy_policy, sample_actions, solved_now)


@dataclasses.dataclass
class A3CConfig(PGConfig):
    RANGES: ClassVar[dict] = {**PGConfig.RANGES, "num_workers": (1, 64), "max_seconds": (0, 10**6)}
    """Allowed (low, high) of the numeric fields, checked before anything is created (`engine.config`)."""

    num_workers: int = 2
    """Worker processes, one environment each (the A2C comparison uses this many environments)."""
    max_seconds: float = 120.0
    """Wall-clock budget of the A3C training phase (seconds; 0 = only total_steps)."""
    compare_a2c: bool = True
    """Also train synchronous A2C with the same number of environments and plot both curves."""
    update_order: Literal["hogwild", "round_robin"] = "hogwild"
    """hogwild: a worker applies its update as soon as it has one (the paper; not reproducible).
    round_robin: gradients computed in parallel, applied in rank order each round (reproducible)."""

    def validate(self) -> None:
        super().validate()
        if self.num_workers < 1:
            raise DojoError(f"num_workers must be >= 1, got {self.num_workers}")


def shared_adam_statistics(model: nn.Module) -> list[dict[str, torch.Tensor]]:
    """Adam's per-parameter state (step, m, v) allocated in shared memory, used by every worker."""
    return [{"step": torch.zeros(()).share_memory_(), "exp_avg": torch.zeros_like(p).share_memory_(),
             "exp_avg_sq": torch.zeros_like(p).share_memory_()} for p in model.parameters()]


class SharedStatistics:
    """The shared Adam moments as loop state: saved as copies, loaded in place into the shared storage."""

    def __init__(self, statistics: list[dict[str, torch.Tensor]]):
        self.statistics = statistics

    def state_dict(self) -> list[dict[str, torch.Tensor]]:
        return [{k: v.clone() for k, v in st.items()} for st in self.statistics]

    def load_state_dict(self, saved: list[dict[str, torch.Tensor]]) -> None:
        for st, saved_st in zip(self.statistics, saved, strict=True):
            for key, tensor in st.items():
                tensor.copy_(saved_st[key])


def worker(rank: int, cfg: dict, seed: int, start: dict, shared_model: ActorCritic, statistics: list, stop,
           ready, rounds, copied, turns, reports: mp.Queue) -> None:
    """One A3C actor-learner: local copy, own environment, asynchronous updates of the shared model. After
    each update it reports the episodes it finished and its own state (environment, random stream)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process handles Ctrl-C and stops us
    torch.set_num_threads(1)
    reports.cancel_join_thread()  # a report left unread after `stop` must not keep the process alive
    cfg = A3CConfig(**cfg)
    rng = np.random.default_rng(seed)  # this worker's actions and episode seeds
    env = common.ResumableEnv(cfg.env_id, seeds=rng)
    local = build_model(cfg)
    optimizer = torch.optim.Adam(shared_model.parameters(), lr=cfg.lr)
    for p, state in zip(shared_model.parameters(), statistics):
        optimizer.state[p] = state  # shared moments: every worker's step updates the same m, v
    updates = start["updates"]
    if start["env"] is None:
        env.reset()
    else:  # resumed: the same episode and the same random stream
        env.load_state_dict(start["env"])
        rng.bit_generator.state = start["rng"]
    try:
        ready.wait()
        while True:
            if rounds is not None:
                rounds.wait()  # round_robin: every worker starts the round from the same θ
            if stop.is_set():
                return
            local.load_state_dict(shared_model.state_dict())  # 1. θ_local ← θ
            if copied is not None:
                copied.wait()  # round_robin: nobody updates θ before every worker has its copy
            observations, actions, rewards, dones, finished = [], [], [], [], []
            for t in range(cfg.n_steps):  # 2. n steps in this worker's environment
                with torch.no_grad():
                    logits, _ = local(torch.as_tensor(env.obs))
                action = int(sample_actions(logits, rng))
                observations.append(env.obs)
                next_obs, reward, terminated, truncated = env.step(action)
                if truncated and not terminated:
                    with torch.no_grad():
                        reward += cfg.gamma * local(torch.as_tensor(next_obs))[1].item()
                actions.append(action)
                rewards.append(reward)
                dones.append(float(terminated or truncated))
                if terminated or truncated:
                    finished.append((t, env.episode_return))
                    env.reset()
            with torch.no_grad():
                bootstrap = local(torch.as_tensor(env.obs))[1]
            returns = discounted_returns(torch.tensor(rewards, dtype=torch.float32), cfg.gamma, bootstrap=bootstrap,
                                         done=torch.tensor(dones))
            loss, _ = actor_critic_loss(local, torch.as_tensor(np.stack(observations)), torch.tensor(actions),
                                        returns, cfg.vf_coef, cfg.ent_coef, cfg.normalize_advantages)
            local.zero_grad()
            loss.backward()
            if cfg.max_grad_norm > 0:
                nn.utils.clip_grad_norm_(local.parameters(), cfg.max_grad_norm)
            if turns is not None:
                turns[rank].acquire()  # round_robin: wait for the workers of lower rank
            for p_shared, p_local in zip(shared_model.parameters(), local.parameters()):
                p_shared.grad = p_local.grad  # 3. this worker's gradient on the shared parameters ...
            optimizer.step()  # ... applied in shared memory, no lock (Hogwild)
            updates += 1
            reports.put((rank, os.getpid(), finished,
                         {"env": env.state_dict(), "rng": rng.bit_generator.state, "updates": updates}))
            if turns is not None and rank + 1 < len(turns):
                turns[rank + 1].release()
    except threading.BrokenBarrierError:  # the main process stopped the run
        return


class Workers:
    """The worker processes of one training session and the synchronisation that `update_order` needs. A
    fork server imports this module (and torch._dynamo, which optimisers import) once per main process, so a
    worker starts in milliseconds instead of the seconds a spawned interpreter takes to import torch."""

    def __init__(self, cfg: A3CConfig, seeds: list[int], starts: list[dict], model: ActorCritic,
                 statistics: list):
        context = mp.get_context("forkserver")
        context.set_forkserver_preload(["__main__", __name__, "torch._dynamo"])  # optimisers import torch._dynamo
        n = cfg.num_workers
        round_robin = cfg.update_order == "round_robin"
        self.stop, self.ready = context.Event(), context.Barrier(n + 1)
        self.rounds = context.Barrier(n + 1) if round_robin else None
        self.copied = context.Barrier(n) if round_robin else None
        self.turns = [context.Semaphore(0) for _ in range(n)] if round_robin else None
        self.reports = context.Queue()
        self.procs = [context.Process(target=worker, daemon=True, args=(
            rank, dataclasses.asdict(cfg), seeds[rank], starts[rank], model, statistics, self.stop, self.ready,
            self.rounds, self.copied, self.turns, self.reports)) for rank in range(n)]
        for p in self.procs:
            p.start()

    def wait_ready(self) -> None:
        self._wait(self.ready, "start")

    def next_updates(self) -> list[tuple]:
        """The next reports: one (hogwild), or one per worker in rank order after a round (round_robin)."""
        if self.rounds is None:
            return [self._get()]
        self._wait(self.rounds, "start a round")
        self.turns[0].release()
        return sorted((self._get() for _ in self.procs), key=lambda r: r[0])

    def _get(self) -> tuple:
        while True:
            try:
                return self.reports.get(timeout=1.0)
            except queue.Empty:
                self._check_alive()

    def _wait(self, barrier, what: str) -> None:
        try:
            barrier.wait(timeout=300)
        except threading.BrokenBarrierError:
            self._check_alive()
            raise DojoError(f"the A3C workers did not {what} within 300 s; is the machine overloaded?") from None

    def _check_alive(self) -> None:
        for rank, p in enumerate(self.procs):
            if not p.is_alive():
                raise DojoError(f"A3C worker {rank} stopped unexpectedly (exit code {p.exitcode}); its error is "
                                f"printed above.")

    def close(self) -> None:
        self.stop.set()
        for barrier in (self.ready, self.rounds, self.copied):
            if barrier is not None:
                barrier.abort()
        for p in self.procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()


def train_a3c(ctx: RunContext, cfg: A3CConfig) -> tuple[SimpleNamespace, int, list[int]]:
    """Start the workers, collect their reports, checkpoint the shared model; returns (state, step, pids)."""
    model = build_model(cfg)
    model.share_memory()
    statistics = shared_adam_statistics(model)
    s = SimpleNamespace(model=model, adam=SharedStatistics(statistics), curve=common.Curve("worker"),
                        clock=common.Stopwatch(), solved_step=0, solved_seconds=0.0,
                        workers=[{"env": None, "rng": None, "updates": 0} for _ in range(cfg.num_workers)])
    step = ctx.restore(s)

    started = time.perf_counter()
    workers = Workers(cfg, [ctx.seed_for(f"worker/{rank}") for rank in range(cfg.num_workers)], s.workers, model,
                      statistics)
    pids = [0] * cfg.num_workers
    bar = ctx.progress(cfg.total_steps, initial=step)
    try:
        workers.wait_ready()
        ctx.add_timings(startup_seconds=time.perf_counter() - started)
        s.clock.start()  # time to solve counts from the moment every worker is ready
        while step < cfg.total_steps and not (s.solved_step and cfg.stop_when_solved):
            if cfg.max_seconds > 0 and s.clock.seconds >= cfg.max_seconds:
                break
            for rank, pid, finished, worker_state in workers.next_updates():
                for t, episode_return in finished:
                    s.curve.add(step + t + 1, s.clock.seconds, episode_return, worker=rank)
                    ctx.log(step + t + 1, episode_return=episode_return, worker=rank)
                    if not s.solved_step and solved_now(s.curve["return"], cfg.solve_window, cfg.solve_threshold):
                        s.solved_step, s.solved_seconds = step + t + 1, s.clock.seconds
                step += cfg.n_steps
                s.workers[rank], pids[rank] = worker_state, pid
                bar.update(cfg.n_steps)
            bar.total = last_step(cfg, step, s.clock.seconds)  # the time budget may end the loop first
            if s.curve["return"]:
                bar.set_postfix(mean=f"{np.mean(s.curve['return'][-cfg.solve_window:]):.0f}")
            ctx.tick(step, s)
        bar.total = step  # where it really stopped: the step budget, the time budget or the solve point
        bar.set_postfix_str("solved" if s.solved_step else
                            f"time budget {cfg.max_seconds:g} s" if step < cfg.total_steps else "step budget")
    finally:
        workers.close()
        bar.close()
    return s, step, pids


def last_step(cfg: A3CConfig, step: int, seconds: float) -> int:
    """The step the loop is expected to stop at: `total_steps`, or earlier where `max_seconds` runs out first
    at the rate so far (what the progress bar counts towards)."""
    if cfg.max_seconds <= 0 or seconds <= 0:
        return cfg.total_steps
    return max(step, min(cfg.total_steps, round(step / seconds * cfg.max_seconds)))


def run(ctx: RunContext, cfg: A3CConfig) -> dict[str, float]:
    curves, metrics = {}, {}
    # --- synchronous A2C baseline: same hyperparameters, as many environments as A3C has workers ---
    if cfg.compare_a2c:
        same = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(PGConfig)}
        a2c = ctx.requires("a2c-cartpole", preset=ctx.preset, **{**same, "num_envs": cfg.num_workers})
        h = ctx.history("episode_return", run=a2c)
        curves[f"A2C ({cfg.num_workers} envs, 1 process)"] = {"step": h["step"], "wall": h["wall"],
                                                              "return": h["episode_return"]}
        metrics.update(eval_a2c_return_mean=a2c.metrics["eval_return_mean"],
                       train_a2c_solved=a2c.metrics["train_solved"])
        ctx.add_timings(a2c_train_seconds=a2c.timings["train_seconds"])
        if a2c.metrics["train_solved"]:  # only a run that solved has a solve point
            metrics.update(train_a2c_steps_to_solve=a2c.metrics["train_steps_to_solve"])
            ctx.add_timings(a2c_time_to_solve_seconds=a2c.timings["time_to_solve_seconds"])

    # --- A3C ---
    s, step, pids = train_a3c(ctx, cfg)
    updates = [w["updates"] for w in s.workers]
    ctx.log(step, shared_updates=sum(updates))
    act = greedy_policy(s.model)
    seed = ctx.seed_for("eval/final")
    eval_returns = common.evaluate(act, cfg.env_id, cfg.eval_episodes, seed=seed,
                                   progress=ctx.progress(cfg.eval_episodes, "greedy evaluation", unit="episode"))
    ctx.save_weights(s.model.state_dict())
    curves = {f"A3C ({cfg.num_workers} worker processes)": s.curve, **curves}
    common.plot_learning_curves(ctx, curves, name="a3c_vs_a2c", threshold=cfg.solve_threshold,
                                window=cfg.solve_window, title=f"A3C vs A2C on {cfg.env_id}")
    states, ret = common.rollout_states(act, cfg.env_id, seed=seed)
    common.render_cartpole(ctx, states, title=f"greedy A3C policy, return {ret:g}")
    ctx.save_table("workers", [{"worker": r, "pid": pid, "updates applied to the shared model": u}
                               for r, (pid, u) in enumerate(zip(pids, updates))],
                   "Updates each worker process applied to the one shared model (pid: its last session).")
    ctx.add_timings(train_seconds=s.clock.seconds)
    ctx.add_facts(shared_updates=sum(updates), workers_that_updated=sum(u > 0 for u in updates))
    solved = {}
    if s.solved_step:  # a run that never solved has no solve point: its budget is not one
        ctx.add_timings(time_to_solve_seconds=s.solved_seconds)
        solved = {"train_steps_to_solve": float(s.solved_step)}
    return {"eval_return_mean": float(eval_returns.mean()), "eval_return_std": float(eval_returns.std()),
            "train_solved": float(s.solved_step > 0), **solved, "train_steps": float(step), **metrics}


register(Experiment(
    name="a3c-cartpole",
    topic="Reinforcement learning: asynchronous advantage actor-critic (A3C), Hogwild workers on a shared model",
    paper="Mnih et al. 2016, Asynchronous methods for deep reinforcement learning (ICML); Recht et al. 2011, Hogwild!",
    config_cls=A3CConfig,
    presets={"smoke": {"total_steps": 200, "eval_episodes": 3, "max_seconds": 20.0, "update_order": "round_robin"},
             "quick": {"total_steps": 150_000, "max_seconds": 60.0},
             "full": {"total_steps": 500_000, "max_seconds": 150.0}},
    run=run,
    build_model=build_model,
    metric="eval_return_mean",  # time to solve is a timing (summary["timings"]), and only a run that solved has one
    direction="max",
    environment="CartPole-v1",
    references=(Reference(475.0, "gymnasium CartPole-v1 reward_threshold"),),
    family="rl",
    threads=1,
))
