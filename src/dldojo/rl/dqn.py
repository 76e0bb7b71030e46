"""`dqn-cartpole`: Deep Q-Network with experience replay and a target network, Double-DQN option.

Curriculum: deep reinforcement learning — DQN (Mnih et al. 2015, "Human-level control through deep
reinforcement learning", Nature 518) and Double DQN (van Hasselt, Guez & Silver 2016, AAAI).
A network Q_θ(s, ·) is fitted to bootstrapped targets computed with a slowly updated copy θ⁻:

    y = r + γ (1 − terminated) Q_θ⁻(s', argmax_a' Q_θ(s', a'))      (Double DQN)
    y = r + γ (1 − terminated) max_a' Q_θ⁻(s', a')                   (DQN)
    L(θ) = E_(s,a,r,s')~replay [ Huber(Q_θ(s, a) − y) ]

Transitions come from an ε-greedy policy (ε decays linearly from 1 to ε_end over the first
`exploration_fraction` of training) and are stored in a replay buffer; every `train_every` environment
steps, `gradient_steps` Adam steps on random minibatches are taken and θ⁻ ← θ afterwards (or softly,
θ⁻ ← τθ + (1 − τ)θ⁻). Only `terminated` (the pole fell) stops bootstrapping; hitting the time limit
(`truncated`) does not. The defaults follow the rl-baselines3-zoo CartPole-v1 DQN setting (2×256 MLP,
lr 2.3e-3, batch 64, train every 256 steps with 128 gradient steps, target sync each round, ε → 0.04
over 16 % of training), except gradient clipping: off, as it cost ~35 % of each update on 1 thread.

Model selection, stated plainly: every `eval_every` steps the greedy policy is evaluated on
`eval_episodes` episodes; the best network so far is kept, and the reported `eval_return_mean` is the
return of that *best-so-far network* over 100 fresh greedy episodes (seeds disjoint from the periodic
evaluations). `eval_final_network_return_mean` reports the last network too. Training stops early once a
periodic evaluation reaches `stop_at_return`.

Reference: cleanrl's DQN reaches 488.7 ± 16.1 on CartPole-v1 after 500k steps (cleanrl docs,
dqn.py benchmark). Issue target: eval mean ≥ 475 over 100 greedy episodes within 3 minutes on 2 cores.
"""

from __future__ import annotations

import copy
import dataclasses
from types import SimpleNamespace
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dldojo.engine.errors import DojoError
from dldojo.engine.registry import Experiment, Reference, register
from dldojo.engine.run import RunContext
from dldojo.rl import common


class QNetwork(nn.Module):
    """s -> (Q(s, a) for every action a): an MLP with two hidden ReLU layers."""

    def __init__(self, obs_dim: int, n_actions: int, num_hiddens: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(obs_dim, num_hiddens), nn.ReLU(), nn.Linear(num_hiddens, num_hiddens),
                                 nn.ReLU(), nn.Linear(num_hiddens, n_actions))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.net(s)


class ReplayBuffer:
    """A circular buffer of transitions (s, a, r, s', terminated), sampled uniformly."""

    def __init__(self, capacity: int, obs_dim: int):
        self.capacity, self.pos, self.size = capacity, 0, 0
        self.obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)

    def __len__(self) -> int:
        return self.size

    def add(self, obs: np.ndarray, action: int, reward: float, next_obs: np.ndarray, terminated: bool) -> None:
        i = self.pos
        self.obs[i], self.actions[i], self.rewards[i] = obs, action, reward
        self.next_obs[i], self.terminated[i] = next_obs, float(terminated)
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        idx = rng.integers(0, self.size, size=batch_size)
        return {"obs": torch.from_numpy(self.obs[idx]), "actions": torch.from_numpy(self.actions[idx]),
                "rewards": torch.from_numpy(self.rewards[idx]), "next_obs": torch.from_numpy(self.next_obs[idx]),
                "terminated": torch.from_numpy(self.terminated[idx])}

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        n = self.size
        return {"pos": self.pos, "size": n, "obs": torch.from_numpy(self.obs[:n].copy()),
                "next_obs": torch.from_numpy(self.next_obs[:n].copy()),
                "actions": torch.from_numpy(self.actions[:n].copy()),
                "rewards": torch.from_numpy(self.rewards[:n].copy()),
                "terminated": torch.from_numpy(self.terminated[:n].copy())}

    def load_state_dict(self, state: dict) -> None:
        n = self.size = int(state["size"])
        self.pos = int(state["pos"])
        for key in ("obs", "next_obs", "actions", "rewards", "terminated"):
            getattr(self, key)[:n] = state[key].numpy()


