"""What the classic-RL experiments share: environments, loop state, greedy evaluation, curves and a rendered episode.

- `make_env(env_id)`: a gymnasium environment (current API: `reset(seed=...) -> (obs, info)`,
  `step(a) -> (obs, reward, terminated, truncated, info)`).
- `ResumableEnv(env_id, seeds)`: an environment played episode after episode whose episode in progress
  (physics state, step counter of the TimeLimit wrapper, return and length so far) is loop state, so a
  checkpoint can be taken at any step and a resumed run continues the very same episode. Every episode
  starts with `reset(seed=s)`, `s` drawn from a named stream of the run (`ctx.rng("env")`), so the
  environment's own RNG never needs saving. (`env_snapshot` / `env_restore` are its parts.)
- `Curve`, `BestSoFar`, `Stopwatch`: a learning curve, the best network so far (model selection) and the
  seconds spent training, as loop state (`state_dict` / `load_state_dict`, loaded in place).
- `evaluate(act, env_id, episodes, seed, progress=None)`: `episodes` greedy episodes run side by side (one
  batched forward pass per time step), episode i seeded with `seed + i`, optionally counted on a progress bar;
  returns the episode returns.
- `plot_learning_curves(...)`: episode return against environment steps and against wall time.
- `render_cartpole(states)`: frames drawn with matplotlib from the CartPole state (x, ẋ, θ, θ̇) — the
  same geometry as gymnasium's pygame renderer, without needing pygame — saved as a GIF and a PNG strip.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from torch import nn

from dldojo.engine.run import RunContext

Act = Callable[[np.ndarray], np.ndarray]  # batch of observations (n, obs_dim) -> actions (n,)


def make_env(env_id: str, render_mode: str | None = None) -> gym.Env:
    with warnings.catch_warnings():  # CartPole-v0 is "out of date" for gymnasium; the course uses it
        warnings.simplefilter("ignore")
        return gym.make(env_id, render_mode=render_mode)


def time_limit(env: gym.Env) -> gym.wrappers.TimeLimit | None:
    wrapper = env
    while isinstance(wrapper, gym.Wrapper):
        if isinstance(wrapper, gym.wrappers.TimeLimit):
            return wrapper
        wrapper = wrapper.env
    return None


def env_snapshot(env: gym.Env) -> dict[str, Any]:
    """Everything that determines the rest of a CartPole episode (plain floats: safe for weights_only load)."""
    core = env.unwrapped
    limit = time_limit(env)
    return {"state": [float(v) for v in core.state],
            "steps_beyond_terminated": -1 if core.steps_beyond_terminated is None else
            int(core.steps_beyond_terminated),
            "elapsed_steps": int(limit._elapsed_steps) if limit is not None else 0}


def env_restore(env: gym.Env, snap: dict[str, Any]) -> np.ndarray:
    """Put `env` back into the snapshotted episode; returns the current observation."""
    env.reset(seed=0)  # satisfies the order-enforcing wrapper; the state is overwritten below
    core = env.unwrapped
    core.state = np.array(snap["state"], dtype=np.float64)
    core.steps_beyond_terminated = None if snap["steps_beyond_terminated"] < 0 else snap["steps_beyond_terminated"]
    limit = time_limit(env)
    if limit is not None:
        limit._elapsed_steps = snap["elapsed_steps"]
    return np.array(core.state, dtype=np.float32)


class ResumableEnv:
    """One environment, played episode after episode; `obs` is the current observation. Its episode in
    progress is loop state: `state_dict()` / `load_state_dict()` continue it exactly after a resume."""

    def __init__(self, env_id: str, seeds: np.random.Generator):
        self.env, self.seeds = make_env(env_id), seeds
        self.observation_space, self.action_space = self.env.observation_space, self.env.action_space
        self.obs: np.ndarray | None = None
        self.episode_return, self.episode_length = 0.0, 0

    def reset(self) -> np.ndarray:
        """Start the next episode, seeded from the stream."""
        self.obs, _ = self.env.reset(seed=int(self.seeds.integers(2**31)))
        self.episode_return, self.episode_length = 0.0, 0
        return self.obs

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool]:
        """(next observation, reward, terminated, truncated); the caller resets at the end of an episode."""
        self.obs, reward, terminated, truncated, _ = self.env.step(int(action))
        self.episode_return += reward
        self.episode_length += 1
        return self.obs, float(reward), bool(terminated), bool(truncated)

    def state_dict(self) -> dict[str, Any]:
        return {"env": env_snapshot(self.env), "episode_return": self.episode_return,
                "episode_length": self.episode_length}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.obs = env_restore(self.env, saved["env"])
        self.episode_return, self.episode_length = float(saved["episode_return"]), int(saved["episode_length"])


class ResumableEnvs(list):
    """Several `ResumableEnv`s stepped side by side (A2C), as one entry of the loop state."""

    def state_dict(self) -> list[dict[str, Any]]:
        return [env.state_dict() for env in self]

    def load_state_dict(self, saved: list[dict[str, Any]]) -> None:
        for env, env_state in zip(self, saved, strict=True):
            env.load_state_dict(env_state)


class Curve(dict):
    """A learning curve {"step": [...], "wall": [...], "return": [...], *extra}: loop state, loaded in place."""

    def __init__(self, *extra: str):
        super().__init__({k: [] for k in ("step", "wall", "return", *extra)})

    def add(self, step: int, wall: float, value: float, **extra: Any) -> None:
        for key, v in (("step", step), ("wall", wall), ("return", value), *extra.items()):
            self[key].append(v)

    def state_dict(self) -> dict[str, list]:
        return {k: list(v) for k, v in self.items()}

    def load_state_dict(self, saved: dict[str, list]) -> None:
        self.clear()
        self.update({k: list(v) for k, v in saved.items()})


class BestSoFar:
    """Model selection: the best score seen so far, the step it was reached at and a copy of those weights."""

    def __init__(self, model: nn.Module):
        self.model, self.score, self.step = model, float("-inf"), 0
        self.weights = copy.deepcopy(model.state_dict())

    def update(self, score: float, step: int) -> bool:
        if score <= self.score:
            return False
        self.score, self.step, self.weights = float(score), int(step), copy.deepcopy(self.model.state_dict())
        return True

    def load_into_model(self) -> None:
        """Put the best weights back into the model (nothing to do when no score was ever recorded)."""
        if self.score > float("-inf"):
            self.model.load_state_dict(self.weights)

    def state_dict(self) -> dict[str, Any]:
        return {"score": self.score, "step": self.step, "weights": self.weights}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.score, self.step, self.weights = float(saved["score"]), int(saved["step"]), saved["weights"]


class Stopwatch:
    """Seconds of training, summed over the sessions of a resumed run (a timing, never a metric)."""

    def __init__(self):
        self.before, self.t0 = 0.0, time.perf_counter()

    def start(self) -> None:
        """Count from now on (e.g. once worker processes are ready), keeping the earlier sessions' seconds."""
        self.t0 = time.perf_counter()

    @property
    def seconds(self) -> float:
        return self.before + time.perf_counter() - self.t0

    def state_dict(self) -> dict[str, float]:
        return {"seconds": self.seconds}

    def load_state_dict(self, saved: dict[str, float]) -> None:
        self.before, self.t0 = float(saved["seconds"]), time.perf_counter()


