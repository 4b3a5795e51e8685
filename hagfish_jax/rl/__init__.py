"""Reinforcement learning: PPO written for one agent, vmapped over a population."""

from .numpy_env import NumpyAgent, NumpyPPO
from .ppo import PPO, PPOState, default_hparams, space

__all__ = ["PPO", "NumpyAgent", "NumpyPPO", "PPOState", "default_hparams", "space"]
