"""rl-zoo3's published scores of its trained agents, for ``python -m benchmarks.zoo``.

Source: DLR-RM/rl-baselines3-zoo, ``benchmark.md`` (last changed in commit 61a0d13, 2023-04-11; read at
22e3ff2). Each is one trained agent's mean and std of the episode return over about 150k evaluation
steps, deterministic actions except on Atari, after ``n_timesteps`` of training. Only the algorithms
rl_agents has (a2c, dqn, ppo, sac) and environments gymnasium still ships are kept (no PyBullet, Panda,
Fetch, highway-env or CarRacing-v0).

The zoo's env ids are older versions of ours: MuJoCo -v2/-v3/-v4 are our -v5, LunarLander(Continuous)-v2
our -v3 (:func:`our_env_id`).
"""

from __future__ import annotations

import re
from typing import NamedTuple


class ZooScore(NamedTuple):
    algo: str
    zoo_env: str  # the env id as benchmark.md writes it
    mean: float
    std: float
    n_timesteps: int  # the zoo agent's training budget


_MUJOCO = re.compile(
    r"^(Ant|HalfCheetah|Hopper|Humanoid|HumanoidStandup|InvertedDoublePendulum|InvertedPendulum|Pusher|Reacher|"
    r"Swimmer|Walker2d)-v[234]$"
)
_RENAMED = {"LunarLander-v2": "LunarLander-v3", "LunarLanderContinuous-v2": "LunarLanderContinuous-v3"}


def our_env_id(zoo_env: str) -> str:
    """The gymnasium id we train on for a zoo env id (MuJoCo -v2/-v3/-v4 -> -v5, LunarLander -v2 -> -v3)."""
    if _MUJOCO.match(zoo_env):
        return zoo_env.rsplit("-", 1)[0] + "-v5"
    return _RENAMED.get(zoo_env, zoo_env)


