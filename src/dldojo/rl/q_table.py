"""`q-table-cartpole`: the curriculum's tabular Q-learning on CartPole, on gymnasium's current API.

Curriculum: reinforcement learning — Q-learning with a table (Watkins 1989; Sutton & Barto 2018, §6.5).
The course code (written for the old gym API: `reset() -> obs`, `step() -> (obs, r, done, info)`, so it
no longer runs as printed) discretises each of CartPole's 4 state variables into 6 bins (cart position
clipped to ±2.4, velocity ±3.0, pole angle ±0.5 rad, angular velocity ±2.0), giving 6⁴ = 1296 states,
and learns a table Q[s, a] (1296 × 2) initialised uniform(−1, 1) by

    Q(s, a) ← (1 − α) Q(s, a) + α (r + γ max_a' Q(s', a'))         α = 0.5, γ = 0.99

with ε-greedy actions, ε = 0.5 / (episode + 1), and the shaped reward r = −200 when the episode ends
before step 195 (the pole fell or the cart left the track), +1 otherwise. As in the course, the update
bootstraps from s' even at the end of an episode (the −200 dominates) and the first action of an
episode is greedy. Episodes last at most 200 steps (CartPole-v0); the task counts as solved when the
mean *environment* return of the last 100 episodes reaches 195 (gymnasium's `reward_threshold`).
What changed for gymnasium: `reset(seed=...)` returns (obs, info), `step` returns terminated and
truncated separately (the course's `done` is their `or`), and every episode gets its own seed.

CartPole-v1 (500 steps, threshold 475): `--set env_id=CartPole-v1 --set penalty_before_step=475
--set solve_threshold=475`.

Metrics: `train_episodes_to_solve` (the episode at which the 100-episode mean first reached the threshold;
`episodes + 1` when it never did within the budget), `train_solved` (1/0), `train_return_last100_mean`, and
`eval_return_mean` / `eval_return_std` over 100 greedy episodes of the final table.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from dldojo.engine.errors import DojoError
from dldojo.engine.registry import Experiment, Reference, register
from dldojo.engine.run import RunContext
from dldojo.rl import common


def bin_edges(clip: tuple[float, ...], num_bins: int) -> np.ndarray:
    """Inner bin edges per state variable: the course's `np.linspace(-c, c, num_bins + 1)[1:-1]`."""
    return np.stack([np.linspace(-c, c, num_bins + 1)[1:-1] for c in clip])


