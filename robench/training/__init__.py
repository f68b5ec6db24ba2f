"""Training: a run's parts from its config, the training loop, and the run's life cycle.

The modules, lowest first: `engine` (the loop: epochs, validation, checkpoints, resume),
`environment` (what a run records about where it ran), `setup` (config, defense, dataset and
model, and rebuilding a finished run's model), `run` (train, resume, the run directory).
"""

from robench.training.engine import (
    EpochCallback,
    FitResult,
    catastrophic_overfitting,
    epoch_generator,
    fit,
    make_optimizer,
    steps_per_epoch,
)
from robench.training.run import TrainResult, resume, train
from robench.training.setup import (
    build_parts,
    init_layer,
    load_run_model,
    rebuild_run,
    resolve_config,
)

__all__ = ["EpochCallback", "FitResult", "TrainResult", "build_parts", "catastrophic_overfitting",
           "epoch_generator", "fit", "init_layer", "load_run_model", "make_optimizer",
           "rebuild_run", "resolve_config", "resume", "steps_per_epoch", "train"]
