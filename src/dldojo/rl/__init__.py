"""Reinforcement learning: tabular Q-learning, DQN, policy gradients, A2C / A3C and AlphaZero."""
