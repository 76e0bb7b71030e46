"""`a3c-cartpole`: asynchronous advantage actor-critic — worker processes updating one shared model.

Curriculum: A3C (Mnih et al. 2016, "Asynchronous methods for deep reinforcement learning", ICML).
The loss is A2C's (see `dldojo.rl.policy_gradient`),

    L = −mean(log π(a_t|s_t) · A_t) + c_v · mean((R_t − V(s_t))²) − c_H · mean(H(π(·|s_t))),
    R_t = Σ_(k<n) γ^k r_(t+k) + γ^n V(s_(t+n)),   A_t = R_t − V(s_t),

but instead of N environments stepped in lock-step, `num_workers` processes (torch.multiprocessing,
'spawn') each own one environment and a local copy of the network. A worker repeatedly

    1. copies the shared parameters θ into its local network,
    2. runs n steps in its own environment and computes ∇L on the local copy,
    3. writes that gradient into the shared parameters' .grad and applies an Adam step to the shared
       parameters in shared memory — without locks (Hogwild!, Recht et al. 2011) — with Adam's moment
       estimates also in shared memory (the paper's "shared statistics"),

so updates from different workers interleave asynchronously. A shared counter records every applied
update per worker (`updates_per_worker` below, the "parameter versions" each process produced).

Comparison: with `compare_a2c`, the same run also trains synchronous A2C (`a2c-cartpole`'s loop, in the
sub-folder `a2c/`) with as many environments as A3C has workers and the same hyperparameters, and plots
both learning curves against wall time in one figure. Time-to-solve = wall seconds until the mean of
the last `solve_window` training episodes reaches `solve_threshold` (for A3C measured from the moment
every worker is ready, i.e. excluding process start-up, reported separately). On a 2-core machine,
2 workers is the honest maximum: more workers than cores only time-slice. A3C is not deterministic:
workers race, so the same seed gives different numbers (the A2C baseline is deterministic).
"""

from __future__ import annotations

import dataclasses
import json
import queue
import signal
import time

import numpy as np
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.distributions import Categorical

from dldojo.engine.errors import RunInterrupted
from dldojo.engine.registry import Experiment, Reference, register
from dldojo.engine.run import RunContext
from dldojo.rl import common
from dldojo.rl.policy_gradient import (ActorCritic, PGConfig, actor_critic_loss, discounted_returns, run_a2c,
                                      solved_now)


@dataclasses.dataclass
class A3CConfig(PGConfig):
    num_workers: int = 2
    """Worker processes, one environment each (the A2C comparison uses this many environments)."""
    max_seconds: float = 120.0
    """Wall-clock budget of the A3C training phase (seconds; 0 = only total_steps)."""
    compare_a2c: bool = True
    """Also train synchronous A2C with the same number of environments and plot both curves."""


def shared_adam_statistics(model: nn.Module) -> list[dict[str, torch.Tensor]]:
    """Adam's per-parameter state (step, m, v) allocated in shared memory, used by every worker."""
    return [{"step": torch.zeros(()).share_memory_(), "exp_avg": torch.zeros_like(p).share_memory_(),
             "exp_avg_sq": torch.zeros_like(p).share_memory_()} for p in model.parameters()]