def digitize(obs: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """State index Σ_i bin_i · num_bins^i for a batch of observations (n, 4) -> (n,).

    bin_i = np.digitize(obs_i, edges_i) = number of edges <= obs_i (values beyond the clip range land
    in the outer bins, exactly as with the course's np.digitize).
    """
    num_bins = edges.shape[1] + 1
    bins = (edges[None, :, :] <= np.atleast_2d(obs)[:, :, None]).sum(-1)
    return bins @ (num_bins ** np.arange(edges.shape[0]))


def q_update(Q: np.ndarray, s: int, a: int, r: float, s_next: int, alpha: float, gamma: float) -> float:
    """Q(s,a) ← (1−α) Q(s,a) + α (r + γ max_a' Q(s',a')), in place; returns the new Q(s,a)."""
    Q[s, a] = (1 - alpha) * Q[s, a] + alpha * (r + gamma * Q[s_next].max())
    return float(Q[s, a])


@dataclasses.dataclass
class QTableConfig:
    RANGES: ClassVar[dict] = {
        "fail_reward": (-1e6, 0.0), "episodes": (0, 10**7), "num_bins": (1, 50), "clip": (0, 1000), "alpha": (0, 1),
        "gamma": (0, 1), "epsilon0": (0, 1), "penalty_before_step": (0, 10**6), "solve_threshold": (0, 1e6),
        "solve_window": (1, 10**5), "eval_episodes": (0, 10**5)}
    """Allowed (low, high) of the numeric fields, checked before anything is created (`engine.config`)."""

    env_id: str = "CartPole-v0"
    """gymnasium environment: CartPole-v0 (200 steps, as in the course) or CartPole-v1 (500 steps)."""
    episodes: int = 2000
    """Training episodes (budget)."""
    num_bins: int = 6
    """Bins per state variable (the table has num_bins⁴ rows)."""
    clip: tuple[float, ...] = (2.4, 3.0, 0.5, 2.0)
    """Bin range ±c for cart position, cart velocity, pole angle, pole angular velocity."""
    alpha: float = 0.5
    """Learning rate α of the Q update."""
    gamma: float = 0.99
    """Discount factor γ."""
    epsilon0: float = 0.5
    """ε = epsilon0 / (episode + 1) for ε-greedy exploration."""
    fail_reward: float = -200.0
    """Shaped reward when the episode ends before `penalty_before_step` (the course's −200)."""
    penalty_before_step: int = 195
    """An episode ending at step index t < this value is a failure (course: 195; use 475 for v1)."""
    solve_threshold: float = 195.0
    """Solved when the mean environment return of the last `solve_window` episodes reaches this."""
    solve_window: int = 100
    """Episodes in the solve criterion's moving mean."""
    stop_when_solved: bool = True
    """Stop training at the episode that solves the task (the course stops there too)."""
    eval_episodes: int = 100
    """Greedy evaluation episodes of the final table."""

    def validate(self) -> None:
        if len(self.clip) != 4:
            raise DojoError(f"clip needs 4 values (one per CartPole state variable), got {self.clip}")
        if self.num_bins < 2 or self.episodes < 1 or self.eval_episodes < 1:
            raise DojoError("need num_bins >= 2, episodes >= 1, eval_episodes >= 1")
        if not (0 < self.alpha <= 1 and 0 <= self.gamma <= 1):
            raise DojoError(f"need 0 < alpha <= 1 and 0 <= gamma <= 1, got {self.alpha}, {self.gamma}")


class QTable(nn.Module):
    """Q[s, a] as a float64 buffer (num_bins⁴ × actions); the loop updates it in place through a NumPy view."""

    def __init__(self, init: np.ndarray):
        super().__init__()
        self.register_buffer("Q", torch.from_numpy(init))


def build_model(cfg: QTableConfig, run=None) -> QTable:
    return QTable(np.zeros((cfg.num_bins ** 4, int(common.make_env(cfg.env_id).action_space.n))))


def run(ctx: RunContext, cfg: QTableConfig) -> dict[str, float]:
    env = common.make_env(cfg.env_id)
    edges = bin_edges(cfg.clip, cfg.num_bins)
    n_actions = int(env.action_space.n)
    table = QTable(ctx.rng("init").uniform(-1, 1, size=(cfg.num_bins ** 4, n_actions)))
    Q = table.Q.numpy()  # a view: restoring the table below changes Q too
    s = SimpleNamespace(table=table, env_steps=0, solved_at=0, curve=common.Curve())
    seeds, explore = ctx.rng("env"), ctx.rng("explore")
    episode = ctx.restore(s)

    bar = ctx.progress(cfg.episodes, initial=episode, unit="episode")
    while episode < cfg.episodes and not (s.solved_at and cfg.stop_when_solved):
        obs, _ = env.reset(seed=int(seeds.integers(2**31)))
        state = int(digitize(obs, edges)[0])
        action = int(Q[state].argmax())  # the course starts each episode greedily
        env_return, shaped_return, t, done = 0.0, 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
            env_return += reward
            r = (cfg.fail_reward if t < cfg.penalty_before_step else 1.0) if done else 1.0
            shaped_return += r
            next_state = int(digitize(obs, edges)[0])
            q_update(Q, state, action, r, next_state, cfg.alpha, cfg.gamma)
            epsilon = cfg.epsilon0 / (episode + 1)
            if epsilon <= explore.uniform(0, 1):
                action = int(Q[next_state].argmax())
            else:
                action = int(explore.integers(n_actions))
            state = next_state
            t += 1
        episode += 1
        s.env_steps += t
        s.curve.add(s.env_steps, ctx.wall_seconds, env_return)
        last = s.curve["return"][-cfg.solve_window:]
        if not s.solved_at and len(last) == cfg.solve_window and np.mean(last) >= cfg.solve_threshold:
            s.solved_at = episode
        ctx.log(episode, env_steps=s.env_steps, episode_return=env_return, shaped_return=shaped_return,
                epsilon=cfg.epsilon0 / episode, return_mean_last100=float(np.mean(last)))
        bar.update(1)
        bar.set_postfix(mean100=f"{np.mean(last):.1f}", solved_at=s.solved_at or "-")
        ctx.tick(episode, s)
    bar.close()

    def greedy(batch: np.ndarray) -> np.ndarray:
        return Q[digitize(batch, edges)].argmax(1)

    seed = ctx.seed_for("eval/final")
    eval_returns = common.evaluate(greedy, cfg.env_id, cfg.eval_episodes, seed=seed)
    ctx.save_weights(table.state_dict())
    common.plot_learning_curves(ctx, {"tabular Q-learning": s.curve}, threshold=cfg.solve_threshold,
                                window=cfg.solve_window, title=f"{cfg.env_id}: tabular Q-learning ({cfg.num_bins}⁴ states)")
    states, ret = common.rollout_states(greedy, cfg.env_id, seed=seed)
    common.render_cartpole(ctx, states, title=f"greedy Q-table policy, return {ret:g}")
    return {"train_episodes_to_solve": float(s.solved_at or cfg.episodes + 1),
            "train_solved": float(bool(s.solved_at)),
            "train_return_last100_mean": float(np.mean(s.curve["return"][-100:])),
            "train_env_steps": float(s.env_steps),
            "eval_return_mean": float(eval_returns.mean()), "eval_return_std": float(eval_returns.std())}


register(Experiment(
    name="q-table-cartpole",
    topic="Reinforcement learning: tabular Q-learning with a discretised state (the course's CartPole code)",
    paper="Watkins 1989, Learning from Delayed Rewards; Sutton & Barto 2018, Reinforcement Learning §6.5",
    config_cls=QTableConfig,
    presets={"smoke": {"episodes": 30, "eval_episodes": 5},
             "quick": {"episodes": 2000},
             "full": {"episodes": 2000}},
    run=run,
    build_model=build_model,
    metric="train_episodes_to_solve",
    direction="min",
    environment="CartPole-v0",
    references=(Reference(195.0, "gymnasium CartPole-v0 reward_threshold (mean of 100 episodes)",
                          metric="train_return_last100_mean"),),
    family="rl",
    threads=1,  # NumPy table, one environment
))
