"""The Lp leaderboard tables: one ranked row per model for each (dataset, norm, eps).

Each row's robust accuracy is the per-point worst case over every record of the model on the
same points, or the lowest where points differ (robench.report.worst_case), and the table
names the attacks it comes from; `autoattack` is AutoAttack's standard version alone.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from robench.records import CORRUPTIONS, EVALS, Record
from robench.report.loading import (
    RUN_CONFIG,
    RUN_ENV,
    LoadedRecords,
    digest,
    model_id,
    model_names,
)
from robench.report.worst_case import autoattack_accuracy, worst_case

COLUMNS = ["rank", "defense", "arch", "clean", "robust", "ci_low", "ci_high", "attacks", "n",
           "records", "flags", "sanity", "disputed", "notes", "precision", "autoattack",
           "autoattack_version", "train_seconds", "train_peak_memory", "seed",
           "run", "overlaps_leader", "config", "published_clean", "published_robust"]
# What pandas.read_csv needs to give a leaderboard CSV back exactly (see read_csv below).
CSV_DTYPES = {"rank": "int64", "defense": "str", "arch": "str", "clean": "float64",
              "robust": "float64", "ci_low": "float64", "ci_high": "float64", "attacks": "str",
              "n": "int64", "records": "int64", "flags": "str", "sanity": "str",
              "disputed": "int64", "notes": "str", "precision": "str",
              "autoattack": "float64", "autoattack_version": "str",
              "train_seconds": "float64", "train_peak_memory": "float64", "seed": "Int64",
              "run": "str", "overlaps_leader": "bool", "config": "str",
              "published_clean": "float64", "published_robust": "float64"}
OVERLAP = "≈"
LEGEND = (f"robust: the per-point worst case over every record of the model on the same "
          f"points (attacks joined by '&'), or the lowest where points differ; AutoAttack: "
          f"its standard version alone; search: the precision attacks searched in (verdicts "
          f"are fp32); autoattack(v): AutoAttack's version v. records: how many records "
          f"of the model the row draws on; flags, sanity and disputed come from all of them "
          f"(sanity: points --sanity's stronger PGD broke that the attacks left robust; "
          f"disputed: points a stand-in called broken and the fp32 judge did not, attacked "
          f"again). {OVERLAP} marks a model whose 95 % Wilson interval overlaps the "
          f"leader's: at this number of points it is not clearly worse than rank 1.")
# pandas 3 reads floats back exactly by default (and deprecates the option); pandas 2 must ask
_EXACT_FLOATS = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader: many runs, one report


def run_meta(path: Path, r: Record, cache: dict) -> tuple[float, float, Any, str | None]:
    """(train_seconds, training's peak memory in bytes, seed, hash of config.yaml without
    runtime.seed) of a record's run."""
    run_dir = path.parent.parent if path.parent.name == EVALS else None
    if r.model.kind != "run" or run_dir is None:
        return math.nan, math.nan, pd.NA, None
    if run_dir not in cache:
        try:
            summary = json.loads((run_dir / RUN_ENV).read_text()).get("summary") or {}
            seconds = float(summary.get("train_seconds", math.nan))
            peak = float((summary.get("cost") or {}).get("peak_memory_bytes", math.nan))
        except (OSError, ValueError, TypeError, AttributeError):
            seconds = peak = math.nan
        try:
            cfg = yaml.load((run_dir / RUN_CONFIG).read_text(), Loader=_YAML_LOADER)
            seed = cfg.get("runtime", {}).pop("seed", pd.NA)
            seed, config = (int(seed) if seed is not pd.NA else seed), digest(cfg, 10)
        except (OSError, yaml.YAMLError, AttributeError, TypeError, ValueError):
            seed, config = pd.NA, None
        cache[run_dir] = (seconds, peak, seed, config)
    return cache[run_dir]


