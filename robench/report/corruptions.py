"""The common-corruption leaderboard: mean corruption accuracy, mCE and a column per corruption.

Corruption records (norm "corruptions") answer a different question from Lp records, so they
get their own table per (dataset, severities, set of corruptions) instead of a row among the
Lp ones (a mean over one corruption is never ranked beside a mean over fifteen): ranked by
mean accuracy over every corruption and severity (RobustBench's corruptions accuracy), with
mCE and relative mCE when the evaluation had a reference model, and a heat map of accuracy,
corruption x severity, per model (robench.report.plots).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import pandas as pd

from robench.records import CORRUPTIONS, Record
from robench.report.display import pct, slug
from robench.report.loading import digest, model_id, model_names
from robench.report.tables import run_meta, union_of_flags

BASE_COLUMNS = ["rank", "run", "defense", "arch", "clean", "mean_corruption_acc", "ci_low",
                "ci_high", "mce", "relative_mce", "reference", "n", "source", "seed", "config",
                "published", "records", "flags"]
BENCHMARK_SIZE = 15  # CIFAR-10-C's corruptions: a full set's table keeps the plain name


def corruption_records(loaded) -> list[tuple[Record, Path]]:
    return [(r, p) for r, p in loaded.records if r.norm == CORRUPTIONS]


def corruption_tables(loaded) -> dict[tuple[str, str, tuple[str, ...]], pd.DataFrame]:
    """One ranked table per (dataset, severities, corruptions); per model its record with
    the lowest mean (repeats of a randomised model differ), with every record's flags.

    Columns: BASE_COLUMNS, then one per corruption (its mean accuracy over the severities).
    frame.attrs["grids"] maps run -> (corruptions, severities, accuracy) for the heat maps.
    """
    groups: dict[tuple, dict[tuple, list]] = defaultdict(lambda: defaultdict(list))
    items = corruption_records(loaded)
    for r, path in items:
        key = (r.dataset, r.eps_text, tuple(sorted(r.corruptions.corruptions)))
        groups[key][model_id(r)].append((r, path))
    names, cache = model_names(loaded.records), {}
    tables = {}
    for key in sorted(groups):
        rows, grids, order = [], {}, []
        for mid, found in groups[key].items():
            r, path = min(found, key=lambda item: (item[0].robust_acc, str(item[1])))
            flags = dict.fromkeys(f for x, _ in found for f in x.flags)
            c = r.corruptions
            run = names[mid]
            _, _, seed, config = run_meta(path, r, cache)
            published = r.published.robust_acc if r.published is not None else None
            row = {"rank": 0, "run": run, "defense": r.model.defense or "",
                   "arch": r.architecture or r.model.arch or "", "clean": r.clean_acc,
                   "mean_corruption_acc": r.robust_acc, "ci_low": r.robust_ci95[0],
                   "ci_high": r.robust_ci95[1], "mce": c.mce, "relative_mce": c.relative_mce,
                   "reference": c.reference or "", "n": r.selection.n_examples,
                   "source": c.source.split(":")[0], "seed": seed,
                   "config": config or f"model:{run}",
                   "published": math.nan if published is None else published,
                   "records": len(found), "flags": "; ".join(flags)}
            for name in c.corruptions:
                accs = c.accuracy[name]
                row[name] = sum(accs) / len(accs)
                if name not in order:
                    order.append(name)
            rows.append(row)
            grids[run] = (c.corruptions, c.severities, c.accuracy)
        frame = pd.DataFrame(rows, columns=BASE_COLUMNS + order)
        frame = frame.sort_values(["mean_corruption_acc", "clean", "run"],
                                  ascending=[False, False, True], kind="mergesort",
                                  ignore_index=True)
        frame["rank"] = range(1, len(frame) + 1)
        frame.attrs.update(dataset=key[0], severities=key[1], grids=grids)
        tables[key] = frame
    return tables


def _set_label(names: tuple[str, ...]) -> str:
    """'' for a full benchmark-sized set, the names for a few, else a count and a hash."""
    if len(names) == BENCHMARK_SIZE:
        return ""
    return "+".join(names) if len(names) <= 3 else f"{len(names)}-of-them-{digest(names, 6)}"


def heading(key: tuple[str, str, tuple[str, ...]]) -> str:
    label = "" if len(key[2]) == BENCHMARK_SIZE else f" ({len(key[2])}: {', '.join(key[2])})"
    return f"{key[0]} — common corruptions{label}, severities {key[1].lstrip('s')}"


def table_name(key: tuple[str, str, tuple[str, ...]]) -> str:
    label = _set_label(key[2])
    return f"{slug(key[0])}-corruptions-{slug(key[1])}" + (f"-{slug(label)}" if label else "")


def display(table: pd.DataFrame, per_corruption: bool = True) -> pd.DataFrame:
    """Percentages for accuracies; CE as the paper prints it (percent of the reference's).

    `per_corruption=False` leaves out the column per corruption (a terminal is too narrow).
    """
    def ratio(v) -> str:
        return "–" if v is None or pd.isna(v) else f"{100 * v:.1f}"

    out = pd.DataFrame({
        "rank": table["rank"].astype(str), "run": table["run"], "defense": table["defense"],
        "arch": table["arch"], "clean": table["clean"].map(pct),
        "mean corr. acc": table["mean_corruption_acc"].map(pct),
        "95% CI": [f"[{100 * lo:.1f}, {100 * hi:.1f}]"
                   for lo, hi in zip(table["ci_low"], table["ci_high"], strict=True)],
        "mCE": table["mce"].map(ratio), "rel. mCE": table["relative_mce"].map(ratio),
        "n": table["n"].astype(str), "records": table["records"].astype(str),
        "flags": table["flags"].replace("", "–")})
    if table["published"].notna().any():  # a zoo model's leaderboard number beside robench's
        out["published"] = table["published"].map(pct)
    for name in table.columns[len(BASE_COLUMNS):] if per_corruption else []:
        out[name] = table[name].map(pct)
    return out


LEGEND = ("Mean corruption accuracy: over every corruption and severity evaluated; the "
          "interval treats it as a proportion over the n points. mCE and rel. mCE: corruption "
          "errors as a percentage of the reference model's (Hendrycks & Dietterich 2019); – "
          "without a reference. Per-corruption columns: mean accuracy over the severities. "
          "Generated corruptions are robench's implementation of the CIFAR-10-C recipe and "
          "compare with published numbers only through the pre-made files.")


def aggregate_seeds(table: pd.DataFrame) -> pd.DataFrame:
    """Runs that differ only in their seed: mean corruption accuracy as mean ± sample std,
    each seed's and the spread (like robench.report.tables.aggregate_seeds)."""
    ordered = table.sort_values("seed", kind="mergesort")
    grouped = ordered.groupby(["defense", "arch", "config"], sort=False)
    out = grouped.agg(clean_mean=("clean", "mean"), clean_std=("clean", "std"),
                      acc_mean=("mean_corruption_acc", "mean"),
                      acc_std=("mean_corruption_acc", "std"),
                      acc_min=("mean_corruption_acc", "min"),
                      acc_max=("mean_corruption_acc", "max"), n_seeds=("run", "size"),
                      seeds=("seed", lambda s: ",".join(map(str, s.dropna()))),
                      acc_by_seed=("mean_corruption_acc", lambda s: list(s)),
                      flags=("flags", union_of_flags))
    return out.reset_index().sort_values(["acc_mean", "clean_mean"], ascending=False,
                                         kind="mergesort", ignore_index=True)


def display_seeds(agg: pd.DataFrame) -> pd.DataFrame:
    def mean_std(mean, std):
        return [pct(m) + ("" if pd.isna(s) else f" ± {100 * s:.1f}")
                for m, s in zip(mean, std, strict=True)]
    return pd.DataFrame({
        "defense": agg["defense"], "arch": agg["arch"], "config": agg["config"],
        "seeds": agg["seeds"], "n_seeds": agg["n_seeds"].astype(str),
        "clean (mean ± std)": mean_std(agg["clean_mean"], agg["clean_std"]),
        "mean corr. acc (mean ± std)": mean_std(agg["acc_mean"], agg["acc_std"]),
        "per seed": [" / ".join(f"{100 * x:.1f}" for x in xs) for xs in agg["acc_by_seed"]],
        "spread": [f"{100 * (hi - lo):.1f}"
                   for lo, hi in zip(agg["acc_min"], agg["acc_max"], strict=True)],
        "flags": agg["flags"].replace("", "–")})
