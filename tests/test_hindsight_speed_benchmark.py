"""``python -m benchmarks.hindsight_speed``: the four runs through its ``main`` at a tiny size, and its arguments."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("stable_baselines3")

from benchmarks import hindsight_speed

ROWS = ["SB3 SAC", "SB3 SAC+HER", "rl_agents SAC", "rl_agents SAC+HER"]


def test_main_times_the_four_runs_at_the_same_settings(capsys) -> None:
    steps, learning_starts = 150, 30
    summaries = hindsight_speed.main(
        ["--steps", str(steps), "--repeats", "1", "--learning-starts", str(learning_starts), "--buffer-size", "2000"]
    )
    assert [summary.variant.name for summary in summaries] == ROWS
    for summary in summaries:
        (run,) = summary.runs
        assert run.steps == steps
        # SB3 trains once num_timesteps > learning_starts; ours after learning_starts steps: the same count
        assert run.gradient_steps == steps - learning_starts
        assert run.seconds > 0 and summary.steps_per_second > 0
        assert len(run.returns) >= steps // hindsight_speed.N_BITS  # episodes last at most n_bits steps
        assert 0.0 <= run.success_rate <= 1.0
    out = capsys.readouterr().out
    table = out[out.index("SAC + HER training speed") :]
    for name in ROWS:
        assert f"│ {name} " in table
    assert table.count("x │") >= 4  # two ours/SB3 ratios, two HER speed ratios
    assert "steps/s ratios, ours / SB3: rl_agents SAC / SB3 SAC = " in out
    assert "rl_agents SAC+HER / SB3 SAC+HER = " in out
    assert out.count("repeat 1/1") == 4


def test_repeats_alternate_which_library_goes_first() -> None:
    first, second = hindsight_speed.run_order(0), hindsight_speed.run_order(1)
    assert [v.name for v in first] == ["SB3 SAC", "rl_agents SAC", "SB3 SAC+HER", "rl_agents SAC+HER"]
    assert [v.name for v in second] == ["rl_agents SAC", "SB3 SAC", "rl_agents SAC+HER", "SB3 SAC+HER"]


def test_success_rate_counts_solved_episodes_of_the_last_hundred() -> None:
    variant = hindsight_speed.VARIANTS[0]
    # -15: never solved in 15 steps; -14: solved on the last step; 0: solved on the first
    returns = [-14.0] * 50 + [-15.0] * 75 + [0.0] * 25
    run = hindsight_speed.TrainedRun(variant, 0, 100, 1.0, 0, returns, 15)
    assert run.success_rate == pytest.approx(0.25)
    assert math.isnan(hindsight_speed.TrainedRun(variant, 0, 100, 1.0, 0, [], 15).success_rate)


@pytest.mark.parametrize(
    "argv",
    [
        ["--steps", "0"],
        ["--steps", "1000"],  # not beyond the default learning starts: nothing would train
        ["--repeats", "0"],
        ["--threads", "x"],
        ["--steps", "100", "--learning-starts", "10"],  # less than one episode
    ],
)
def test_bad_arguments_exit_with_status_2(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        hindsight_speed.parse_args(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_defaults_are_the_issue_settings() -> None:
    args = hindsight_speed.parse_args([])
    assert (args.steps, args.repeats, args.threads, args.learning_starts, args.buffer_size) == (
        5000,
        1,
        1,
        1000,
        1_000_000,
    )
