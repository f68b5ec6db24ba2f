"""Typed training and evaluation configuration: defaults, layering, validation, YAML.

A config is resolved from layers, later layers winning:
built-in defaults < per-dataset table < YAML file (`--config`) < `--set key=value` < flags.
The resolved config is written to the run directory with every default spelled out, so that
`robench train --config runs/<id>/config.yaml` reproduces the run. The modules: `schema` (the
dataclasses), `defaults` (per dataset), `layers` (nested dicts and YAML), `coerce` (dicts to
dataclasses), `resolve` (layers to a validated config).
"""

from robench.config.coerce import build
from robench.config.defaults import DATASET_DEFAULTS, dataset_defaults
from robench.config.layers import deep_merge, dump_yaml, load_yaml, parse_set, set_dotted
from robench.config.resolve import diff, resolve, validate
from robench.config.schema import (
    AUGMENTS,
    DEFAULT_N_EXAMPLES,
    DEVICES,
    PRECISIONS,
    SCHEDULES,
    DataConfig,
    EvalConfig,
    ModelConfig,
    OptimConfig,
    RuntimeConfig,
    TrainConfig,
    ValidationConfig,
    require,
)

__all__ = ["AUGMENTS", "DATASET_DEFAULTS", "DEFAULT_N_EXAMPLES", "DEVICES", "PRECISIONS",
           "SCHEDULES", "DataConfig", "EvalConfig", "ModelConfig", "OptimConfig",
           "RuntimeConfig", "TrainConfig", "ValidationConfig", "build", "dataset_defaults",
           "deep_merge", "diff", "dump_yaml", "load_yaml", "parse_set", "require", "resolve",
           "set_dotted", "validate"]
