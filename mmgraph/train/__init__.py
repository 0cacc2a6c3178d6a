"""Training: configuration, the shared trainer, checkpoints, data-parallel runs, grid search
(:mod:`mmgraph.train.tune`)."""

from mmgraph.train.config import (
    RunConfig,
    TrainConfig,
    list_bundled_configs,
    parse_overrides,
    read_config_file,
    resolve_config,
)
from mmgraph.train.distributed import DistributedContext, destroy_distributed, init_distributed
from mmgraph.train.runner import (
    RunSummary,
    build_model,
    evaluate_checkpoint,
    fit_run,
    load_checkpoint,
    read_run,
    run_evaluator,
    run_folder_state,
)
from mmgraph.train.trainer import Trainer, TrainingDiverged, TrainResult, seed_everything

__all__ = [
    "DistributedContext",
    "RunConfig",
    "RunSummary",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "build_model",
    "destroy_distributed",
    "evaluate_checkpoint",
    "fit_run",
    "init_distributed",
    "list_bundled_configs",
    "load_checkpoint",
    "parse_overrides",
    "read_config_file",
    "read_run",
    "resolve_config",
    "run_evaluator",
    "run_folder_state",
    "seed_everything",
]
