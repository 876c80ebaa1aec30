"""The ``rl-agents`` command."""

from rl_agents.cli.main import main

__all__ = ["main"]
