"""Classic RL: environment API use, the tabular Q update, DQN's pieces, policy-gradient returns, A3C's shared model.

Interrupt -> resume equality of every experiment is tested by tests/test_smoke_registry.py.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from dldojo.engine.launch import run_experiment
from dldojo.rl import common, dqn, policy_gradient, q_table


def _metric_lines(run_dir: str) -> list[dict]:
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k != "wall"} for x in lines]


def _episode(env_id: str, seed: int, actions: list[int]):
    env = common.make_env(env_id)
    obs, _ = env.reset(seed=seed)
    trace = [obs]
    for a in actions:
        obs, reward, terminated, truncated, _ = env.step(a)
        trace.append(np.append(obs, [reward, terminated, truncated]))
        if terminated or truncated:
            break
    return trace


# ----- environment API -----
def test_seeding_gives_identical_episodes():
    actions = [0, 1, 1, 0, 1, 0, 0, 1] * 10
    a, b = _episode("CartPole-v1", 7, actions), _episode("CartPole-v1", 7, actions)
    c = _episode("CartPole-v1", 8, actions)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    # the random baseline seeds the action space too: same seed, same returns
    assert np.array_equal(common.random_policy_returns("CartPole-v1", 5, 3),
                          common.random_policy_returns("CartPole-v1", 5, 3))


def test_env_snapshot_continues_the_same_episode():
    env = common.make_env("CartPole-v0")
    env.reset(seed=11)
    for _ in range(6):
        env.step(1)
    snap = common.env_snapshot(env)
    expected = [env.step(a) for a in (0, 0, 1)]
    other = common.make_env("CartPole-v0")
    common.env_restore(other, snap)
    got = [other.step(a) for a in (0, 0, 1)]
    for e, g in zip(expected, got):
        assert np.array_equal(e[0], g[0]) and e[1:4] == g[1:4]
    assert common.time_limit(other)._elapsed_steps == 9


def test_resumable_env_continues_the_episode_and_its_seeds():
    """The wrapper's state (episode in progress, return so far) plus its seed stream give the same future."""
    env = common.ResumableEnv("CartPole-v1", seeds=np.random.default_rng(5))
    env.reset()
    for _ in range(4):
        env.step(1)
    saved, seeds = env.state_dict(), copy.deepcopy(env.seeds.bit_generator.state)
    other = common.ResumableEnv("CartPole-v1", seeds=np.random.default_rng(99))
    other.load_state_dict(saved)
    other.seeds.bit_generator.state = seeds
    assert np.array_equal(other.obs, env.obs) and other.episode_return == env.episode_return == 4.0
    for a in [0, 1] * 40:  # through the end of the episode and into the next one
        results = env.step(a), other.step(a)
        assert np.array_equal(results[0][0], results[1][0]) and results[0][1:] == results[1][1:]
        if results[0][2] or results[0][3]:
            assert np.array_equal(env.reset(), other.reset())


def test_episodes_to_solve_and_moving_average():
    assert common.episodes_to_solve([0] * 5 + [200] * 5, threshold=195, window=4) == 9
    assert common.episodes_to_solve([100] * 10, threshold=195, window=4) is None
    np.testing.assert_allclose(common.moving_average([2, 4, 6, 8], 2), [2, 3, 5, 7])


# ----- tabular Q-learning -----
def test_q_update_equals_the_formula_on_a_hand_case():
    Q = np.array([[0.2, -0.4], [0.5, 0.9]])
    new = q_table.q_update(Q, s=0, a=1, r=1.0, s_next=1, alpha=0.5, gamma=0.99)
    # (1 − 0.5)·(−0.4) + 0.5·(1 + 0.99·max(0.5, 0.9)) = −0.2 + 0.5·1.891 = 0.7455
    assert new == pytest.approx(0.7455, abs=1e-12)
    assert Q[0, 1] == pytest.approx(0.7455, abs=1e-12) and Q[0, 0] == 0.2 and list(Q[1]) == [0.5, 0.9]
    Q2 = np.array([[0.0, 0.0], [-1.0, -3.0]])
    assert q_table.q_update(Q2, 0, 0, -200.0, 1, 0.5, 0.99) == pytest.approx(0.5 * (-200 + 0.99 * -1.0))


