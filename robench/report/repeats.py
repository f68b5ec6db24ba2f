"""When two records are the same evaluation, and when they only look alike.

A report may drop a record only if another one says exactly the same: same model, same
protocol (every setting that can change the number: precision, verdict rule and draws,
block size, sanity pass, device, data, versions...) and the same results. Anything less is
another evaluation and enters the per-point worst case. Two records that share model and
protocol but disagree in their results are a repeat that disagrees (a randomised model, or a
nondeterministic one): both are kept, so the row shows at most the lower, and it is flagged.

The protocol is the whole record less its results and less what says only how a run went
(when, how long, what it cost), so a new record field is part of the protocol by default:
forgetting to list it can only keep records apart, never merge two evaluations.
"""

from __future__ import annotations

import json
from typing import Any

from robench.records import Record

REPEAT_DISAGREES = "repeat-disagrees"
# How a run went, not what it measured.
_VOLATILE = {"created", "seconds", "cost", "key"}
_VOLATILE_STEP = {"seconds"}
# What an evaluation measured (top level, then inside nested parts).
_RESULTS = {"clean_acc", "robust_acc", "robust_ci95", "clean_ci95", "autoattack_acc",
            "flags", "notes", "points"}
_NESTED_RESULTS = {
    "per_attack": {"robust_acc_after", "broken", "attacked", "disputed"},
    "sanity": {"extra_broken", "only_protocol", "p_value", "large_eps_robust",
               "implied_drop", "implied_drop_ci95"},
    "verdict": {"mean_clean_acc"},
    "corruptions": {"accuracy", "mean_acc", "reference_clean_acc", "reference_accuracy",
                    "ce", "mce", "relative_ce", "relative_mce"},
}


def _without(data: dict[str, Any], drop: set[str]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in drop}


def _strip(data: dict[str, Any], results: bool) -> dict[str, Any]:
    out = _without(data, _VOLATILE | (_RESULTS if results else set()))
    out["per_attack"] = [_without(step, _VOLATILE_STEP | (
        _NESTED_RESULTS["per_attack"] if results else set())) for step in data["per_attack"]]
    if results:
        for part in ("sanity", "verdict", "corruptions"):
            if isinstance(out.get(part), dict):
                out[part] = _without(out[part], _NESTED_RESULTS[part])
    return out


def _text(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def exact_id(r: Record) -> str:
    """Equal for records that say the same in everything but when and how long."""
    return _text(_strip(r.to_dict(), results=False))


def protocol_id(r: Record) -> str:
    """Equal for records that ran the same evaluation, whatever each measured."""
    return _text(_strip(r.to_dict(), results=True))
