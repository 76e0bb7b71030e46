"""`reinforce-cartpole` and `a2c-cartpole`: policy gradients, from Monte-Carlo REINFORCE to advantage actor-critic.

Curriculum: policy-gradient methods. The policy gradient theorem (Sutton et al. 2000) and REINFORCE
(Williams 1992, "Simple statistical gradient-following algorithms", Machine Learning 8):

    ∇_θ J(θ) = E_π [ Σ_t ∇_θ log π_θ(a_t | s_t) · (G_t − b(s_t)) ],     G_t = Σ_k γ^k r_(t+k)

A baseline b(s) does not bias the gradient and lowers its variance; here b(s) = V_φ(s), a learned critic
(or the batch mean return, or none). REINFORCE waits for the end of an episode to know G_t.

Advantage actor-critic (A2C, the synchronous variant of Mnih et al. 2016, "Asynchronous methods for
deep reinforcement learning", ICML) replaces G_t by an n-step bootstrapped return from N environments
stepped in lock-step:

    R_t = r_t + γ r_(t+1) + … + γ^(n−1) r_(t+n−1) + γ^n V_φ(s_(t+n))     A_t = R_t − V_φ(s_t)
    L = −mean(log π(a_t|s_t) · A_t) + c_v · mean((R_t − V_φ(s_t))²) − c_H · mean(H(π(·|s_t)))

Bootstrapping stops where the pole fell (terminated); at the time limit (truncated) γ V(s_final) is added
to the last reward, since the state itself was not terminal.

Metrics: `eval_return_mean` over 100 greedy episodes (argmax π) of the final policy, `steps_to_solve`
and `time_to_solve_seconds` (when the mean of the last `solve_window` training episodes first reached
`solve_threshold`; censored at the budget, with `solved` = 0, when it never did).
Reference: rl-baselines3-zoo A2C CartPole-v1 (8 envs, 5-step rollouts) reaches the maximum 500.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Categorical

from dldojo.engine.errors import DojoError
from dldojo.engine.registry import Experiment, Reference, register
from dldojo.engine.run import RunContext
from dldojo.rl import common


class ActorCritic(nn.Module):
    """π_θ(a|s) as logits and V_φ(s), two separate tanh MLPs (no shared trunk)."""

    def __init__(self, obs_dim: int, n_actions: int, num_hiddens: int = 64):
        super().__init__()
        self.actor = nn.Sequential(nn.Linear(obs_dim, num_hiddens), nn.Tanh(), nn.Linear(num_hiddens, num_hiddens),
                                   nn.Tanh(), nn.Linear(num_hiddens, n_actions))
        self.critic = nn.Sequential(nn.Linear(obs_dim, num_hiddens), nn.Tanh(), nn.Linear(num_hiddens, num_hiddens),
                                    nn.Tanh(), nn.Linear(num_hiddens, 1))

    def forward(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.actor(s), self.critic(s).squeeze(-1)


def discounted_returns(rewards: torch.Tensor, gamma: float, bootstrap: torch.Tensor | float = 0.0,
                       done: torch.Tensor | None = None) -> torch.Tensor:
    """R_t = r_t + γ (1 − done_t) R_(t+1), R_T = bootstrap; rewards (T, ...) -> returns (T, ...)."""
    returns = torch.zeros_like(rewards)
    running = torch.as_tensor(bootstrap, dtype=rewards.dtype) * torch.ones_like(rewards[0])
    for t in reversed(range(len(rewards))):
        if done is not None:
            running = running * (1.0 - done[t])
        running = rewards[t] + gamma * running
        returns[t] = running
    return returns


def actor_critic_loss(model: ActorCritic, obs: torch.Tensor, actions: torch.Tensor, returns: torch.Tensor,
                      vf_coef: float, ent_coef: float, normalize_advantages: bool = False,
                      baseline: str = "value") -> tuple[torch.Tensor, dict[str, float]]:
    """−mean(log π(a|s)·A) + c_v·mean((R − V(s))²) − c_H·mean(H), A = R − b(s)."""
    logits, values = model(obs)
    dist = Categorical(logits=logits)
    if baseline == "value":
        advantages = returns - values.detach()
    elif baseline == "mean":
        advantages = returns - returns.mean()
    else:
        advantages = returns
    if normalize_advantages and len(advantages) > 1:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    policy_loss = -(dist.log_prob(actions) * advantages).mean()
    value_loss = F.mse_loss(values, returns) if baseline == "value" else torch.zeros(())
    entropy = dist.entropy().mean()
    loss = policy_loss + vf_coef * value_loss - ent_coef * entropy
    return loss, {"policy_loss": policy_loss.item(), "value_loss": value_loss.item(), "entropy": entropy.item()}


def greedy_policy(model: ActorCritic) -> common.Act:
    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.as_tensor(obs, dtype=torch.float32))[0].argmax(-1).numpy()
    return act


def solved_now(returns: list[float], window: int, threshold: float) -> bool:
    return len(returns) >= window and float(np.mean(returns[-window:])) >= threshold


@dataclasses.dataclass
class PGConfig:
    env_id: str = "CartPole-v1"
    """gymnasium environment id."""
    total_steps: int = 300_000
    """Environment steps (budget, summed over environments)."""
    num_envs: int = 4
    """A2C: environments stepped in lock-step (REINFORCE uses one)."""
    n_steps: int = 5
    """A2C: rollout length n of the n-step return."""
    num_hiddens: int = 64
    """Width of the hidden layers of actor and critic."""
    lr: float = 1e-3
    """Adam learning rate."""
    gamma: float = 0.99
    """Discount factor γ."""
    baseline: Literal["value", "mean", "none"] = "value"
    """REINFORCE baseline b(s): learned V(s), the episode's mean return, or none (A2C always uses V)."""
    normalize_advantages: bool = False
    """Standardise advantages within each update."""
    vf_coef: float = 0.5
    """Weight c_v of the value loss."""
    ent_coef: float = 0.0
    """Weight c_H of the entropy bonus."""
    max_grad_norm: float = 0.5
    """Gradient-norm clipping (0 = off)."""
    solve_threshold: float = 475.0
    """Solved when the mean of the last solve_window training episode returns reaches this."""
    solve_window: int = 20
    """Episodes in the solve criterion's moving mean."""
    stop_when_solved: bool = True
    """Stop training at the solve point."""
    eval_episodes: int = 100
    """Greedy evaluation episodes of the final policy."""

    def validate(self) -> None:
        if min(self.total_steps, self.num_envs, self.n_steps, self.num_hiddens, self.solve_window,
               self.eval_episodes) < 1:
            raise DojoError("step counts, sizes and episode counts must be >= 1")


