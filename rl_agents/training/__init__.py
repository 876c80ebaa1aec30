"""Training: the Collector (environments -> batches), the Learner (batches -> updates), the Trainer that
wires them, and the DistributedTrainer whose Collectors are Ray workers."""

from rl_agents.training.build import load_trainer, make_trainer
from rl_agents.training.collector import Collector
from rl_agents.training.distributed import DistributedTrainer
from rl_agents.training.errors import CollectionError, NonFiniteError, NonFiniteLossError, NonFiniteObservationError
from rl_agents.training.learner import EnvSpaces, Learner
from rl_agents.training.trainer import Trainer

__all__ = [
    "CollectionError",
    "Collector",
    "DistributedTrainer",
    "EnvSpaces",
    "Learner",
    "NonFiniteError",
    "NonFiniteLossError",
    "NonFiniteObservationError",
    "Trainer",
    "load_trainer",
    "make_trainer",
]
