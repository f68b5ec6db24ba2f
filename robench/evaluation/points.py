"""Choosing the points an evaluation runs on, and naming that choice in a record.

The choice depends on its own selection seed, never on the attacks' seed: two evaluations
with different attack seeds run on the same points, so a report can take the per-point
worst case over them.
"""

from __future__ import annotations

import torch

from robench.config import DEFAULT_N_EXAMPLES
from robench.data import Split
from robench.errors import UserError
from robench.records import encode_bits


def point_count(n_available: int, n_examples: int | None, all_examples: bool,
                dataset: str) -> int:
    """How many points an evaluation runs on: all, the number asked for, or the default."""
    if n_examples is not None and n_examples > n_available:
        raise UserError(f"--n-examples {n_examples} is more than the {n_available} test "
                        f"points of {dataset}; give at most {n_available}.")
    if all_examples:
        return n_available
    return n_examples or min(DEFAULT_N_EXAMPLES, n_available)


def select_points(split: Split, n: int | None, seed: int) -> tuple[torch.Tensor, str]:
    """Indices (sorted) of the points to evaluate and how they were chosen.

    RobustBench's convention is the first N test points, which is a fair sample only when the
    split is stored in random order. A split stored class by class (image folders) would give
    N points of the first classes, so it gets a seeded sample with classes in proportion.
    """
    total = len(split)
    n = total if n is None else n
    y = split.y.cpu()
    if n == total or not bool((y[1:] >= y[:-1]).all()):
        return torch.arange(n), "first"
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(total, generator=gen)
    # Interleave classes in the seeded order, so any prefix holds them in proportion.
    ranks = torch.empty(total)
    for cls in y.unique():
        members = order[y[order] == cls]
        ranks[members] = (torch.arange(len(members), dtype=torch.float) + 0.5) / len(members)
    chosen = order[torch.argsort(ranks[order], stable=True)[:n]]
    return chosen.sort().values, "stratified"


def selection_mask(indices: torch.Tensor, total: int) -> str:
    """Which of the split's `total` points were chosen, as encode_bits text."""
    chosen = torch.zeros(total, dtype=torch.bool)
    chosen[indices] = True
    return encode_bits(chosen.tolist())