def finish(ctx: RunContext, cfg: PGConfig, model: ActorCritic, label: str, curve: dict, step: int,
           solved_step: int, solved_seconds: float, train_seconds: float, episodes: int) -> dict[str, float]:
    """Greedy evaluation, weights, learning curves and a rendered episode; returns the metrics."""
    act = greedy_policy(model)
    seed = 10**6 + 1000 * ctx.seed
    eval_returns = common.evaluate(act, cfg.env_id, cfg.eval_episodes, seed=seed)
    ctx.save_weights(model.state_dict())
    common.plot_learning_curves(ctx, {label: curve}, threshold=cfg.solve_threshold, window=cfg.solve_window,
                                title=f"{label} on {cfg.env_id}")
    states, ret = common.rollout_states(act, cfg.env_id, seed=seed)
    common.render_cartpole(ctx, states, title=f"greedy {label} policy, return {ret:g}")
    return {"eval_return_mean": float(eval_returns.mean()), "eval_return_std": float(eval_returns.std()),
            "solved": float(solved_step > 0), "steps_to_solve": float(solved_step or step),
            "time_to_solve_seconds": float(solved_seconds if solved_step else train_seconds),
            "train_steps": float(step), "train_episodes": float(episodes), "train_seconds": train_seconds}


# ----------------------------------------------------------------------------------------------------
# REINFORCE: one episode, then one gradient step on Σ_t ∇log π(a_t|s_t)(G_t − b(s_t)).
# ----------------------------------------------------------------------------------------------------
def run_reinforce(ctx: RunContext, cfg: PGConfig) -> dict[str, float]:
    env = common.make_env(cfg.env_id)
    model = ActorCritic(env.observation_space.shape[0], int(env.action_space.n), cfg.num_hiddens)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    step, episodes, solved_step, solved_seconds, train_seconds = 0, 0, 0, 0.0, 0.0
    curve: dict[str, list[float]] = {"step": [], "wall": [], "return": []}

    saved = ctx.restore()
    if saved is not None:
        step, episodes, solved_step = saved["step"], saved["episodes"], saved["solved_step"]
        solved_seconds, train_seconds, curve = saved["solved_seconds"], saved["train_seconds"], saved["curve"]
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])

    bar = ctx.progress(cfg.total_steps, initial=step)
    t_start = time.perf_counter() - train_seconds
    while step < cfg.total_steps and not (solved_step and cfg.stop_when_solved):
        # --- one episode with the stochastic policy ---
        obs, _ = env.reset(seed=int(ctx.rng.integers(2**31)))
        observations, actions, rewards, done = [], [], [], False
        while not done:
            with torch.no_grad():
                logits, _ = model(torch.as_tensor(obs))
            action = int(Categorical(logits=logits).sample())
            observations.append(obs)
            actions.append(action)
            obs, reward, terminated, truncated, _ = env.step(action)
            rewards.append(reward)
            done = terminated or truncated
        # at a time limit the episode did not end: bootstrap the tail with V(s_T)
        with torch.no_grad():
            tail = model(torch.as_tensor(obs))[1] if truncated and not terminated else torch.zeros(())
        returns = discounted_returns(torch.tensor(rewards, dtype=torch.float32), cfg.gamma, bootstrap=tail)

        # --- one policy-gradient step ---
        loss, parts = actor_critic_loss(model, torch.as_tensor(np.stack(observations)), torch.tensor(actions),
                                        returns, cfg.vf_coef, cfg.ent_coef, cfg.normalize_advantages, cfg.baseline)
        optimizer.zero_grad()
        loss.backward()
        if cfg.max_grad_norm > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        ctx.check_finite(loss.item(), step, hint="Lower lr (--set lr=3e-4).")

        step += len(rewards)
        episodes += 1
        train_seconds = time.perf_counter() - t_start
        curve["step"].append(step)
        curve["wall"].append(ctx.wall_seconds)
        curve["return"].append(float(sum(rewards)))
        if not solved_step and solved_now(curve["return"], cfg.solve_window, cfg.solve_threshold):
            solved_step, solved_seconds = step, train_seconds
        ctx.log(step, episode_return=sum(rewards), **parts)
        bar.update(len(rewards))
        bar.set_postfix(ret=f"{sum(rewards):.0f}", mean=f"{np.mean(curve['return'][-cfg.solve_window:]):.0f}")
        ctx.tick(step, lambda: {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                "episodes": episodes, "solved_step": solved_step, "solved_seconds": solved_seconds,
                                "train_seconds": train_seconds, "curve": curve})
    bar.close()
    return finish(ctx, cfg, model, "REINFORCE", curve, step, solved_step, solved_seconds, train_seconds, episodes)