def evaluate(act: Act, env_id: str, episodes: int, seed: int, progress: Any = None) -> np.ndarray:
    """Returns of `episodes` episodes under `act` (greedy for evaluation), episode i seeded with seed + i.
    `progress`: a progress bar (`ctx.progress(episodes, ...)`), advanced as episodes end and closed at the end."""
    envs = [make_env(env_id) for _ in range(episodes)]
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    returns = np.zeros(episodes)
    alive = np.ones(episodes, dtype=bool)
    while alive.any():
        idx = np.flatnonzero(alive)
        actions = act(obs[idx])
        for j, a in zip(idx, actions):
            obs_j, reward, terminated, truncated, _ = envs[j].step(int(a))
            returns[j] += reward
            obs[j] = obs_j
            if terminated or truncated:
                alive[j] = False
                if progress is not None:
                    progress.update(1)
    for env in envs:
        env.close()
    if progress is not None:
        progress.close()
    return returns


def random_policy_returns(env_id: str, episodes: int, seed: int) -> np.ndarray:
    """Returns of the uniform random policy (actions from the seeded action space)."""
    env = make_env(env_id)
    env.action_space.seed(seed)
    returns = []
    for i in range(episodes):
        env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += reward
            done = terminated or truncated
        returns.append(total)
    return np.array(returns)


def episodes_to_solve(returns: Sequence[float], threshold: float, window: int = 100) -> int | None:
    """1-based index of the first episode at which the mean of the last `window` returns is >= threshold."""
    r = np.asarray(returns, dtype=float)
    if len(r) < window:
        return None
    means = np.convolve(r, np.ones(window) / window, mode="valid")
    hits = np.flatnonzero(means >= threshold)
    return int(hits[0]) + window if len(hits) else None