def test_digitize_matches_the_course_np_digitize():
    rng = np.random.default_rng(0)
    clip, num = (2.4, 3.0, 0.5, 2.0), 6
    edges = q_table.bin_edges(clip, num)
    obs = rng.normal(0, 1.5, size=(200, 4)) * np.array(clip)
    course = [sum(np.digitize(o[i], np.linspace(-clip[i], clip[i], num + 1)[1:-1]) * num ** i for i in range(4))
              for o in obs]
    assert list(q_table.digitize(obs, edges)) == course
    assert q_table.digitize(np.full(4, -99.0), edges)[0] == 0
    assert q_table.digitize(np.full(4, 99.0), edges)[0] == num ** 4 - 1


def test_q_table_learns_cartpole_v0(synthetic_data):
    summary = run_experiment("q-table-cartpole", preset="smoke", sets=["episodes=400"], seed=0, quiet=True,
                             report=False)
    random_mean = common.random_policy_returns("CartPole-v0", 50, 0).mean()
    assert summary["metrics"]["eval_return_mean"] > max(150.0, 4 * random_mean)


# ----- DQN -----
def test_replay_buffer_wraps_samples_and_round_trips():
    buffer = dqn.ReplayBuffer(capacity=5, obs_dim=2)
    for i in range(7):
        buffer.add(np.array([i, -i]), i % 2, float(i), np.array([i + 1, -i - 1]), terminated=(i == 6))
    assert len(buffer) == 5 and buffer.pos == 2
    assert sorted(buffer.rewards.tolist()) == [2.0, 3.0, 4.0, 5.0, 6.0]  # 0 and 1 were overwritten
    batch = buffer.sample(64, np.random.default_rng(0))
    assert batch["obs"].shape == (64, 2) and batch["actions"].dtype == torch.int64
    assert set(batch["rewards"].tolist()) <= {2.0, 3.0, 4.0, 5.0, 6.0}
    assert torch.equal(batch["next_obs"][:, 0], batch["obs"][:, 0] + 1)  # transitions stay whole
    assert torch.equal(batch["terminated"], (batch["rewards"] == 6.0).float())
    clone = dqn.ReplayBuffer(5, 2)
    clone.load_state_dict(buffer.state_dict())
    b1, b2 = buffer.sample(8, np.random.default_rng(1)), clone.sample(8, np.random.default_rng(1))
    assert all(torch.equal(b1[k], b2[k]) for k in b1) and clone.pos == buffer.pos


def test_td_target_dqn_and_double_dqn_on_a_hand_case():
    q_net, target_net = torch.nn.Linear(1, 2, bias=False), torch.nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        q_net.weight.copy_(torch.tensor([[1.0], [2.0]]))  # online prefers action 1
        target_net.weight.copy_(torch.tensor([[5.0], [3.0]]))  # target prefers action 0
    rewards, next_obs, terminated = torch.tensor([1.0, 1.0]), torch.tensor([[1.0], [1.0]]), torch.tensor([0.0, 1.0])
    plain = dqn.td_target(rewards, next_obs, terminated, q_net, target_net, 0.9, double=False)
    double = dqn.td_target(rewards, next_obs, terminated, q_net, target_net, 0.9, double=True)
    torch.testing.assert_close(plain, torch.tensor([1.0 + 0.9 * 5.0, 1.0]))
    torch.testing.assert_close(double, torch.tensor([1.0 + 0.9 * 3.0, 1.0]))  # a* from online, value from target