def leaderboard(loaded: LoadedRecords) -> dict[tuple[str, str, float], pd.DataFrame]:
    """One ranked table per (dataset, norm, eps), one row per model (columns: COLUMNS).

    `config` (a hash of the run's config.yaml without runtime.seed) is what aggregate_seeds
    groups on; frame.attrs holds dataset, norm, eps and eps_text for headings.
    """
    groups: dict[tuple, dict[tuple, list]] = defaultdict(lambda: defaultdict(list))
    for r, path in loaded.records:
        if r.norm != CORRUPTIONS:  # their own tables: robench.report.corruptions
            groups[(r.dataset, r.norm, float(r.eps))][model_id(r)].append((r, path))
    names, cache, tables = model_names(loaded.records), {}, {}
    for key in sorted(groups):
        rows = []
        for mid, items in groups[key].items():
            est = worst_case(items)
            r, path = est.records[0]
            seconds, peak, seed, config = run_meta(path, r, cache)
            aa = autoattack_accuracy(items)
            pub = next((x.published for x, _ in items if x.published is not None), None)
            if pub is not None and not _same_eps(pub.eps, key[2]):
                pub = None  # published at another budget: not comparable with this table
            rows.append({
                "rank": 0, "defense": r.model.defense or "", "arch": r.architecture
                or r.model.arch or "", "clean": est.clean, "robust": est.robust,
                "ci_low": est.ci[0], "ci_high": est.ci[1], "attacks": est.attacks,
                "n": est.n, "records": len(items), "flags": "; ".join(est.flags),
                "sanity": est.sanity, "disputed": est.disputed, "notes": "; ".join(est.notes),
                "precision": est.precision, "autoattack": math.nan if aa is None else aa,
                "autoattack_version": est.autoattack_version, "train_seconds": seconds,
                "train_peak_memory": peak, "seed": seed, "run": names[mid],
                "overlaps_leader": False, "config": config or f"model:{names[mid]}",
                "published_clean": math.nan if pub is None else pub.clean_acc,
                "published_robust": math.nan if pub is None or pub.robust_acc is None
                else pub.robust_acc})
        tables[key] = rank(pd.DataFrame(rows, columns=COLUMNS).astype(CSV_DTYPES))
        tables[key].attrs.update(dataset=key[0], norm=key[1], eps=key[2],
                                 eps_text=r.eps_text)  # as written by the user, e.g. 8/255
    return tables


def _same_eps(published: str, eps: float) -> bool:
    """Is a published budget ("8/255", "0.5"; empty when unknown) this table's eps?"""
    try:
        num, _, den = published.partition("/")
        value = float(num) / (float(den) if den else 1.0)
    except ValueError:
        return True  # the leaderboard did not say: shown, as the record keeps it
    return math.isclose(value, eps, rel_tol=1e-6)


def rank(frame: pd.DataFrame) -> pd.DataFrame:
    """Sort by robust then clean accuracy; flag rows not clearly worse than the leader."""
    frame = frame.sort_values(["robust", "clean", "run"], ascending=[False, False, True],
                              kind="mergesort", ignore_index=True)
    frame["rank"] = range(1, len(frame) + 1)
    lo, hi = frame.loc[0, "ci_low"], frame.loc[0, "ci_high"]
    frame["overlaps_leader"] = (frame["ci_low"] <= hi) & (frame["ci_high"] >= lo)
    return frame


def aggregate_seeds(table: pd.DataFrame) -> pd.DataFrame:
    """Runs that differ only in their seed, as mean and sample std (ddof=1; NaN for one),
    with the spread: the lowest and highest seed, and each seed's robust accuracy."""
    ordered = table.sort_values("seed", kind="mergesort")
    grouped = ordered.groupby(["defense", "arch", "config"], sort=False)
    out = grouped.agg(clean_mean=("clean", "mean"), clean_std=("clean", "std"),
                      robust_mean=("robust", "mean"), robust_std=("robust", "std"),
                      robust_min=("robust", "min"), robust_max=("robust", "max"),
                      autoattack_mean=("autoattack", "mean"),
                      autoattack_std=("autoattack", "std"),
                      n_seeds=("run", "size"),
                      seeds=("seed", lambda s: ",".join(map(str, s.dropna()))),
                      robust_by_seed=("robust", lambda s: list(s)),
                      flags=("flags", union_of_flags))
    return out.reset_index().sort_values(["robust_mean", "clean_mean"], ascending=False,
                                         kind="mergesort", ignore_index=True)


def union_of_flags(flags: pd.Series) -> str:
    """The flags of every row, once each ("; "-joined, as a row's own flags are)."""
    return "; ".join(dict.fromkeys(f for text in flags for f in text.split("; ") if f))


def pivot(table: pd.DataFrame) -> pd.DataFrame:
    """Robust accuracy, defense x architecture, of the best run in each cell."""
    return table.pivot_table(index="defense", columns="arch", values="robust", aggfunc="max")


def pivot_flags(table: pd.DataFrame) -> pd.DataFrame:
    """The flags of the run each pivot cell shows (the first in rank order at its maximum)."""
    best = table.sort_values(["robust", "rank"], ascending=[False, True], kind="mergesort")
    best = best.drop_duplicates(["defense", "arch"])
    return best.pivot(index="defense", columns="arch", values="flags")


def read_csv(path: str | Path) -> pd.DataFrame:
    """A leaderboard CSV back as the frame written (dtypes CSV_DTYPES, empty flags stay "")."""
    return pd.read_csv(path, dtype=CSV_DTYPES, keep_default_na=False,
                       na_values={"train_seconds": [""], "train_peak_memory": [""],
                                  "seed": [""], "autoattack": [""],
                                  "published_clean": [""], "published_robust": [""]},
                       **_EXACT_FLOATS)
