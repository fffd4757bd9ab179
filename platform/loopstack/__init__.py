"""Loopstack: train, serve, monitor and retrain models in one closed loop."""

__version__ = "0.1.0"
