"""The agent contract and the math every agent shares: composition checks, schedules, returns,
normalization, networks and action distributions. Nothing here knows about training loops or files."""