# (algo, zoo env id, mean_reward, std_reward, n_timesteps), as in benchmark.md.
_ROWS: tuple[tuple[str, str, float, float, int], ...] = (
    ("a2c", "Acrobot-v1", -83.353, 17.213, 500_000),
    ("a2c", "Ant-v3", -44.023, 63.206, 1_000_000),
    ("a2c", "AsteroidsNoFrameskip-v4", 1286.55, 423.75, 10_000_000),
    ("a2c", "BeamRiderNoFrameskip-v4", 2890.298, 1379.137, 10_000_000),
    ("a2c", "BipedalWalker-v3", 299.754, 23.459, 5_000_000),
    ("a2c", "BipedalWalkerHardcore-v3", 96.171, 122.943, 200_000_000),
    ("a2c", "BreakoutNoFrameskip-v4", 279.793, 122.177, 10_000_000),
    ("a2c", "CartPole-v1", 500.0, 0.0, 500_000),
    ("a2c", "EnduroNoFrameskip-v4", 0.0, 0.0, 10_000_000),
    ("a2c", "HalfCheetah-v3", 3041.174, 157.265, 1_000_000),
    ("a2c", "Hopper-v3", 733.454, 376.574, 1_000_000),
    ("a2c", "Humanoid-v3", 388.321, 92.652, 2_000_000),
    ("a2c", "LunarLander-v2", 155.751, 80.419, 200_000),
    ("a2c", "LunarLanderContinuous-v2", 84.225, 145.906, 5_000_000),
    ("a2c", "MountainCar-v0", -111.263, 24.087, 1_000_000),
    ("a2c", "MountainCarContinuous-v0", 91.166, 0.255, 100_000),
    ("a2c", "MsPacmanNoFrameskip-v4", 1671.73, 612.918, 10_000_000),
    ("a2c", "Pendulum-v1", -162.965, 103.21, 1_000_000),
    ("a2c", "PongNoFrameskip-v4", 17.292, 3.214, 10_000_000),
    ("a2c", "QbertNoFrameskip-v4", 3882.345, 1223.327, 10_000_000),
    ("a2c", "RoadRunnerNoFrameskip-v4", 31671.512, 6364.085, 10_000_000),
    ("a2c", "SeaquestNoFrameskip-v4", 1721.493, 105.339, 10_000_000),
    ("a2c", "SpaceInvadersNoFrameskip-v4", 627.16, 201.974, 10_000_000),
    ("a2c", "Swimmer-v3", 200.627, 2.544, 1_000_000),
    ("a2c", "Walker2d-v3", 581.835, 127.597, 1_000_000),
    ("dqn", "Acrobot-v1", -76.639, 11.752, 100_000),
    ("dqn", "AsteroidsNoFrameskip-v4", 782.687, 259.247, 10_000_000),
    ("dqn", "BeamRiderNoFrameskip-v4", 4295.946, 1790.458, 10_000_000),
    ("dqn", "BreakoutNoFrameskip-v4", 358.327, 61.981, 10_000_000),
    ("dqn", "CartPole-v1", 500.0, 0.0, 50_000),
    ("dqn", "EnduroNoFrameskip-v4", 830.929, 194.544, 10_000_000),
    ("dqn", "LunarLander-v2", 154.382, 79.241, 100_000),
    ("dqn", "MountainCar-v0", -100.849, 9.925, 120_000),
    ("dqn", "MsPacmanNoFrameskip-v4", 2682.929, 492.567, 10_000_000),
    ("dqn", "PongNoFrameskip-v4", 20.602, 0.613, 10_000_000),
    ("dqn", "QbertNoFrameskip-v4", 9496.774, 5399.633, 10_000_000),
    ("dqn", "RoadRunnerNoFrameskip-v4", 40396.35, 7069.131, 10_000_000),
    ("dqn", "SeaquestNoFrameskip-v4", 2000.29, 606.644, 10_000_000),
    ("dqn", "SpaceInvadersNoFrameskip-v4", 622.742, 201.564, 10_000_000),
    ("ppo", "Acrobot-v1", -73.506, 18.201, 1_000_000),
    ("ppo", "Ant-v3", 1327.158, 451.577, 1_000_000),
    ("ppo", "AsteroidsNoFrameskip-v4", 2156.174, 744.64, 10_000_000),
    ("ppo", "BeamRiderNoFrameskip-v4", 3397.0, 1662.368, 10_000_000),
    ("ppo", "BipedalWalker-v3", 287.939, 2.448, 5_000_000),
    ("ppo", "BipedalWalkerHardcore-v3", 122.374, 117.605, 100_000_000),
    ("ppo", "BreakoutNoFrameskip-v4", 398.033, 33.328, 10_000_000),
    ("ppo", "CartPole-v1", 500.0, 0.0, 100_000),
    ("ppo", "EnduroNoFrameskip-v4", 996.364, 176.09, 10_000_000),
    ("ppo", "HalfCheetah-v3", 5819.099, 663.53, 1_000_000),
    ("ppo", "Hopper-v3", 2410.435, 10.026, 1_000_000),
    ("ppo", "LunarLander-v2", 242.119, 31.823, 1_000_000),
    ("ppo", "LunarLanderContinuous-v2", 270.863, 32.072, 1_000_000),
    ("ppo", "MiniGrid-DoorKey-5x5-v0", 0.964, 0.006, 100_000),
    ("ppo", "MiniGrid-Empty-Random-5x5-v0", 0.968, 0.013, 100_000),
    ("ppo", "MiniGrid-FourRooms-v0", 0.573, 0.311, 5_000_000),
    ("ppo", "MiniGrid-GoToDoor-5x5-v0", 0.525, 0.476, 5_000_000),
    ("ppo", "MiniGrid-KeyCorridorS3R1-v0", 0.949, 0.011, 500_000),
    ("ppo", "MiniGrid-LockedRoom-v0", 0.0, 0.0, 10_000_000),
    ("ppo", "MiniGrid-MultiRoom-N4-S5-v0", 0.0, 0.0, 10_000_000),
    ("ppo", "MiniGrid-ObstructedMaze-2Dlh-v0", 0.0, 0.0, 10_000_000),
    ("ppo", "MiniGrid-PutNear-6x6-N2-v0", 0.612, 0.295, 10_000_000),
    ("ppo", "MiniGrid-RedBlueDoors-6x6-v0", 0.86, 0.313, 1_000_000),
    ("ppo", "MiniGrid-Unlock-v0", 0.963, 0.016, 100_000),
    ("ppo", "MountainCar-v0", -110.423, 19.473, 1_000_000),
    ("ppo", "MountainCarContinuous-v0", 88.343, 2.572, 20_000),
    ("ppo", "MsPacmanNoFrameskip-v4", 1754.356, 172.783, 10_000_000),
    ("ppo", "Pendulum-v1", -172.225, 104.159, 100_000),
    ("ppo", "PongNoFrameskip-v4", 20.989, 0.105, 10_000_000),
    ("ppo", "QbertNoFrameskip-v4", 15627.108, 3313.538, 10_000_000),
    ("ppo", "RoadRunnerNoFrameskip-v4", 40680.645, 6675.058, 10_000_000),
    ("ppo", "SeaquestNoFrameskip-v4", 1783.636, 34.096, 10_000_000),
    ("ppo", "SpaceInvadersNoFrameskip-v4", 960.331, 425.355, 10_000_000),
    ("ppo", "Swimmer-v3", 281.561, 9.671, 1_000_000),
    ("ppo", "Walker2d-v3", 3478.798, 821.708, 1_000_000),
    ("sac", "Ant-v3", 4615.791, 1354.111, 1_000_000),
    ("sac", "BipedalWalker-v3", 297.668, 33.06, 500_000),
    ("sac", "BipedalWalkerHardcore-v3", 4.423, 103.91, 10_000_000),
    ("sac", "HalfCheetah-v3", 9535.451, 100.47, 1_000_000),
    ("sac", "Hopper-v3", 2325.547, 1129.676, 1_000_000),
    ("sac", "Humanoid-v3", 6232.287, 279.885, 2_000_000),
    ("sac", "LunarLanderContinuous-v2", 260.39, 65.467, 500_000),
    ("sac", "MountainCarContinuous-v0", 94.679, 1.134, 50_000),
    ("sac", "Pendulum-v1", -156.995, 88.714, 20_000),
    ("sac", "Swimmer-v3", 345.568, 3.084, 1_000_000),
    ("sac", "Walker2d-v3", 3863.203, 254.347, 1_000_000),
    # The zoo's ppo_lstm (SB3-contrib RecurrentPPO) on velocity-masked tasks: our PPO with memory, which
    # the NoVel presets use, is compared with them.
    ("ppo", "CartPoleNoVel-v1", 500.0, 0.0, 100_000),
    ("ppo", "PendulumNoVel-v1", -217.933, 140.094, 100_000),
    ("ppo", "MountainCarContinuousNoVel-v0", 91.469, 1.776, 300_000),
)

ZOO_SCORES: dict[tuple[str, str], ZooScore] = {
    (algo, our_env_id(env)): ZooScore(algo, env, *rest) for algo, env, *rest in _ROWS
}


def published_score(algo: str, env_id: str) -> ZooScore | None:
    """rl-zoo3's score for ``algo`` (``ppo``, ``dqn``, ...) on our ``env_id``; None where it has none
    (a composition such as ``ppo+rnd``, or an env the zoo did not train on)."""
    return ZOO_SCORES.get((algo, env_id))
