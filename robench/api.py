"""robench's operations as Python functions: the public facade, and the CLI's only door.

Nothing is implemented here; each name comes from the package that owns it, so a user's
`from robench.api import ...` keeps working however the code inside is arranged.

    from robench import api
    cfg, _ = api.resolve_config([{"data": {"dataset": "digits"}, "defense": "pgd-at"}])
    run = api.train(cfg, out="runs")
    records = api.evaluate(api.from_run(run.run_dir), api.EvalConfig(attacks=["autoattack"]))
    api.write_report(api.load_records(["runs"]), "leaderboard", ["md", "csv"])
"""

from robench.config import EvalConfig, TrainConfig
from robench.evaluation import (
    AttackOutcome,
    CorruptionConfig,
    CorruptionOutcome,
    EvalOutcome,
    Shard,
    ShardOutcome,
    Target,
    craft,
    evaluate,
    evaluate_corruptions,
    evaluate_ranks,
    merge_shards,
)
from robench.report import load_records, write_report
from robench.targets import from_external, from_run, from_zoo
from robench.training import (
    TrainResult,
    build_parts,
    init_layer,
    load_run_model,
    resolve_config,
    resume,
    train,
)

__all__ = ["AttackOutcome", "CorruptionConfig", "CorruptionOutcome", "EvalConfig", "EvalOutcome",
           "Shard", "ShardOutcome", "Target", "TrainConfig", "TrainResult", "build_parts",
           "craft", "evaluate", "evaluate_corruptions", "evaluate_ranks", "from_external",
           "from_run", "from_zoo", "init_layer", "load_records", "load_run_model", "merge_shards",
           "resolve_config", "resume", "train", "write_report"]