def test_target_network_sync_hard_and_soft():
    torch.manual_seed(0)
    q_net = dqn.QNetwork(4, 2, 8)
    target = copy.deepcopy(q_net)
    with torch.no_grad():
        for p in q_net.parameters():
            p.add_(1.0)  # online moves on; the target must not follow until synced
    assert not any(torch.equal(p, t) for p, t in zip(q_net.parameters(), target.parameters()))
    before = [t.clone() for t in target.parameters()]
    dqn.sync_target(q_net, target, tau=0.25)
    for p, t, b in zip(q_net.parameters(), target.parameters(), before):
        torch.testing.assert_close(t, 0.25 * p + 0.75 * b)
    dqn.sync_target(q_net, target, tau=1.0)
    assert all(torch.equal(p, t) for p, t in zip(q_net.parameters(), target.parameters()))


def test_dqn_same_seed_same_metrics(synthetic_data):
    a = run_experiment("dqn-cartpole", preset="smoke", seed=3, quiet=True, report=False)
    b = run_experiment("dqn-cartpole", preset="smoke", seed=3, quiet=True, report=False)
    c = run_experiment("dqn-cartpole", preset="smoke", seed=4, quiet=True, report=False)
    assert a["metrics"] == b["metrics"] and "train_seconds" in a["timings"]
    assert _metric_lines(a["run_dir"]) == _metric_lines(b["run_dir"])
    assert _metric_lines(a["run_dir"]) != _metric_lines(c["run_dir"])


def test_quick_dqn_beats_a_random_policy_clearly(synthetic_data):
    summary = run_experiment("dqn-cartpole", preset="quick", seed=0, quiet=True, report=False,
                             sets=["total_steps=10000", "num_hiddens=64", "eval_every=2000",
                                   "final_eval_episodes=30"])
    random_mean = common.random_policy_returns("CartPole-v1", 30, 0).mean()  # ≈ 22
    assert summary["metrics"]["eval_return_mean"] > max(100.0, 5 * random_mean)


# ----- policy gradients -----
def test_discounted_returns_cut_at_episode_ends():
    rewards = torch.tensor([[1.0], [1.0], [1.0]])
    done = torch.tensor([[0.0], [1.0], [0.0]])  # the episode ends at step 1
    # without done: R_2 = 1 + 0.5·10 = 6, R_1 = 1 + 0.5·6 = 4, R_0 = 1 + 0.5·4 = 3
    out = policy_gradient.discounted_returns(rewards, 0.5, bootstrap=torch.tensor([10.0]), done=None)
    torch.testing.assert_close(out[:, 0], torch.tensor([1 + 0.5 * (1 + 0.5 * 6.0), 1 + 0.5 * 6.0, 6.0]))
    cut = policy_gradient.discounted_returns(rewards, 0.5, bootstrap=torch.tensor([10.0]), done=done)
    torch.testing.assert_close(cut[:, 0], torch.tensor([1.5, 1.0, 6.0]))


def test_sampled_actions_follow_the_policy():
    logits = torch.log(torch.tensor([[0.2, 0.8], [0.9, 0.1], [0.5, 0.5]]))
    assert policy_gradient.sample_actions(logits, np.random.default_rng(0)).shape == (3,)
    rng = np.random.default_rng(1)
    frequencies = np.mean([policy_gradient.sample_actions(logits, rng) for _ in range(20_000)], axis=0)
    np.testing.assert_allclose(frequencies, [0.8, 0.1, 0.5], atol=0.015)  # P(action 1) per row
    one = policy_gradient.sample_actions(logits[0], np.random.default_rng(0))  # a single state
    assert one.shape == () and int(one) in (0, 1)


