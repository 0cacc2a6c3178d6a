"""Training: configuration, the shared trainer, checkpoints, data-parallel runs."""

from mmgraph.train.config import (
    RunConfig,
    TrainConfig,
    parse_overrides,
    read_config_file,
    resolve_config,
)
from mmgraph.train.distributed import DistributedContext, destroy_distributed, init_distributed
from mmgraph.train.trainer import Trainer, TrainingDiverged, TrainResult, seed_everything

__all__ = [
    "DistributedContext",
    "RunConfig",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "destroy_distributed",
    "init_distributed",
    "parse_overrides",
    "read_config_file",
    "resolve_config",
    "seed_everything",
]
