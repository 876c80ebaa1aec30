"""``python -m benchmarks``: the whole suite, rl_agents side by side with Stable-Baselines3
(see benchmarks/suite.py)."""

from benchmarks.suite import main

if __name__ == "__main__":
    main()
