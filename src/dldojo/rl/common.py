"""What the classic-RL experiments share: environments, greedy evaluation, curves and a rendered episode.

- `make_env(env_id)`: a gymnasium environment (current API: `reset(seed=...) -> (obs, info)`,
  `step(a) -> (obs, reward, terminated, truncated, info)`).
- `env_snapshot(env)` / `env_restore(env, snap)`: the complete state of a CartPole episode in progress
  (physics state, step counter of the TimeLimit wrapper), so a checkpoint can be taken at any step and
  a resumed run continues the very same episode. Every episode of every experiment starts with
  `env.reset(seed=s)` where `s` is drawn from the checkpointed `ctx.rng`, so the environment's own RNG
  never needs saving.
- `evaluate(act, env_id, episodes, seed)`: `episodes` greedy episodes run side by side (one batched
  forward pass per time step), episode i seeded with `seed + i`; returns the episode returns.
- `plot_learning_curves(...)`: episode return against environment steps and against wall time.
- `render_cartpole(states)`: frames drawn with matplotlib from the CartPole state (x, ẋ, θ, θ̇) — the
  same geometry as gymnasium's pygame renderer, without needing pygame — saved as a GIF and a PNG strip.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

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


def evaluate(act: Act, env_id: str, episodes: int, seed: int) -> np.ndarray:
    """Returns of `episodes` episodes under `act` (greedy for evaluation), episode i seeded with seed + i."""
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
    for env in envs:
        env.close()
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
