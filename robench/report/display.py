"""One display form (strings) of a table, shared by Markdown, HTML and the terminal."""

from __future__ import annotations

import re

import pandas as pd

from robench.report.tables import OVERLAP


def pct(x: float) -> str:
    return "–" if pd.isna(x) else f"{100 * x:.1f}%"


def heading(key: tuple[str, str, float], table: pd.DataFrame) -> str:
    eps_text = table.attrs.get("eps_text", f"{key[2]:g}")
    return f"{key[0]} — {key[1]} eps {eps_text}"


def display(table: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard as people read it: percentages, the interval, the overlap marker."""
    marked = table["overlaps_leader"] & (table["rank"] > 1)
    return pd.DataFrame({
        "rank": table["rank"].astype(str), "run": table["run"], "defense": table["defense"],
        "arch": table["arch"], "clean": table["clean"].map(pct),
        "robust": [pct(x) + (f" {OVERLAP}" if m else "")
                   for x, m in zip(table["robust"], marked, strict=True)],
        "95% CI": [f"[{100 * lo:.1f}, {100 * hi:.1f}]"
                   for lo, hi in zip(table["ci_low"], table["ci_high"], strict=True)],
        "AutoAttack": table["autoattack"].map(pct),
        "attacks": table["attacks"], "n": table["n"].astype(str),
        "records": table["records"].astype(str), "search": table["precision"],
        "seed": ["–" if pd.isna(s) else str(s) for s in table["seed"]],
        "train s": ["–" if pd.isna(s) else f"{s:.1f}" for s in table["train_seconds"]],
        "train MiB": ["–" if pd.isna(b) else f"{b / 2**20:.0f}"
                      for b in table["train_peak_memory"]],
        "flags": table["flags"].replace("", "–"), "sanity": table["sanity"],
        "disputed": table["disputed"].astype(str),
        **_published(table)})


def display_notes(table: pd.DataFrame) -> pd.DataFrame:
    """The notes of each row's records, one line per note (empty when no row has one)."""
    rows = [(run, note) for run, notes in zip(table["run"], table["notes"], strict=True)
            for note in notes.split("; ") if note]
    return pd.DataFrame(rows, columns=["run", "note"])


def _published(table: pd.DataFrame) -> dict[str, list[str]]:
    """A zoo model's leaderboard numbers beside robench's, when any row has them."""
    if not table["published_clean"].notna().any():
        return {}
    return {"published clean": table["published_clean"].map(pct).tolist(),
            "published AA": table["published_robust"].map(pct).tolist()}


def display_seeds(agg: pd.DataFrame) -> pd.DataFrame:
    def mean_std(mean, std):
        return [pct(m) + ("" if pd.isna(s) else f" ± {100 * s:.1f}")
                for m, s in zip(mean, std, strict=True)]
    return pd.DataFrame({
        "defense": agg["defense"], "arch": agg["arch"], "config": agg["config"],
        "seeds": agg["seeds"], "n_seeds": agg["n_seeds"].astype(str),
        "clean (mean ± std)": mean_std(agg["clean_mean"], agg["clean_std"]),
        "robust (mean ± std)": mean_std(agg["robust_mean"], agg["robust_std"]),
        "robust per seed": [" / ".join(f"{100 * x:.1f}" for x in xs)
                            for xs in agg["robust_by_seed"]],
        "spread": [f"{100 * (hi - lo):.1f}" for lo, hi in zip(agg["robust_min"],
                                                             agg["robust_max"], strict=True)],
        "AutoAttack (mean ± std)": mean_std(agg["autoattack_mean"], agg["autoattack_std"]),
        "flags": agg["flags"].replace("", "–")})


def display_pivot(piv: pd.DataFrame, flags: pd.DataFrame | None = None) -> pd.DataFrame:
    """Percentages; a cell whose run has flags shows them in brackets after its number."""
    out = piv.map(pct)
    if flags is not None:
        for arch in out.columns:
            for defense in out.index:
                cell = flags.at[defense, arch] if arch in flags.columns else None
                if isinstance(cell, str) and cell:
                    out.at[defense, arch] = f"{out.at[defense, arch]} [{cell}]"
    out = out.reset_index()
    out.columns = ["defense \\ arch", *map(str, piv.columns)]
    return out


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", text.replace("/", "_")).strip("-") or "x"


def table_name(key: tuple[str, str, float], table: pd.DataFrame) -> str:
    """`<dataset>-<norm>-<eps slug>`, e.g. cifar10-Linf-8_255: names the CSV and plots."""
    return "-".join(slug(t) for t in (key[0], key[1], table.attrs.get("eps_text", f"{key[2]:g}")))
