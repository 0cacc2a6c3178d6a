"""Training: configuration, the shared trainer, checkpoints."""

from mmgraph.train.config import (
    RunConfig,
    TrainConfig,
    parse_overrides,
    read_config_file,
    resolve_config,
)
from mmgraph.train.trainer import Trainer, TrainingDiverged, TrainResult, seed_everything

__all__ = [
    "RunConfig",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "parse_overrides",
    "read_config_file",
    "resolve_config",
    "seed_everything",
]
