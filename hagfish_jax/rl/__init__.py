"""Reinforcement learning: PPO written for one agent, vmapped over a population."""

from .ppo import PPO, PPOState, default_hparams, space

__all__ = ["PPO", "PPOState", "default_hparams", "space"]
