"""``python -m benchmarks.zoo``: the table between its markers, resuming from the results file, rl-zoo3's
published scores, and one real tiny run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import zoo
from benchmarks.zoo_scores import our_env_id, published_score

REPO = Path(__file__).resolve().parents[1]


def outside_markers(text: str) -> tuple[str, str]:
    return text[: text.index(zoo.BEGIN)], text[text.index(zoo.END) + len(zoo.END) :]


def test_table_goes_between_markers_and_replaces_the_older_one(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    original = (REPO / "BENCHMARKS.md").read_text()
    path.write_text(original)
    zoo.write_table(path, "| old | table |")
    first = path.read_text()
    assert first.count(zoo.BEGIN) == first.count(zoo.END) == 1
    assert "| old | table |" in first
    if zoo.BEGIN not in original:  # a new section, at the end of ## Results
        assert first.count(zoo.SECTION) == 1
        assert first.replace(f"{zoo.SECTION}\n\n{zoo.BEGIN}\n| old | table |\n{zoo.END}\n\n", "") == original
    zoo.write_table(path, "| new | table |")
    second = path.read_text()
    assert "| old | table |" not in second and "| new | table |" in second
    assert second.count(zoo.BEGIN) == second.count(zoo.END) == 1
    assert outside_markers(second) == outside_markers(first)


def test_new_section_ends_the_results_section() -> None:
    text = "# B\n\n## Results\n\n### older\n\n```bash\n## not a heading\n```\n\n## Next\n\nmore\n"
    written = zoo.with_block(text, "T")
    section = f"{zoo.SECTION}\n\n{zoo.BEGIN}\nT\n{zoo.END}\n"
    assert (
        written == f"# B\n\n## Results\n\n### older\n\n```bash\n## not a heading\n```\n\n{section}\n## Next\n\nmore\n"
    )
    assert zoo.with_block("# B\n", "T") == f"# B\n\n## Results\n\n{section}"


def fake_presets() -> list[zoo.Preset]:
    return [
        zoo.Preset("CartPole-v1", "CartPole-v1", "ppo", 100_000),
        zoo.Preset("Fake-v0.dqn", "Fake-v0", "dqn", 1_000),
        zoo.Preset("MountainCar-v0", "MountainCar-v0", "ppo+rnd", 500_000),
    ]


def test_rerun_skips_runs_already_recorded(tmp_path: Path, monkeypatch, capsys) -> None:
    trained: list[zoo.RunSpec] = []

    def fake_train(spec: zoo.RunSpec) -> dict:
        trained.append(spec)
        return {
            "preset": spec.preset,
            "seed": spec.seed,
            "budget_fraction": spec.budget_fraction,
            "steps": 1000,
            "eval_mean": 100.0 * spec.seed,
            "eval_std": 0.0,
            "eval_episodes": spec.eval_episodes,
            "last20": None,
            "seconds": 1.5,
        }

    monkeypatch.setattr(zoo, "train_one", fake_train)
    monkeypatch.setattr(zoo, "shipped_presets", fake_presets)
    monkeypatch.setattr(zoo, "unavailable_reason", lambda env: "the 'fake' extra is missing" if "Fake" in env else None)
    results = tmp_path / "zoo.jsonl"
    args = ["--seeds", "2", "--budget-fraction", "0.5", "--results", str(results)]

    assert zoo.main(args) == 0
    out = capsys.readouterr().out
    assert sorted((s.preset, s.seed) for s in trained) == [
        (p, s) for p in ("CartPole-v1", "MountainCar-v0") for s in (1, 2)
    ]
    assert "skipping Fake-v0.dqn: the 'fake' extra is missing" in out
    assert "Skipped: Fake-v0.dqn (the 'fake' extra is missing)." in out
    assert "| CartPole-v1 | ppo | 1,000 (1% of 100,000) | 2 | 150.0 ± 50.0 | - | 500.0 ± 0.0 (100k) | 1.5 |" in out
    assert "| MountainCar-v0 | ppo+rnd |" in out and "| - | 1.5 |" in out  # no rl-zoo3 score for ppo+rnd
    assert len(results.read_text().splitlines()) == 4

    trained.clear()
    assert zoo.main(args) == 0
    assert trained == []  # everything recorded
    assert "4 of 4 runs already in" in capsys.readouterr().out

    lines = results.read_text().splitlines()
    results.write_text("\n".join(lines[:3]) + '\n{"preset": "CartPole-v1", "se')  # killed mid-line
    assert zoo.main(args) == 0
    assert [(s.preset, s.seed) for s in trained] == [(json.loads(lines[3])["preset"], json.loads(lines[3])["seed"])]
    assert len(zoo.read_records(results)) == 4
    trained.clear()
    assert zoo.main([*args, "--presets", "CartPole-v1", "--seeds", "3"]) == 0  # a new seed
    assert [(s.preset, s.seed) for s in trained] == [("CartPole-v1", 3)]
    trained.clear()
    assert zoo.main([*args, "--presets", "CartPole-v1", "--budget-fraction", "0.25"]) == 0  # another budget
    assert [(s.preset, s.seed, s.budget_fraction) for s in trained] == [
        ("CartPole-v1", 1, 0.25),
        ("CartPole-v1", 2, 0.25),
    ]
    trained.clear()
    assert zoo.main([*args, "--presets", "CartPole-v1", "--seeds", "4", "--table-only"]) == 0  # no training
    out = capsys.readouterr().out
    assert trained == [] and "--table-only: 1 runs not trained" in out
    assert "| CartPole-v1 | ppo | 1,000 (1% of 100,000) | 3 of 4 |" in out


def test_published_scores() -> None:
    cartpole = published_score("ppo", "CartPole-v1")
    assert cartpole is not None and (cartpole.mean, cartpole.std, cartpole.n_timesteps) == (500.0, 0.0, 100_000)
    cheetah = published_score("ppo", "HalfCheetah-v5")
    assert cheetah is not None and cheetah.zoo_env == "HalfCheetah-v3" and cheetah.mean == pytest.approx(5819.099)
    lander = published_score("dqn", "LunarLander-v3")
    assert lander is not None and lander.zoo_env == "LunarLander-v2"
    pendulum = published_score("sac", "Pendulum-v1")
    assert pendulum is not None and (pendulum.mean, pendulum.std) == (-156.995, 88.714)
    assert published_score("ppo+rnd", "MiniGrid-MultiRoom-N4-S5-v0") is None
    assert published_score("ppo", "MiniGrid-DoorKey-8x8-v0") is None
    assert (
        our_env_id("Walker2d-v3") == "Walker2d-v5" and our_env_id("BreakoutNoFrameskip-v4") == "BreakoutNoFrameskip-v4"
    )


def test_tiny_real_run_records_a_json_line(tmp_path: Path, capsys) -> None:
    results = tmp_path / "zoo.jsonl"
    args = ["--presets", "CartPole-v1", "--seeds", "1", "--budget-fraction", "0.01", "--eval-episodes", "2"]
    assert zoo.main([*args, "--results", str(results)]) == 0
    [line] = results.read_text().splitlines()
    record = json.loads(line)
    expected = {
        "preset", "env", "agents", "seed", "budget_fraction", "budget_steps", "steps", "eval_mean", "eval_std",
        "eval_episodes", "last20", "train_episodes", "seconds", "eval_seconds", "finished",
    }  # fmt: skip
    assert set(record) == expected
    assert (record["preset"], record["env"], record["agents"], record["seed"]) == (
        "CartPole-v1",
        "CartPole-v1",
        "ppo",
        1,
    )
    assert record["budget_fraction"] == 0.01 and record["budget_steps"] == 100_000 and record["eval_episodes"] == 2
    assert 1_000 <= record["steps"] < 2_000 and record["seconds"] > 0
    assert 1 <= record["eval_mean"] <= 500
    out = capsys.readouterr().out
    assert "CartPole-v1" in out and "seed 1" in out and "| CartPole-v1 | ppo |" in out
