"""``python -m rl_agents.cli``: the ``rl-agents`` command."""

import sys

from rl_agents.cli.main import main

sys.exit(main())
