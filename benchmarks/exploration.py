"""PPO alone vs PPO + RND on sparse-reward MiniGrid tasks, from the shipped presets.

    python benchmarks/exploration.py --envs MiniGrid-MultiRoom-N4-S5-v0 --seeds 1 2 3 --steps 2e6

Prints, per run, the mean return over the last 100 episodes, the success rate (return > 0) over
them, the frames until that mean first reached ``--threshold`` (nan: never), and the wall time;
then a summary per env and composition. Long: run it in the background.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from rl_agents.config import apply_overrides, config_from_dict, load_preset
from rl_agents.training import make_trainer

DEFAULT_ENVS = ["MiniGrid-MultiRoom-N4-S5-v1", "MiniGrid-DoorKey-8x8-v0", "MiniGrid-KeyCorridorS3R2-v0"]


def run_once(env_id: str, agents: str, seed: int, steps: int, threshold: float) -> dict[str, float]:
    raw = load_preset(env_id)
    if agents == "ppo":
        raw.pop("rnd", None)
    raw = apply_overrides(raw, [f"agents={agents}", f"seed={seed}", f"steps={steps}"])
    trainer = make_trainer(config_from_dict(raw, source=f"preset {env_id}"))
    start = time.perf_counter()
    reached = {"frames": float("nan")}

    def note_threshold(t: object) -> None:
        recent = trainer.episodes.returns[-100:]
        if len(recent) == 100 and np.isnan(reached["frames"]) and float(np.mean(recent)) >= threshold:
            reached["frames"] = float(trainer.global_step)

    trainer.train(steps, progress=False, on_update=note_threshold)
    returns = trainer.episodes.returns[-100:]
    return {
        "return": float(np.mean(returns)) if returns else 0.0,
        "success": float(np.mean([r > 0 for r in returns])) if returns else 0.0,
        "seconds": time.perf_counter() - start,
        "steps": float(trainer.global_step),
        "frames_to_threshold": reached["frames"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=DEFAULT_ENVS)
    parser.add_argument("--agents", nargs="+", default=["ppo", "ppo+rnd"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--steps", type=float, default=2e6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--threshold", type=float, default=0.6, help="mean return over the last 100 episodes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {int(args.steps):,} frames per run")
    summary: dict[tuple[str, str], list[dict[str, float]]] = {}
    for env_id in args.envs:
        for seed in args.seeds:
            for agents in args.agents:
                result = run_once(env_id, agents, seed, int(args.steps), args.threshold)
                summary.setdefault((env_id, agents), []).append(result)
                print(
                    f"{env_id:32s} {agents:8s} seed {seed}: mean return (last 100) {result['return']:.3f}  "
                    f"success {result['success']:.2f}  frames to {args.threshold:g}: "
                    f"{result['frames_to_threshold']:,.0f}  "
                    f"{result['seconds'] / 60:.1f} min  ({result['steps'] / result['seconds']:,.0f} steps/s)",
                    flush=True,
                )
    print("\nsummary (mean return over the last 100 episodes, per seed)")
    for (env_id, agents), results in summary.items():
        returns = [r["return"] for r in results]
        print(f"{env_id:32s} {agents:8s} {' '.join(f'{r:.2f}' for r in returns)}  mean {statistics.mean(returns):.2f}")


if __name__ == "__main__":
    main()