def test_policy_gradient_loss_is_the_score_function_estimator():
    torch.manual_seed(0)
    model = policy_gradient.ActorCritic(4, 2, 8)
    obs, actions, returns = torch.randn(6, 4), torch.tensor([0, 1, 1, 0, 1, 0]), torch.randn(6)
    loss, _ = policy_gradient.actor_critic_loss(model, obs, actions, returns, vf_coef=0.0, ent_coef=0.0,
                                                baseline="none")
    grads = torch.autograd.grad(loss, list(model.actor.parameters()))
    log_probs = torch.log_softmax(model.actor(obs), -1)[torch.arange(6), actions]
    expected = torch.autograd.grad(-(log_probs * returns).mean(), list(model.actor.parameters()))
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, e)



@pytest.mark.parametrize("name", ["reinforce-cartpole", "a2c-cartpole"])
@pytest.mark.parametrize("solves", [False, True])
def test_policy_gradient_solve_point_only_when_solved_and_a_full_bar(name, solves, synthetic_data, capsys):
    """The smoke budget (400 steps) cannot solve CartPole: no solve point, not the budget as one. With a threshold
    of 10 the run solves within a few episodes and stops there; either way the bar ends at 100 % saying why."""
    from dldojo.cli import main

    sets = ["--set", "solve_threshold=10", "--set", "solve_window=2"] if solves else []
    assert main(["run", name, "--preset", "smoke", "--json", "--no-report", *sets]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out.splitlines()[-1])
    metrics, timings = summary["metrics"], summary["timings"]
    assert metrics["train_solved"] == float(solves)
    assert ("train_steps_to_solve" in metrics) == solves == ("time_to_solve_seconds" in timings)
    steps = int(metrics["train_steps"])
    if solves:
        assert metrics["train_steps_to_solve"] == steps < 400  # stop_when_solved: the solve point ends the run
    else:
        assert steps >= 400
    bar = [line for line in err.splitlines() if line.startswith(f"{name} train")]
    assert "100%" in bar[-1] and f"{steps}/{steps}" in bar[-1] and ("solved" if solves else "step budget") in bar[-1]
    evaluation = [line for line in err.splitlines() if line.startswith(f"{name} greedy evaluation")]
    assert evaluation and "100%" in evaluation[-1] and "3/3" in evaluation[-1], evaluation  # smoke: 3 episodes

# ----- A3C -----
def test_a3c_workers_update_one_shared_model(synthetic_data):
    summary = run_experiment("a3c-cartpole", preset="smoke", seed=0, quiet=True, report=False,
                             sets=["compare_a2c=false", "total_steps=1500", "num_workers=2"])
    run_dir = Path(summary["run_dir"])
    rows = json.loads((run_dir / "tables/workers.json").read_text())["rows"]
    pids = [r["pid"] for r in rows]
    assert len(set(pids)) == 2 and os.getpid() not in pids and all(pids)  # two separate processes
    updates = [r["updates applied to the shared model"] for r in rows]
    assert all(u > 0 for u in updates)  # both advanced the shared parameter version
    assert summary["facts"]["shared_updates"] == sum(updates)
    assert summary["metrics"]["train_steps"] >= 1500
    assert summary["timings"]["train_seconds"] > 0 and summary["timings"]["startup_seconds"] > 0
    # a solve point (steps, seconds) only for a run that solved: a budget is not one
    solved = bool(summary["metrics"]["train_solved"])
    assert ("time_to_solve_seconds" in summary["timings"]) == solved == ("train_steps_to_solve" in summary["metrics"])
    # the shared model the workers trained is what was saved, and it moved away from the initialisation
    from dldojo.engine.reload import load_weights

    torch.manual_seed(0)
    initial = policy_gradient.ActorCritic(4, 2, 64).state_dict()
    trained = load_weights(run_dir)
    assert any(not torch.equal(initial[k], trained[k]) for k in initial)


def test_a3c_shared_adam_statistics_live_in_shared_memory():
    from dldojo.rl import a3c

    model = policy_gradient.ActorCritic(4, 2, 8)
    stats = a3c.shared_adam_statistics(model)
    assert len(stats) == len(list(model.parameters()))
    assert all(t.is_shared() for s in stats for t in s.values())
