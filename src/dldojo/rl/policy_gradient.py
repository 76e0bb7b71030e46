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

Metrics: `eval_return_mean` over 100 greedy episodes (argmax π) of the final policy, `train_solved` (1 or 0)
and, only for a run that solved, `train_steps_to_solve` (when the mean of the last `solve_window` training
episodes first reached `solve_threshold`) with the timing `time_to_solve_seconds`: a run that used up its
step budget without solving has no solve point (`train_steps` and `train_seconds` say how far it got).
Reference: rl-baselines3-zoo A2C CartPole-v1 (8 envs, 5-step rollouts) reaches the maximum 500.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import ClassVar, Literal

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


def sample_actions(logits: torch.Tensor, rng: np.random.Generator) -> np.ndarray:
    """a ~ π(·|s) = softmax(logits) for each row, drawn by inverse CDF with the NumPy stream `rng`."""
    cdf = torch.softmax(logits.double(), dim=-1).cumsum(-1).numpy()
    u = rng.random(cdf.shape[:-1] + (1,))
    return np.minimum((cdf < u).sum(-1), cdf.shape[-1] - 1)


@dataclasses.dataclass
class PGConfig:
    RANGES: ClassVar[dict] = {
        "total_steps": (0, 10**8), "num_envs": (1, 256), "n_steps": (1, 10**4), "num_hiddens": (1, 8192),
        "gamma": (0, 1), "vf_coef": (0, 100), "ent_coef": (0, 10), "max_grad_norm": (0, 1e6),
        "solve_threshold": (0, 1e6), "solve_window": (1, 10**5), "eval_episodes": (0, 10**5)}
    """Allowed (low, high) of the numeric fields, checked before anything is created (`engine.config`)."""

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


def build_model(cfg: PGConfig, run=None) -> ActorCritic:
    env = common.make_env(cfg.env_id)
    return ActorCritic(env.observation_space.shape[0], int(env.action_space.n), cfg.num_hiddens)


def finish(ctx: RunContext, cfg: PGConfig, model: ActorCritic, label: str, s: SimpleNamespace,
           step: int) -> dict[str, float]:
    """Greedy evaluation, weights, learning curves and a rendered episode; returns the metrics."""
    act = greedy_policy(model)
    seed = ctx.seed_for("eval/final")
    eval_returns = common.evaluate(act, cfg.env_id, cfg.eval_episodes, seed=seed,
                                   progress=ctx.progress(cfg.eval_episodes, "greedy evaluation", unit="episode"))
    ctx.save_weights(model.state_dict())
    common.plot_learning_curves(ctx, {label: s.curve}, threshold=cfg.solve_threshold, window=cfg.solve_window,
                                title=f"{label} on {cfg.env_id}")
    states, ret = common.rollout_states(act, cfg.env_id, seed=seed)
    common.render_cartpole(ctx, states, title=f"greedy {label} policy, return {ret:g}")
    ctx.add_timings(train_seconds=s.clock.seconds)
    solved = {}
    if s.solved_step:  # a run that never solved has no solve point: its budget is not one
        ctx.add_timings(time_to_solve_seconds=s.solved_seconds)
        solved = {"train_steps_to_solve": float(s.solved_step)}
    return {"eval_return_mean": float(eval_returns.mean()), "eval_return_std": float(eval_returns.std()),
            "train_solved": float(s.solved_step > 0), **solved, "train_steps": float(step),
            "train_episodes": float(s.episodes)}


def loop_state(model: ActorCritic, optimizer: torch.optim.Optimizer, **more) -> SimpleNamespace:
    """What REINFORCE and A2C checkpoint: model, optimiser, curve, counters, the solve point, the clock."""
    return SimpleNamespace(model=model, optimizer=optimizer, curve=common.Curve(), clock=common.Stopwatch(),
                           episodes=0, solved_step=0, solved_seconds=0.0, **more)


def end_bar(bar, s: SimpleNamespace, step: int) -> None:
    """Close the training bar at 100 % where the loop really stopped (the solve point ends it early, the last
    episode may overshoot the budget), saying why."""
    bar.total = step
    bar.set_postfix_str("solved" if s.solved_step else "step budget")
    bar.close()


def update(model: ActorCritic, optimizer: torch.optim.Optimizer, loss: torch.Tensor, max_grad_norm: float) -> None:
    optimizer.zero_grad()
    loss.backward()
    if max_grad_norm > 0:
        nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()