def worker(rank: int, cfg: dict, seed: int, shared_model: ActorCritic, statistics: list, total_steps,
           updates_per_worker, worker_pids, stop, ready, episodes: mp.Queue) -> None:
    """One A3C actor-learner: local copy, own environment, asynchronous updates of the shared model."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process handles Ctrl-C and stops us
    torch.set_num_threads(1)
    torch.manual_seed(seed * 1000 + rank)
    rng = np.random.default_rng([seed, rank])
    cfg = A3CConfig(**cfg)
    env = common.make_env(cfg.env_id)
    local = ActorCritic(env.observation_space.shape[0], int(env.action_space.n), cfg.num_hiddens)
    optimizer = torch.optim.Adam(shared_model.parameters(), lr=cfg.lr)
    for p, state in zip(shared_model.parameters(), statistics):
        optimizer.state[p] = state  # shared moments: every worker's step updates the same m, v
    worker_pids[rank] = mp.current_process().pid
    obs, _ = env.reset(seed=int(rng.integers(2**31)))
    episode_return = 0.0
    ready.wait()
    while not stop.is_set():
        local.load_state_dict(shared_model.state_dict())  # 1. θ_local ← θ
        observations, actions, rewards, dones = [], [], [], []
        for _ in range(cfg.n_steps):  # 2. n steps in this worker's environment
            with torch.no_grad():
                logits, _ = local(torch.as_tensor(obs))
            action = int(Categorical(logits=logits).sample())
            next_obs, reward, terminated, truncated, _ = env.step(action)
            episode_return += reward
            if truncated and not terminated:
                with torch.no_grad():
                    reward += cfg.gamma * local(torch.as_tensor(next_obs))[1].item()
            observations.append(obs)
            actions.append(action)
            rewards.append(reward)
            dones.append(float(terminated or truncated))
            if terminated or truncated:
                with total_steps.get_lock():
                    step_now = total_steps.value + len(rewards)
                episodes.put((rank, step_now, time.perf_counter(), episode_return))
                episode_return = 0.0
                next_obs, _ = env.reset(seed=int(rng.integers(2**31)))
            obs = next_obs
        with torch.no_grad():
            bootstrap = local(torch.as_tensor(obs))[1]
        returns = discounted_returns(torch.tensor(rewards, dtype=torch.float32), cfg.gamma, bootstrap=bootstrap,
                                     done=torch.tensor(dones))
        loss, _ = actor_critic_loss(local, torch.as_tensor(np.stack(observations)), torch.tensor(actions), returns,
                                    cfg.vf_coef, cfg.ent_coef, cfg.normalize_advantages)
        local.zero_grad()
        loss.backward()
        if cfg.max_grad_norm > 0:
            nn.utils.clip_grad_norm_(local.parameters(), cfg.max_grad_norm)
        for p_shared, p_local in zip(shared_model.parameters(), local.parameters()):
            p_shared.grad = p_local.grad  # 3. this worker's gradient on the shared parameters ...
        optimizer.step()  # ... applied in shared memory, no lock (Hogwild)
        with total_steps.get_lock():
            total_steps.value += len(rewards)
        updates_per_worker[rank] += 1  # only this process writes this slot


def train_a3c(ctx: RunContext, cfg: A3CConfig) -> dict:
    """Start the workers, collect their episodes, checkpoint the shared model; returns the curve and counts."""
    spawn = mp.get_context("spawn")
    probe = common.make_env(cfg.env_id)
    shared_model = ActorCritic(probe.observation_space.shape[0], int(probe.action_space.n), cfg.num_hiddens)
    shared_model.share_memory()
    statistics = shared_adam_statistics(shared_model)
    curve: dict[str, list[float]] = {"step": [], "wall": [], "return": [], "worker": []}
    step, train_seconds, solved_step, solved_seconds = 0, 0.0, 0, 0.0
    done_updates = [0] * cfg.num_workers

    saved = ctx.restore()
    if saved is not None:  # resumes from the last checkpoint; asynchronous, so not bit-identical
        step, train_seconds = saved["step"], saved["train_seconds"]
        solved_step, solved_seconds, curve = saved["solved_step"], saved["solved_seconds"], saved["curve"]
        shared_model.load_state_dict(saved["model"])  # copies into the shared storage
        for state, saved_state in zip(statistics, saved["statistics"]):
            for key in state:
                state[key].copy_(saved_state[key])
        done_updates = list(saved["updates_per_worker"])

    total_steps = spawn.Value("l", step)
    updates_per_worker = spawn.Array("l", done_updates)
    worker_pids = spawn.Array("l", [0] * cfg.num_workers)
    stop, ready = spawn.Event(), spawn.Barrier(cfg.num_workers + 1)
    episodes = spawn.Queue()
    t_spawn = time.perf_counter()
    procs = [spawn.Process(target=worker, args=(rank, dataclasses.asdict(cfg), ctx.seed + 7919 * step, shared_model,
                                                statistics, total_steps, updates_per_worker, worker_pids, stop,
                                                ready, episodes), daemon=True)
             for rank in range(cfg.num_workers)]
    for p in procs:
        p.start()
    bar = ctx.progress(cfg.total_steps, initial=step)
    try:
        ready.wait(timeout=300)
        startup_seconds = time.perf_counter() - t_spawn
        t_start = time.perf_counter() - train_seconds

        def state() -> dict:
            return {"model": shared_model.state_dict(), "statistics": statistics, "curve": curve,
                    "train_seconds": time.perf_counter() - t_start, "solved_step": solved_step,
                    "solved_seconds": solved_seconds, "updates_per_worker": list(updates_per_worker[:])}

        while True:
            try:
                rank, episode_step, t_end, episode_return = episodes.get(timeout=0.05)
            except queue.Empty:
                rank = None
            train_seconds = time.perf_counter() - t_start
            if rank is not None:
                curve["step"].append(episode_step)
                curve["wall"].append(t_end - t_start)  # seconds since every worker was ready
                curve["return"].append(episode_return)
                curve["worker"].append(rank)
                ctx.log(max(episode_step, step + 1), episode_return=episode_return, worker=rank)
                if not solved_step and solved_now(curve["return"], cfg.solve_window, cfg.solve_threshold):
                    solved_step, solved_seconds = episode_step, t_end - t_start
            new_step = max(int(total_steps.value), step + 1 if rank is not None else step)
            bar.update(new_step - step)
            if new_step != step:
                step = new_step
                ctx.tick(step, state)
            out_of_time = cfg.max_seconds > 0 and train_seconds >= cfg.max_seconds
            if step >= cfg.total_steps or out_of_time or (solved_step and cfg.stop_when_solved):
                break
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
        bar.close()
    return {"model": shared_model, "curve": curve, "step": step, "train_seconds": train_seconds,
            "solved_step": solved_step, "solved_seconds": solved_seconds, "startup_seconds": startup_seconds,
            "updates_per_worker": list(updates_per_worker[:]), "worker_pids": list(worker_pids[:])}


def run(ctx: RunContext, cfg: A3CConfig) -> dict[str, float]:
    # --- synchronous A2C baseline, same number of environments, in its own sub-run (resumable) ---
    a2c_metrics, a2c_curve = None, None
    if cfg.compare_a2c:
        sub_dir = ctx.run_dir / "a2c"
        done_file = sub_dir / "metrics_final.json"
        if not done_file.exists():
            sub = RunContext(sub_dir, "a2c-cartpole", ctx.preset, ctx.seed, quiet=ctx.quiet,
                             resume=(sub_dir / "checkpoints" / "last.pt").exists(),
                             checkpoint_every_seconds=ctx.checkpoint_every_seconds)
            sub_dir.mkdir(parents=True, exist_ok=True)
            a2c_cfg = PGConfig(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(PGConfig)})
            a2c_cfg.num_envs = cfg.num_workers
            try:
                with sub.interrupt_guard():
                    a2c_metrics = run_a2c(sub, a2c_cfg, label=f"A2C ({cfg.num_workers} envs)")
            except RunInterrupted:
                raise RunInterrupted(f"interrupted during the A2C baseline; checkpoint saved. Continue with: "
                                     f"dldojo run --resume {ctx.run_dir}") from None
            done_file.write_text(json.dumps(a2c_metrics))
        a2c_metrics = json.loads(done_file.read_text())
        records = [json.loads(line) for line in (sub_dir / "metrics.jsonl").read_text().splitlines()]
        episodes_ = [r for r in records if "episode_return" in r]
        a2c_curve = {"step": [r["step"] for r in episodes_], "wall": [r["wall"] for r in episodes_],
                     "return": [r["episode_return"] for r in episodes_]}

    # --- A3C ---
    torch.manual_seed(ctx.seed)
    result = train_a3c(ctx, cfg)
    model, curve = result["model"], result["curve"]
    act = lambda obs: model(torch.as_tensor(obs, dtype=torch.float32))[0].argmax(-1).detach().numpy()  # noqa: E731
    seed = 10**6 + 1000 * ctx.seed
    with torch.no_grad():
        eval_returns = common.evaluate(act, cfg.env_id, cfg.eval_episodes, seed=seed)
    ctx.save_weights(model.state_dict())
    curves = {f"A3C ({cfg.num_workers} worker processes)": curve}
    if a2c_curve is not None:
        curves[f"A2C ({cfg.num_workers} envs, 1 process)"] = a2c_curve
    common.plot_learning_curves(ctx, curves, name="a3c_vs_a2c", threshold=cfg.solve_threshold,
                                window=cfg.solve_window, title=f"A3C vs A2C on {cfg.env_id}")
    with torch.no_grad():
        states, ret = common.rollout_states(act, cfg.env_id, seed=seed)
    common.render_cartpole(ctx, states, title=f"greedy A3C policy, return {ret:g}")
    updates = result["updates_per_worker"]
    ctx.save_table("workers", [{"worker": r, "pid": pid, "updates applied to the shared model": u}
                               for r, (pid, u) in enumerate(zip(result["worker_pids"], updates))],
                   "Asynchronous updates each worker process applied to the one shared model.")
    metrics = {"eval_return_mean": float(eval_returns.mean()), "eval_return_std": float(eval_returns.std()),
               "solved": float(result["solved_step"] > 0),
               "time_to_solve_seconds": float(result["solved_seconds"] if result["solved_step"]
                                              else result["train_seconds"]),
               "steps_to_solve": float(result["solved_step"] or result["step"]),
               "train_steps": float(result["step"]), "train_seconds": float(result["train_seconds"]),
               "startup_seconds": float(result["startup_seconds"]), "shared_updates": float(sum(updates)),
               "workers_that_updated": float(sum(u > 0 for u in updates))}
    if a2c_metrics is not None:
        metrics.update({f"a2c_{k}": float(v) for k, v in a2c_metrics.items() if k in
                        ("eval_return_mean", "solved", "time_to_solve_seconds", "steps_to_solve", "train_seconds")})
    return metrics


register(Experiment(
    name="a3c-cartpole",
    topic="Reinforcement learning: asynchronous advantage actor-critic (A3C), Hogwild workers on a shared model",
    paper="Mnih et al. 2016, Asynchronous methods for deep reinforcement learning (ICML); Recht et al. 2011, Hogwild!",
    config_cls=A3CConfig,
    presets={"smoke": {"total_steps": 400, "eval_episodes": 3, "max_seconds": 20.0},
             "quick": {"total_steps": 150_000, "max_seconds": 60.0},
             "full": {"total_steps": 500_000, "max_seconds": 150.0}},
    run=run,
    metric="time_to_solve_seconds",
    direction="min",
    environment="CartPole-v1",
    references=(Reference(475.0, "gymnasium CartPole-v1 reward_threshold", metric="eval_return_mean"),),
    family="rl",
    threads=1,
))
