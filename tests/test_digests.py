"""Seeded runs whose final parameters and metrics.csv must stay bit-identical across refactors.

The digests were recorded on the commit before the Collector/Learner split (issue 13) with
``python -m tests.digests``; a change that alters any float operation of these runs fails here. When a
change of behaviour is intended, record the new digests and say why in the commit message.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.digests import RUNS, run_digests

RECORDED = {
    "ppo+rnd-cartpole-20k": (
        "465f4f7488be4669cbf7fb614f5cddafdaeab8307658fc3ac3a84e5e8ff55d00",
        "e6b875fe5843ba292d81ca173d1570c9120db00ab3e014c9db2cb6e3086c2773",
    ),
    "dqn+rnd-cartpole-10k": (
        "780bfe8b3b272d4517a5e5179883b29f10e00daa341beb98397b8f75b54e00d9",
        "9daaa5d56381511a85e0b3e776bab75ee9219beec80a0284c1bde19a4d9fa755",
    ),
    "sac-pendulum-5k": (
        "a3f072ad9773856fa74f47959bb00437f85181f18f101f17b0e15de92f36495f",
        "53bf5c769cbf192582e62ca63022d463cf4cc28b6e08b6ecd8245cd8489968de",
    ),
}


def test_every_run_has_a_recorded_digest() -> None:
    assert set(RECORDED) == set(RUNS)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_final_parameters_and_metrics_are_bit_identical(name: str, tmp_path: Path) -> None:
    parameters, metrics = run_digests(name, tmp_path)
    assert (parameters, metrics) == RECORDED[name], f"{name}: the run's parameters or metrics.csv changed"