# ----------------------------------------------------------------------------------------------------
# A2C: N environments in lock-step, n-step returns, one synchronous update per rollout.
# ----------------------------------------------------------------------------------------------------
def run_a2c(ctx: RunContext, cfg: PGConfig, label: str = "A2C") -> dict[str, float]:
    envs = [common.make_env(cfg.env_id) for _ in range(cfg.num_envs)]
    model = ActorCritic(envs[0].observation_space.shape[0], int(envs[0].action_space.n), cfg.num_hiddens)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    step, episodes, solved_step, solved_seconds, train_seconds = 0, 0, 0, 0.0, 0.0
    curve: dict[str, list[float]] = {"step": [], "wall": [], "return": []}
    obs = np.stack([env.reset(seed=int(ctx.rng.integers(2**31)))[0] for env in envs])
    episode_returns = np.zeros(cfg.num_envs)

    saved = ctx.restore()
    if saved is not None:
        step, episodes, solved_step = saved["step"], saved["episodes"], saved["solved_step"]
        solved_seconds, train_seconds, curve = saved["solved_seconds"], saved["train_seconds"], saved["curve"]
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        obs = np.stack([common.env_restore(env, snap) for env, snap in zip(envs, saved["envs"])])
        episode_returns = saved["episode_returns"].numpy()

    bar = ctx.progress(cfg.total_steps, initial=step)
    t_start = time.perf_counter() - train_seconds
    while step < cfg.total_steps and not (solved_step and cfg.stop_when_solved):
        # --- rollout: n steps in each of the N environments ---
        batch_obs, batch_actions = [], []
        rewards = torch.zeros(cfg.n_steps, cfg.num_envs)
        dones = torch.zeros(cfg.n_steps, cfg.num_envs)
        for t in range(cfg.n_steps):
            with torch.no_grad():
                logits, _ = model(torch.as_tensor(obs))
            actions = Categorical(logits=logits).sample().numpy()
            batch_obs.append(obs.copy())
            batch_actions.append(actions)
            for i, env in enumerate(envs):
                next_obs, reward, terminated, truncated, _ = env.step(int(actions[i]))
                episode_returns[i] += reward
                if truncated and not terminated:  # not a terminal state: bootstrap it in the reward
                    with torch.no_grad():
                        reward += cfg.gamma * model(torch.as_tensor(next_obs))[1].item()
                rewards[t, i] = reward
                if terminated or truncated:
                    dones[t, i] = 1.0
                    episodes += 1
                    curve["step"].append(step + (t + 1) * cfg.num_envs)
                    curve["wall"].append(ctx.wall_seconds)
                    curve["return"].append(float(episode_returns[i]))
                    ctx.log(step + (t + 1) * cfg.num_envs, episode_return=float(episode_returns[i]))
                    episode_returns[i] = 0.0
                    next_obs, _ = env.reset(seed=int(ctx.rng.integers(2**31)))
                obs[i] = next_obs
        with torch.no_grad():
            bootstrap = model(torch.as_tensor(obs))[1]
        returns = discounted_returns(rewards, cfg.gamma, bootstrap=bootstrap, done=dones)  # n-step R_t

        # --- one synchronous update on the N × n batch ---
        loss, parts = actor_critic_loss(model, torch.as_tensor(np.concatenate(batch_obs)),
                                        torch.as_tensor(np.concatenate(batch_actions)), returns.reshape(-1),
                                        cfg.vf_coef, cfg.ent_coef, cfg.normalize_advantages)
        optimizer.zero_grad()
        loss.backward()
        if cfg.max_grad_norm > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        ctx.check_finite(loss.item(), step, hint="Lower lr (--set lr=3e-4).")

        step += cfg.n_steps * cfg.num_envs
        train_seconds = time.perf_counter() - t_start
        if not solved_step and solved_now(curve["return"], cfg.solve_window, cfg.solve_threshold):
            solved_step, solved_seconds = step, train_seconds
        bar.update(cfg.n_steps * cfg.num_envs)
        if curve["return"]:
            bar.set_postfix(mean=f"{np.mean(curve['return'][-cfg.solve_window:]):.0f}")
        ctx.tick(step, lambda: {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                "episodes": episodes, "solved_step": solved_step, "solved_seconds": solved_seconds,
                                "train_seconds": train_seconds, "curve": curve,
                                "envs": [common.env_snapshot(env) for env in envs],
                                "episode_returns": torch.from_numpy(episode_returns)})
    bar.close()
    ctx.log(step, **parts)
    return finish(ctx, cfg, model, label, curve, step, solved_step, solved_seconds, train_seconds, episodes)


