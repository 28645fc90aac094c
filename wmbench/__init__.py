"""wmbench: benchmark and reproducibility suite for world-model reinforcement learning."""

__version__ = "0.1.0"
