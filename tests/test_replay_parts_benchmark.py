"""``python -m benchmarks.replay_parts``: both sections through the module's functions, at tiny sizes."""

from __future__ import annotations

import io
import math

import pytest
from rich.console import Console

pytest.importorskip("minatar")
pytest.importorskip("stable_baselines3")

from benchmarks import replay_parts


def test_sampling_section_times_every_operation() -> None:
    rows = replay_parts.measure_replay(repeats=3, capacity=2000)
    assert [row.operation for row in rows] == [
        "sample(32)",
        "feedback(32 priorities)",
        "add(4-step chunk)",
        "per gradient step (sample + feedback)",
    ]
    for row in rows:
        assert row.per_us > 0 and row.transitions > 0
        assert row.uniform_us is None if row.operation.startswith("feedback") else row.uniform_us > 0
    tree = replay_parts.measure_sum_tree(repeats=3, leaves=1000)
    assert [row.operation for row in tree] == ["set(32 leaves)", "find(32 targets)"]
    assert all(row.us > 0 and row.leaves == 1000 for row in tree)
    text = io.StringIO()
    Console(file=text, width=200).print(replay_parts.replay_table(rows, 2000), replay_parts.tree_table(tree))
    assert "sample(32)" in text.getvalue() and "find(32 targets)" in text.getvalue()


def test_speed_section_trains_every_run_the_same_number_of_gradient_steps() -> None:
    text = io.StringIO()
    console = Console(file=text, width=200)
    workload = replay_parts.SpeedWorkload(learning_starts=200, buffer_size=2000)
    results = replay_parts.run_speed(1198, seed=0, threads=1, console=console, workload=workload)
    assert [r.library for r in results] == ["rl_agents DQN", "SB3 DQN", "rl_agents DQN+PER", "rl_agents Rainbow"]
    for result in results:
        assert result.steps == 1200  # rounded up to whole training phases of 4 steps
        assert result.gradient_steps == (1200 - 200) // 4
        assert result.seconds > 0 and result.steps_per_second > 0
        assert result.returns and math.isfinite(result.final_return)
    console.print(replay_parts.speed_table(results))
    assert "rl_agents Rainbow" in text.getvalue() and "1.00x" in text.getvalue()


@pytest.mark.parametrize(
    "argv", [["--steps", "0"], ["--steps", "500"], ["--only", "both"], ["--sampling-repeats", "x"], ["--threads", "0"]]
)
def test_bad_arguments_exit_with_status_2(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        replay_parts.parse_args(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_sampling_only_needs_no_training_steps() -> None:
    assert replay_parts.parse_args(["--only", "sampling", "--steps", "500"]).only == "sampling"