_SMOKE = {"total_steps": 400, "eval_episodes": 3, "num_envs": 2}

register(Experiment(
    name="reinforce-cartpole",
    topic="Reinforcement learning: policy gradient (REINFORCE) with a learned value baseline",
    paper="Williams 1992, Simple statistical gradient-following algorithms; Sutton et al. 2000, Policy gradient",
    config_cls=PGConfig,
    presets={"smoke": _SMOKE, "quick": {"total_steps": 150_000}, "full": {"total_steps": 500_000}},
    run=run_reinforce,
    metric="eval_return_mean",
    direction="max",
    environment="CartPole-v1",
    references=(Reference(475.0, "gymnasium CartPole-v1 reward_threshold"),),
    family="rl",
    threads=1,
))

register(Experiment(
    name="a2c-cartpole",
    topic="Reinforcement learning: synchronous advantage actor-critic (A2C), n-step returns, N environments",
    paper="Mnih et al. 2016, Asynchronous methods for deep reinforcement learning (ICML), synchronous variant",
    config_cls=PGConfig,
    presets={"smoke": _SMOKE, "quick": {"total_steps": 150_000}, "full": {"total_steps": 500_000}},
    run=run_a2c,
    metric="eval_return_mean",
    direction="max",
    environment="CartPole-v1",
    references=(Reference(500.0, "rl-baselines3-zoo A2C CartPole-v1 (8 envs, 5-step rollouts, 5e5 steps)"),),
    family="rl",
    threads=1,
))
