"""Reinforcement learning: tabular Q-learning, DQN, policy gradients, A2C / A3C and AlphaZero."""

from dldojo.engine.family import Family

FAMILY = Family(
    name="rl",
    experiments=("dldojo.rl.q_table", "dldojo.rl.dqn", "dldojo.rl.policy_gradient", "dldojo.rl.a3c", "dldojo.rl.alphazero"),
    datasets=(),
    commands="dldojo.rl.cli",
    actions={"play": "dldojo.rl.actions:play", "episode": "dldojo.rl.actions:episode",
             "evaluate": "dldojo.rl.actions:evaluate"},
)