def moving_average(x: Sequence[float], window: int) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if len(x) == 0:
        return x
    c = np.concatenate([[0.0], np.cumsum(x)])
    n = np.minimum(np.arange(1, len(x) + 1), window)  # shorter windows at the start
    return (c[1:] - c[np.arange(1, len(x) + 1) - n]) / n


def plot_learning_curves(ctx: RunContext, curves: dict[str, dict[str, Sequence[float]]], name: str = "learning_curves",
                         threshold: float | None = None, window: int = 20, title: str = "") -> None:
    """Episode return vs environment steps and vs wall seconds.

    Each curve is {'step': [...], 'wall': [...], 'return': [...]} and optionally 'window' (its own
    moving-average width; 1 plots the raw points, e.g. for periodic evaluations).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for (label, c), color in zip(curves.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        for ax, x_key in zip(axes, ("step", "wall")):
            x, y = np.asarray(c[x_key]), np.asarray(c["return"])
            if len(y) == 0:
                continue
            w = int(c.get("window", window))  # a curve may ask for its own smoothing (1 = raw points)
            if w > 1:
                ax.plot(x, y, color=color, alpha=0.2, lw=0.7)
                ax.plot(x, moving_average(y, w), color=color, lw=1.8, label=f"{label} (mean of {w})")
            else:
                ax.plot(x, y, color=color, lw=1.5, marker="o", ms=3, label=label)
    for ax, xlabel in zip(axes, ("environment steps", "wall seconds")):
        if threshold is not None:
            ax.axhline(threshold, color="black", ls="--", lw=0.8, label=f"threshold {threshold:g}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("episode return")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    ctx.save_figure(fig, name)


def rollout_states(act: Act, env_id: str, seed: int, max_steps: int = 500) -> tuple[list[np.ndarray], float]:
    """One greedy episode: the CartPole states visited (for rendering) and its return."""
    env = make_env(env_id)
    obs, _ = env.reset(seed=seed)
    states, total = [np.array(env.unwrapped.state)], 0.0
    for _ in range(max_steps):
        obs, reward, terminated, truncated, _ = env.step(int(act(obs[None])[0]))
        total += reward
        states.append(np.array(env.unwrapped.state))
        if terminated or truncated:
            break
    env.close()
    return states, total


def draw_cartpole(ax, state: np.ndarray, step: int | None = None) -> None:
    """Cart (box on a track) and pole (length 2 × half-length 0.5 m), angle θ from the vertical."""
    from matplotlib.patches import Rectangle

    x, _, theta, _ = state
    ax.clear()
    ax.set_xlim(-2.6, 2.6)
    ax.set_ylim(-0.4, 1.4)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.plot([-2.4, 2.4], [0, 0], color="black", lw=1)
    ax.add_patch(Rectangle((x - 0.25, -0.075), 0.5, 0.15, color="tab:gray"))
    ax.plot([x, x + np.sin(theta)], [0.0, np.cos(theta)], color="tab:orange", lw=5, solid_capstyle="round")
    ax.plot([x], [0.0], "o", color="tab:brown", ms=5)
    if step is not None:
        ax.text(-2.5, 1.3, f"t = {step}", fontsize=9)


def render_cartpole(ctx: RunContext, states: Sequence[np.ndarray], name: str = "episode",
                    every: int = 4, strip_frames: int = 8, title: str = "") -> Path:
    """Save `figures/<name>.gif` (every `every`-th step) and a PNG strip of evenly spaced frames."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    steps = list(range(0, len(states), every)) + ([len(states) - 1] if (len(states) - 1) % every else [])
    fig, ax = plt.subplots(figsize=(4, 1.6), dpi=80)
    images = []
    for t in steps:
        draw_cartpole(ax, states[t], t)
        fig.canvas.draw()
        images.append(Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()))
    plt.close(fig)
    gif = ctx.path(f"figures/{name}.gif")
    if ctx.is_main and images:
        images[0].save(gif, save_all=True, append_images=images[1:], duration=80, loop=0)
    shown = np.linspace(0, len(states) - 1, min(strip_frames, len(states))).round().astype(int)
    fig, axes = plt.subplots(1, len(shown), figsize=(2.2 * len(shown), 1.2), squeeze=False)
    for ax, t in zip(axes[0], shown):
        draw_cartpole(ax, states[t], int(t))
    if title:
        fig.suptitle(title, fontsize=10)
    ctx.save_figure(fig, f"{name}_frames")
    return gif