def td_target(rewards: torch.Tensor, next_obs: torch.Tensor, terminated: torch.Tensor, q_net: nn.Module,
              target_net: nn.Module, gamma: float, double: bool) -> torch.Tensor:
    """y = r + γ(1 − terminated) Q_θ⁻(s', a*), a* = argmax Q_θ(s', ·) (Double DQN) or argmax Q_θ⁻(s', ·)."""
    with torch.no_grad():
        q_next = target_net(next_obs)
        a_star = q_net(next_obs).argmax(1) if double else q_next.argmax(1)
        return rewards + gamma * (1.0 - terminated) * q_next.gather(1, a_star[:, None]).squeeze(1)


@torch.no_grad()
def sync_target(q_net: nn.Module, target_net: nn.Module, tau: float = 1.0) -> None:
    """θ⁻ ← τ θ + (1 − τ) θ⁻ (τ = 1: hard copy)."""
    for p, p_target in zip(q_net.parameters(), target_net.parameters()):
        p_target.mul_(1.0 - tau).add_(p, alpha=tau)


def linear_epsilon(step: int, total_steps: int, fraction: float, start: float, end: float) -> float:
    duration = max(1.0, fraction * total_steps)
    return max(end, start + (end - start) * step / duration)


def greedy_policy(q_net: nn.Module) -> common.Act:
    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return q_net(torch.as_tensor(obs, dtype=torch.float32)).argmax(1).numpy()
    return act


@dataclasses.dataclass
class DQNConfig:
    RANGES: ClassVar[dict] = {
        "total_steps": (0, 10**8), "num_hiddens": (1, 8192), "gamma": (0, 1), "buffer_size": (1, 10**7),
        "batch_size": (1, 65536), "learning_starts": (0, 10**8), "train_every": (1, 10**6),
        "gradient_steps": (0, 10**5), "target_update_every": (1, 10**6), "tau": (0, 1), "max_grad_norm": (0, 1e6),
        "epsilon_start": (0, 1), "epsilon_end": (0, 1), "exploration_fraction": (0, 1), "eval_every": (0, 10**8),
        "eval_episodes": (0, 10**5), "final_eval_episodes": (0, 10**5), "stop_at_return": (-1e6, 1e6)}
    """Allowed (low, high) of the numeric fields, checked before anything is created (`engine.config`)."""

    env_id: str = "CartPole-v1"
    """gymnasium environment id."""
    total_steps: int = 60_000
    """Environment steps (budget); training may stop earlier, see stop_at_return."""
    num_hiddens: int = 256
    """Width of the two hidden layers of the Q-network."""
    lr: float = 2.3e-3
    """Adam learning rate."""
    gamma: float = 0.99
    """Discount factor γ."""
    buffer_size: int = 100_000
    """Replay buffer capacity (transitions)."""
    batch_size: int = 64
    """Minibatch size of each gradient step."""
    learning_starts: int = 1000
    """Environment steps of pure collection (replay warm-up) before the first update."""
    train_every: int = 256
    """Environment steps between training rounds."""
    gradient_steps: int = 128
    """Gradient steps per training round."""
    target_update_every: int = 128
    """Gradient steps between target-network updates."""
    tau: float = 1.0
    """Target update θ⁻ ← τθ + (1 − τ)θ⁻ (1 = hard copy)."""
    double_dqn: bool = True
    """Double DQN: choose a' with the online network, value it with the target network."""
    loss: Literal["huber", "mse"] = "huber"
    """Regression loss on the TD error."""
    max_grad_norm: float = 0.0
    """Gradient-norm clipping (0 = off: the Huber loss already bounds each TD error's gradient)."""
    epsilon_start: float = 1.0
    """ε at step 0."""
    epsilon_end: float = 0.04
    """Final ε."""
    exploration_fraction: float = 0.16
    """Fraction of total_steps over which ε decays linearly."""
    eval_every: int = 2500
    """Environment steps between periodic greedy evaluations (model selection)."""
    eval_episodes: int = 20
    """Episodes per periodic evaluation."""
    final_eval_episodes: int = 100
    """Greedy episodes of the final evaluation of the best-so-far network."""
    stop_at_return: float = 500.0
    """Stop training once a periodic evaluation mean reaches this (0 = never)."""

    def validate(self) -> None:
        if min(self.total_steps, self.num_hiddens, self.batch_size, self.train_every, self.gradient_steps,
               self.target_update_every, self.eval_every, self.eval_episodes, self.final_eval_episodes) < 1:
            raise DojoError("step counts, sizes and episode counts must be >= 1")
        if not 0 < self.tau <= 1:
            raise DojoError(f"tau must be in (0, 1], got {self.tau}")