# ----------------------------------------------------------------------------------------------------
# REINFORCE: one episode, then one gradient step on Σ_t ∇log π(a_t|s_t)(G_t − b(s_t)).
# ----------------------------------------------------------------------------------------------------
def run_reinforce(ctx: RunContext, cfg: PGConfig) -> dict[str, float]:
    env = common.make_env(cfg.env_id)
    model = build_model(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    s = loop_state(model, optimizer, env_steps=0)
    seeds, sampling = ctx.rng("env"), ctx.rng("actions")
    ctx.restore(s)  # the loop counts episodes (s.episodes); the budget is in environment steps

    bar = ctx.progress(cfg.total_steps, initial=s.env_steps)
    while s.env_steps < cfg.total_steps and not (s.solved_step and cfg.stop_when_solved):
        # --- one episode with the stochastic policy ---
        obs, _ = env.reset(seed=int(seeds.integers(2**31)))
        observations, actions, rewards, done = [], [], [], False
        while not done:
            with torch.no_grad():
                logits, _ = model(torch.as_tensor(obs))
            action = int(sample_actions(logits, sampling))
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
        update(model, optimizer, loss, cfg.max_grad_norm)
        s.episodes += 1
        ctx.check_finite(loss.item(), s.episodes, hint="Lower lr (--set lr=3e-4).")
        s.env_steps += len(rewards)
        s.curve.add(s.env_steps, ctx.wall_seconds, float(sum(rewards)))
        if not s.solved_step and solved_now(s.curve["return"], cfg.solve_window, cfg.solve_threshold):
            s.solved_step, s.solved_seconds = s.env_steps, s.clock.seconds
        ctx.log(s.episodes, env_steps=s.env_steps, episode_return=sum(rewards), **parts)
        bar.update(len(rewards))
        bar.set_postfix(ret=f"{sum(rewards):.0f}", mean=f"{np.mean(s.curve['return'][-cfg.solve_window:]):.0f}")
        ctx.tick(s.episodes, s)
    end_bar(bar, s, s.env_steps)
    return finish(ctx, cfg, model, "REINFORCE", s, s.env_steps)


# ----------------------------------------------------------------------------------------------------
# A2C: N environments in lock-step, n-step returns, one synchronous update per rollout.
# ----------------------------------------------------------------------------------------------------
def run_a2c(ctx: RunContext, cfg: PGConfig) -> dict[str, float]:
    envs = common.ResumableEnvs(common.ResumableEnv(cfg.env_id, seeds=ctx.rng("env")) for _ in range(cfg.num_envs))
    model = build_model(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    for env in envs:
        env.reset()
    s = loop_state(model, optimizer, envs=envs, losses={})
    sampling = ctx.rng("actions")
    step = ctx.restore(s)

    bar = ctx.progress(cfg.total_steps, initial=step)
    while step < cfg.total_steps and not (s.solved_step and cfg.stop_when_solved):
        # --- rollout: n steps in each of the N environments ---
        batch_obs, batch_actions = [], []
        rewards = torch.zeros(cfg.n_steps, cfg.num_envs)
        dones = torch.zeros(cfg.n_steps, cfg.num_envs)
        for t in range(cfg.n_steps):
            obs = np.stack([env.obs for env in envs])
            with torch.no_grad():
                logits, _ = model(torch.as_tensor(obs))
            actions = sample_actions(logits, sampling)
            batch_obs.append(obs)
            batch_actions.append(actions)
            for i, env in enumerate(envs):
                next_obs, reward, terminated, truncated = env.step(int(actions[i]))
                if truncated and not terminated:  # not a terminal state: bootstrap it in the reward
                    with torch.no_grad():
                        reward += cfg.gamma * model(torch.as_tensor(next_obs))[1].item()
                rewards[t, i] = reward
                if terminated or truncated:
                    dones[t, i] = 1.0
                    s.episodes += 1
                    s.curve.add(step + (t + 1) * cfg.num_envs, ctx.wall_seconds, env.episode_return)
                    ctx.log(step + (t + 1) * cfg.num_envs, episode_return=env.episode_return)
                    env.reset()
        with torch.no_grad():
            bootstrap = model(torch.as_tensor(np.stack([env.obs for env in envs])))[1]
        returns = discounted_returns(rewards, cfg.gamma, bootstrap=bootstrap, done=dones)  # n-step R_t

        # --- one synchronous update on the N × n batch ---
        loss, parts = actor_critic_loss(model, torch.as_tensor(np.concatenate(batch_obs)),
                                        torch.as_tensor(np.concatenate(batch_actions)), returns.reshape(-1),
                                        cfg.vf_coef, cfg.ent_coef, cfg.normalize_advantages)
        update(model, optimizer, loss, cfg.max_grad_norm)
        ctx.check_finite(loss.item(), step, hint="Lower lr (--set lr=3e-4).")
        s.losses = parts

        step += cfg.n_steps * cfg.num_envs
        if not s.solved_step and solved_now(s.curve["return"], cfg.solve_window, cfg.solve_threshold):
            s.solved_step, s.solved_seconds = step, s.clock.seconds
        bar.update(cfg.n_steps * cfg.num_envs)
        if s.curve["return"]:
            bar.set_postfix(mean=f"{np.mean(s.curve['return'][-cfg.solve_window:]):.0f}")
        ctx.tick(step, s)
    end_bar(bar, s, step)
    ctx.log(step, **s.losses)
    return finish(ctx, cfg, model, "A2C", s, step)


_SMOKE = {"total_steps": 400, "eval_episodes": 3, "num_envs": 2}

register(Experiment(
    name="reinforce-cartpole",
    topic="Reinforcement learning: policy gradient (REINFORCE) with a learned value baseline",
    paper="Williams 1992, Simple statistical gradient-following algorithms; Sutton et al. 2000, Policy gradient",
    config_cls=PGConfig,
    presets={"smoke": _SMOKE, "quick": {"total_steps": 150_000}, "full": {"total_steps": 500_000}},
    run=run_reinforce,
    build_model=build_model,
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
    build_model=build_model,
    metric="eval_return_mean",
    direction="max",
    environment="CartPole-v1",
    references=(Reference(500.0, "rl-baselines3-zoo A2C CartPole-v1 (8 envs, 5-step rollouts, 5e5 steps)"),),
    family="rl",
    threads=1,
))
