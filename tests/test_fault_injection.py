"""Fault injection through the real command: damaged checkpoints, refused and applied ``--resume
--set``, Ctrl-C and SIGTERM, a locked run directory, kill -9 at awkward moments, a full disk.

Every case runs ``python -m rl_agents.cli`` in a subprocess and checks the exit status, the one line
on stderr, that nothing in the run directory changed when the command was refused, and that the
previous checkpoint still loads (and, where a run continues, that it continues bit-exactly).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from rl_agents.checkpointing import read_checkpoint
from rl_agents.checkpointing.format import document_sha256
from rl_agents.config import config_from_dict
from rl_agents.training import make_trainer

STEPS = 2048
SMALL = ["--set", "trainer.num_envs=2", "--set", "trainer.num_steps=128"]  # 256 env steps per update
BASE = ["--env", "CartPole-v1", "--agents", "ppo", "--seed", "1", "--quiet", *SMALL]
NEWEST = "step_000002048"


def cli(*args: str, timeout: float = 180, **options) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rl_agents.cli", *args], capture_output=True, text=True, timeout=timeout, **options
    )


def start(*args: str, log: Path, **options) -> subprocess.Popen:
    with open(log, "w") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "rl_agents.cli", *args], stdout=handle, stderr=handle, text=True, **options
        )


def error_line(result: subprocess.CompletedProcess, *, after_progress: bool = False) -> str:
    """The one line a refused command prints (exit status 2); ``after_progress``: the last line of a
    command that trained for a while before it stopped."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert (after_progress or len(lines) == 1) and lines[-1].startswith("rl-agents: error: "), result.stderr
    return lines[-1]


def files_of(run: Path) -> dict[str, str]:
    """Every file of a run directory and what it holds (TensorBoard's event files aside): a digest of
    its bytes, or what kind of entry it is (a link is not followed, a FIFO not opened)."""
    found = {}
    for path in sorted(run.rglob("*")):
        if "tensorboard" in path.parts or path.name == ".lock" or (path.is_dir() and not path.is_symlink()):
            continue
        if path.is_symlink():
            found[str(path.relative_to(run))] = f"link to {os.readlink(path)}"
        elif path.is_fifo():
            found[str(path.relative_to(run))] = "fifo"
        else:
            with open(path, "rb") as handle:
                found[str(path.relative_to(run))] = hashlib.file_digest(handle, "sha256").hexdigest()
    return found


def wait_for(condition, timeout: float = 60.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process ended first (exit status {process.returncode})")
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def logged_rows(run: Path) -> int:
    path = run / "metrics.csv"
    return max(path.read_text().count("\n") - 1, 0) if path.exists() else 0


def tensors_of(checkpoint: Path) -> dict[str, torch.Tensor]:
    _, tree = read_checkpoint(checkpoint)
    return tree["agents"]["ppo"]


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def reference_at(run: Path, step: int) -> dict[str, torch.Tensor]:
    """The agent's parameters of the same run trained in-process, never interrupted, to ``step``."""
    config = config_from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    trainer = make_trainer(config)
    trainer.train(config.steps, progress=False, stop_when=lambda t: t.global_step >= step)
    assert trainer.global_step == step
    return trainer.acting.state_dict()


@pytest.fixture(scope="module")
def base_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("base") / "run"
    result = cli("train", *BASE, "--steps", str(STEPS), "--checkpoints", "4", "--out", str(run))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("step_")) == [
        "step_000000512",
        "step_000001024",
        "step_000001536",
        NEWEST,
    ]
    return run