def build_model(cfg: DQNConfig, run=None) -> QNetwork:
    env = common.make_env(cfg.env_id)
    return QNetwork(env.observation_space.shape[0], int(env.action_space.n), cfg.num_hiddens)


def run(ctx: RunContext, cfg: DQNConfig) -> dict[str, float]:
    env = common.ResumableEnv(cfg.env_id, seeds=ctx.rng("env"))
    q_net = build_model(cfg)
    target_net = copy.deepcopy(q_net)
    optimizer = torch.optim.Adam(q_net.parameters(), lr=cfg.lr)
    buffer = ReplayBuffer(min(cfg.buffer_size, cfg.total_steps), env.observation_space.shape[0])
    env.reset()
    s = SimpleNamespace(q_net=q_net, target_net=target_net, optimizer=optimizer, buffer=buffer, env=env,
                        best=common.BestSoFar(q_net), curve=common.Curve(), evals=common.Curve(),
                        clock=common.Stopwatch(), updates=0, episodes=0, stopped=False)
    explore, replay = ctx.rng("explore"), ctx.rng("replay")
    step = ctx.restore(s)

    act = greedy_policy(q_net)
    bar = ctx.progress(cfg.total_steps, initial=step)
    while step < cfg.total_steps and not s.stopped:
        # --- act ε-greedily and store the transition ---
        epsilon = linear_epsilon(step, cfg.total_steps, cfg.exploration_fraction, cfg.epsilon_start, cfg.epsilon_end)
        obs = env.obs
        action = int(explore.integers(env.action_space.n)) if explore.random() < epsilon else int(act(obs[None])[0])
        next_obs, reward, terminated, truncated = env.step(action)
        buffer.add(obs, action, reward, next_obs, terminated)
        step += 1
        if terminated or truncated:
            s.episodes += 1
            s.curve.add(step, ctx.wall_seconds, env.episode_return)
            ctx.log(step, episode_return=env.episode_return, episode_length=env.episode_length, epsilon=epsilon)
            bar.set_postfix(ret=f"{env.episode_return:.0f}", eps=f"{epsilon:.2f}", best=f"{s.best.score:.0f}")
            env.reset()

        # --- learn: a round of gradient steps on replayed minibatches ---
        if step > cfg.learning_starts and step % cfg.train_every == 0:
            for _ in range(cfg.gradient_steps):
                batch = buffer.sample(cfg.batch_size, replay)
                y = td_target(batch["rewards"], batch["next_obs"], batch["terminated"], q_net, target_net,
                              cfg.gamma, cfg.double_dqn)
                q = q_net(batch["obs"]).gather(1, batch["actions"][:, None]).squeeze(1)
                loss = F.smooth_l1_loss(q, y) if cfg.loss == "huber" else F.mse_loss(q, y)
                optimizer.zero_grad()
                loss.backward()
                if cfg.max_grad_norm > 0:
                    nn.utils.clip_grad_norm_(q_net.parameters(), cfg.max_grad_norm)
                optimizer.step()
                s.updates += 1
                if s.updates % cfg.target_update_every == 0:
                    sync_target(q_net, target_net, cfg.tau)
            ctx.check_finite(loss.item(), step, hint="For dqn-cartpole lower lr or use --set loss=huber.")
            ctx.log(step, loss=loss.item(), q_mean=q.mean().item())

        # --- periodic greedy evaluation; keep the best network so far ---
        if step % cfg.eval_every == 0:
            mean = float(common.evaluate(act, cfg.env_id, cfg.eval_episodes, seed=ctx.seed_for(f"eval/{step}")).mean())
            s.evals.add(step, ctx.wall_seconds, mean)
            s.best.update(mean, step)
            ctx.log(step, periodic_eval_return_mean=mean)
            s.stopped = bool(cfg.stop_at_return and mean >= cfg.stop_at_return)
        bar.update(1)
        ctx.tick(step, s)
    bar.close()
    ctx.add_timings(train_seconds=s.clock.seconds, train_steps_per_second=step / max(s.clock.seconds, 1e-9))

    # --- final evaluation of the best-so-far network (and of the last one, for comparison) ---
    final_seed = ctx.seed_for("eval/final")
    last_returns = common.evaluate(act, cfg.env_id, cfg.final_eval_episodes, seed=final_seed)
    s.best.load_into_model()
    eval_returns = common.evaluate(act, cfg.env_id, cfg.final_eval_episodes, seed=final_seed)
    ctx.save_weights(q_net.state_dict())
    common.plot_learning_curves(ctx, {"training episodes": s.curve,
                                      f"periodic greedy evaluation ({cfg.eval_episodes} episodes)":
                                      {**s.evals, "window": 1}},
                                threshold=475.0 if cfg.env_id == "CartPole-v1" else None,
                                title=f"DQN{' (Double)' if cfg.double_dqn else ''} on {cfg.env_id}", window=10)
    states, ret = common.rollout_states(act, cfg.env_id, seed=final_seed)
    common.render_cartpole(ctx, states, title=f"greedy DQN policy (best network), return {ret:g}")
    return {"eval_return_mean": float(eval_returns.mean()), "eval_return_std": float(eval_returns.std()),
            "eval_return_min": float(eval_returns.min()),
            "eval_final_network_return_mean": float(last_returns.mean()),
            "eval_periodic_best_return_mean": s.best.score if s.evals["step"] else 0.0,
            "train_best_step": float(s.best.step), "train_steps": float(step), "train_episodes": float(s.episodes)}


register(Experiment(
    name="dqn-cartpole",
    topic="Deep reinforcement learning: DQN with experience replay, target network and Double DQN",
    paper="Mnih et al. 2015, Human-level control through deep RL (Nature); van Hasselt et al. 2016, Double DQN",
    config_cls=DQNConfig,
    presets={"smoke": {"total_steps": 600, "learning_starts": 100, "train_every": 50, "gradient_steps": 10,
                       "target_update_every": 10, "num_hiddens": 32, "batch_size": 32, "eval_every": 300,
                       "eval_episodes": 3, "final_eval_episodes": 5},
             "quick": {"total_steps": 30_000},
             "full": {"total_steps": 60_000}},
    run=run,
    build_model=build_model,
    metric="eval_return_mean",
    direction="max",
    environment="CartPole-v1",
    references=(Reference(488.7, "cleanrl DQN on CartPole-v1, 500k steps (± 16.1 over seeds)"),),
    target=475.0,
    family="rl",
    threads=1,  # tiny MLP: one thread is fastest
))