@pytest.fixture
def run(base_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(base_run, copy, symlinks=True)
    return copy


# ---------------------------------------------------------------------------------------------- damaged checkpoints
def _edit_value(checkpoint: Path) -> None:
    document = json.loads((checkpoint / "state.json").read_text())
    document["state"]["collector"]["global_step"] = 2049  # still valid JSON; the checksum no longer matches
    (checkpoint / "state.json").write_text(json.dumps(document))


def _bad_betas(checkpoint: Path) -> None:
    """Hostile but consistent: the checksum is made to match, so the value itself must be refused."""
    document = json.loads((checkpoint / "state.json").read_text())
    document["state"]["learner"]["optimizer"]["param_groups"][0]["hyperparameters"]["betas"] = "x"
    del document["state_sha256"]
    document["state_sha256"] = document_sha256(document)
    (checkpoint / "state.json").write_text(json.dumps(document))


def _flip_tensor_byte(checkpoint: Path) -> None:
    data = bytearray((checkpoint / "tensors.safetensors").read_bytes())
    data[-3] ^= 0x10
    (checkpoint / "tensors.safetensors").write_bytes(bytes(data))


def _symlink_to_dev_zero(checkpoint: Path) -> None:
    (checkpoint / "state.json").unlink()
    (checkpoint / "state.json").symlink_to("/dev/zero")


def _fifo_tensors(checkpoint: Path) -> None:
    (checkpoint / "tensors.safetensors").unlink()
    os.mkfifo(checkpoint / "tensors.safetensors")


def _huge_state(checkpoint: Path) -> None:
    with open(checkpoint / "state.json", "r+b") as handle:  # sparse: 400 MB on paper, nothing on disk
        handle.truncate(400 * 2**20)


DAMAGE = {
    "garbage": (lambda c: (c / "state.json").write_bytes(b"garbage"), "state.json: not valid JSON"),
    "pickle": (lambda c: (c / "state.json").write_bytes(pickle.dumps({"a": 1})), "state.json: not valid JSON"),
    "deep": (
        lambda c: (c / "state.json").write_text('{"state": ' + "[" * 100_000 + "]" * 100_000 + "}"),
        "state.json: not valid JSON",
    ),
    "huge": (_huge_state, "state.json: is 419,430,400 bytes, more than the 67,108,864 this file can be"),
    "symlink": (_symlink_to_dev_zero, "state.json: is a symbolic link"),
    "fifo": (_fifo_tensors, "tensors.safetensors: is not a regular file"),
    "edited": (_edit_value, "state.json: SHA-256 of its contents does not match the one it records"),
    "bitflip": (_flip_tensor_byte, "tensors.safetensors: SHA-256 does not match"),
    "missing": (lambda c: (c / "tensors.safetensors").unlink(), "tensors.safetensors: missing"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_newest_checkpoint_stops_the_resume_and_changes_nothing(run: Path, damage: str) -> None:
    make, reason = DAMAGE[damage]
    make(run / "checkpoints" / NEWEST)
    before = files_of(run)
    line = error_line(cli("train", "--resume", str(run), "--steps", "4096", timeout=60))
    assert f"the newest checkpoint is damaged: {run}/checkpoints/{NEWEST}/{reason}" in line
    assert line.endswith("; --skip-damaged resumes from the newest intact one of the 3 older checkpoints")
    assert files_of(run) == before  # config.yaml, metrics.csv and every checkpoint as they were
    assert tensors_of(run / "checkpoints" / "step_000001536")  # the previous checkpoint still loads


def test_a_hostile_value_in_a_consistent_checkpoint_is_refused_by_name(run: Path) -> None:
    _bad_betas(run / "checkpoints" / NEWEST)
    before = files_of(run)
    line = error_line(cli("train", "--resume", str(run), "--steps", "4096", timeout=60))
    assert line == (
        f"rl-agents: error: {run}/checkpoints/{NEWEST}/state.json: learner.optimizer: group 'ppo': "
        "optimizer hyperparameter 'betas' is 'x'; expected one like (0.9, 0.999)"
    )
    assert files_of(run) == before


def test_skip_damaged_resumes_from_the_newest_intact_checkpoint_bit_exactly(run: Path, base_run: Path) -> None:
    DAMAGE["garbage"][0](run / "checkpoints" / NEWEST)
    line = error_line(cli("eval", str(run), "--episodes", "1", timeout=60))
    assert line.endswith("; --skip-damaged evaluates the newest intact one")
    evaluated = cli("eval", str(run), "--episodes", "1", "--skip-damaged", timeout=60)
    assert evaluated.returncode == 0 and f"checkpoint: {run}/checkpoints/step_000001536 (step 1536)" in evaluated.stdout

    result = cli("train", "--resume", str(run), "--skip-damaged")
    assert result.returncode == 0, result.stderr
    assert f"skipping damaged checkpoint {NEWEST}: {run}/checkpoints/{NEWEST}/state.json: not valid JSON" in (
        result.stderr
    )
    assert "resuming" in result.stderr and "from step_000001536 at step 1536" in result.stderr
    history = yaml.safe_load((run / "config.yaml").read_text())["resumes"]
    assert [entry["checkpoint"] for entry in history] == ["step_000001536"]
    assert list(history[0]["skipped_damaged"]) == [NEWEST]
    # Resumed from 1536, the run ends exactly where the undamaged run ended.
    assert_same_tensors(tensors_of(run / "checkpoints" / NEWEST), tensors_of(base_run / "checkpoints" / NEWEST))
    assert (run / "metrics.csv").read_text().splitlines()[1:] != []


def test_a_run_with_no_checkpoint_at_all_starts_from_the_beginning(run: Path) -> None:
    shutil.rmtree(run / "checkpoints")
    result = cli("train", "--resume", str(run), "--steps", "512")
    assert result.returncode == 0, result.stderr
    assert "no checkpoint yet; starting the run from the beginning" in result.stderr


# ---------------------------------------------------------------------------------------------- --resume --set
@pytest.mark.parametrize(
    ("override", "key", "saved", "now"),
    [
        ("trainer.num_envs=4", "trainer.num_envs", "2", "4"),
        ("seed=5", "seed", "1", "5"),
        ("env=CartPole-v0", "env", "'CartPole-v1'", "'CartPole-v0'"),
        ("trainer.num_steps=64", "trainer.num_steps", "128", "64"),
        ("ppo.gamma=0.9", "ppo.gamma", "0.98", "0.9"),
        ("ppo.clip_coef=0.3", "ppo.clip_coef", "'(not set)'", "0.3"),
    ],
)
def test_a_refused_resume_setting_writes_nothing(run: Path, override: str, key: str, saved: str, now: str) -> None:
    before = files_of(run)
    line = error_line(cli("train", "--resume", str(run), "--set", override, timeout=60))
    assert line.startswith(
        f"rl-agents: error: --resume cannot change {key} ({NEWEST} was saved with {saved}, the config now says {now})"
    )
    assert files_of(run) == before  # in particular config.yaml: the run is not bricked


def test_after_a_refused_setting_the_run_still_resumes(run: Path) -> None:
    error_line(cli("train", "--resume", str(run), "--set", "trainer.num_envs=4", timeout=60))
    result = cli("train", "--resume", str(run), "--steps", "2304")
    assert result.returncode == 0, result.stderr
    assert "from step_000002048 at step 2048; steps: 2048 -> 2304" in result.stderr


def test_accepted_resume_settings_are_applied(run: Path) -> None:
    result = cli("train", "--resume", str(run), "--steps", "2560", "--set", "ppo.lr=0.5", "--set", "ppo.ent_coef=0.01")
    assert result.returncode == 0, result.stderr
    _, tree = read_checkpoint(run / "checkpoints" / "step_000002560")
    assert tree["learner"]["base_lrs"] == [0.5]
    learning_rate = tree["learner"]["optimizer"]["param_groups"][0]["hyperparameters"]["lr"]
    # Annealed linearly over the new budget of 10 updates; 10 were done when the last one started.
    assert learning_rate == pytest.approx(0.5 * (1 - 9 / 10))
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["steps"] == 2560 and saved["ppo"]["lr"] == 0.5 and saved["ppo"]["ent_coef"] == 0.01
    assert saved["resumes"][0]["changed"] == {
        "steps": {"from": STEPS, "to": 2560},
        "ppo.lr": {"from": 0.004, "to": 0.5},
        "ppo.ent_coef": {"from": 0.0, "to": 0.01},
    }
    assert tree["run"]["config"]["ppo"]["lr"] == 0.5  # later resumes compare with what this run used


# ---------------------------------------------------------------------------------------------- signals
LONG = [*BASE, "--steps", "1000000", "--checkpoints", "1"]


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stop_signal_saves_at_an_update_boundary(tmp_path: Path, signum: int, status: int) -> None:
    run = tmp_path / "run"
    process = start("train", *LONG, "--out", str(run), log=tmp_path / "log")
    wait_for(lambda: logged_rows(run) >= 2, process=process)
    process.send_signal(signum)
    assert process.wait(timeout=60) == status
    last = (tmp_path / "log").read_text().strip().splitlines()[-1]
    match = re.fullmatch(
        rf"{signal.Signals(signum).name} at step (\d+): saved {run}/checkpoints/step_0*(\d+); "
        rf"continue with: rl-agents train --resume {run}",
        last,
    )
    assert match and match.group(1) == match.group(2), last
    step = int(match.group(1))
    assert step % 256 == 0
    assert_same_tensors(tensors_of(run / "checkpoints"), reference_at(run, step))


def test_a_second_ctrl_c_exits_at_once_without_saving(tmp_path: Path) -> None:
    run = tmp_path / "run"
    slow = ["--set", "trainer.num_steps=8192"]  # an update every 16k env steps: seconds of collection
    process = start("train", *LONG, *slow, "--out", str(run), log=tmp_path / "log")
    wait_for(lambda: logged_rows(run) >= 1, timeout=120, process=process)
    # The row is written just before train() checks for a stop: a signal sent at once can land in that
    # window and stop at this update (no second signal then finds the process). Half a second later it
    # lands in the collection of the next 16k steps, which takes seconds.
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)  # while the next 16k steps are collected
    wait_for(lambda: "stopping after this update" in (tmp_path / "log").read_text(), timeout=30, process=process)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    log = (tmp_path / "log").read_text()
    assert log.strip().splitlines()[-1] == "interrupted again by SIGINT: exiting without saving"
    assert not (run / "checkpoints").exists() or not [p for p in (run / "checkpoints").iterdir()]


def test_kill_9_during_the_interrupt_save_leaves_a_resumable_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    process = start("train", *LONG, "--out", str(run), log=tmp_path / "log")
    wait_for(lambda: logged_rows(run) >= 2, process=process)
    process.send_signal(signal.SIGINT)
    wait_for(lambda: any(run.glob("checkpoints/.tmp-*")) or process.poll() is not None, timeout=30)
    process.kill()
    process.wait()
    result = cli("train", "--resume", str(run), "--steps", "256")  # whatever was saved, if anything
    assert result.returncode == 0, result.stderr
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------------------------------------- the run lock
def test_a_locked_run_is_refused_and_a_killed_holder_is_taken_over(run: Path, tmp_path: Path) -> None:
    process = start("train", "--resume", str(run), "--steps", "1000000", log=tmp_path / "log")
    rows = logged_rows(run)
    wait_for(lambda: logged_rows(run) > rows, process=process)
    line = error_line(cli("train", "--resume", str(run), timeout=60))
    assert re.fullmatch(
        rf"rl-agents: error: {run} is in use by pid {process.pid} on \S+ since \S+; wait for it to finish or stop "
        r"it \(Ctrl-C or kill saves a checkpoint first\)",
        line,
    ), line
    process.kill()
    process.wait()
    result = cli("train", "--resume", str(run), "--steps", "2048")
    assert result.returncode == 0, result.stderr
    assert f"taking over the lock of a process that is gone (pid {process.pid} on" in result.stderr
    assert (run / ".lock").read_text() == ""  # released in order this time


# ---------------------------------------------------------------------------------------------- a full disk
def _file_size_limit(limit: int):
    def apply() -> None:  # in the child: writes past `limit` bytes fail with EFBIG instead of killing it
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_checkpoint_that_cannot_be_written_is_one_line_and_leaves_no_partial_files(run: Path) -> None:
    before = {name: data for name, data in files_of(run).items() if name.startswith("checkpoints/")}
    result = cli("train", "--resume", str(run), "--steps", "4096", preexec_fn=_file_size_limit(48 * 1024))
    line = error_line(result, after_progress=True)
    assert re.fullmatch(rf"rl-agents: error: {run}/checkpoints/step_\d+: cannot be written: .*", line), line
    assert "File too large" in line or "too large" in line.lower()
    after = {name: data for name, data in files_of(run).items() if name.startswith("checkpoints/")}
    assert after == before
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    assert tensors_of(run / "checkpoints")  # the previous checkpoint loads


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (errno.ENOSPC, "No space left on device"),
        (errno.EACCES, "Permission denied"),
        (errno.EROFS, "Read-only file system"),
    ],
)
def test_a_file_that_cannot_be_written_is_named_in_one_line(
    run: Path, code: int, text: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The same failures in-process, where they can be made on purpose: a checkpoint and config.yaml."""
    import rl_agents.checkpointing.format as checkpoint_format
    import rl_agents.cli.train as train_command
    from rl_agents.cli import main

    def refuse(*args, **kwargs):
        raise OSError(code, text, str(args[1] if len(args) > 1 else kwargs.get("dir", "?")))

    before = files_of(run)
    monkeypatch.setattr(checkpoint_format, "save_file", refuse)
    assert main(["train", "--resume", str(run), "--steps", "2304", "--quiet"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.fullmatch(rf"rl-agents: error: {run}/checkpoints/step_000002304: cannot be written: {text} \(.*\)", line)
    assert {k: v for k, v in files_of(run).items() if k.startswith("checkpoints/")} == {
        k: v for k, v in before.items() if k.startswith("checkpoints/")
    }
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]

    monkeypatch.setattr(train_command.tempfile, "mkstemp", refuse)
    config_before = (run / "config.yaml").read_bytes()
    assert main(["train", "--resume", str(run), "--steps", "2560", "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == f"rl-agents: error: {run}/config.yaml: cannot be written: {text}"
    assert (run / "config.yaml").read_bytes() == config_before


def test_metrics_csv_that_cannot_be_written_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rl_agents.logging import CSVLogger

    logger = CSVLogger(tmp_path / "metrics.csv")
    logger.log(1, {"a": 1.0})
    real_open = Path.open

    def full_disk(self: Path, mode: str = "r", *args, **kwargs):
        if "a" in mode or "w" in mode:
            raise OSError(errno.ENOSPC, "No space left on device")  # as a write error: no file name
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", full_disk)
    with pytest.raises(OSError) as raised:
        logger.log(2, {"a": 2.0})
    assert (raised.value.filename, raised.value.strerror) == (str(tmp_path / "metrics.csv"), "No space left on device")
    with pytest.raises(OSError, match="No space left on device"):
        logger.log(3, {"b": 3.0})  # a new column: the rewrite fails and leaves no temporary file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv"]
    monkeypatch.undo()
    assert (tmp_path / "metrics.csv").read_text() == "global_step,a\n1.0,1.0\n"
