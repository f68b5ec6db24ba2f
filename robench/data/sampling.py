"""Seeded, class stratified samples of a split: how val, subsets and digits' test are drawn."""

from __future__ import annotations

import torch

from robench.data.splits import Split


def _stratified_order(y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random order of indices in which every prefix holds the classes in proportion.

    Each image gets its fractional position within its own (shuffled) class; sorting by
    that interleaves the classes, so taking the first n gives a stratified random sample.
    Sorts run on float64 keys: torch's CPU sort of many equal integers is ~50x slower.
    """
    n = len(y)
    perm = torch.randperm(n, generator=generator)
    yp = y[perm]
    by_class = torch.argsort(yp.double() * n + torch.arange(n, dtype=torch.float64))
    counts = torch.bincount(yp)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty(n, dtype=torch.float64)
    rank[by_class] = (torch.arange(n) - starts[yp[by_class]]).double()
    position = (2 * rank + 1) / (2 * counts[yp].double())  # equal fractions, equal floats
    return perm[torch.argsort(position, stable=True)]  # ties stay in the shuffled order


def split_indices(
    y: torch.Tensor, n_first: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A stratified random n_first indices and the rest, each in ascending order."""
    chosen = torch.zeros(len(y), dtype=torch.bool)
    chosen[_stratified_order(y, generator)[:n_first]] = True
    return chosen.nonzero().squeeze(1), (~chosen).nonzero().squeeze(1)


def take(split: Split, idx: torch.Tensor) -> Split:
    return Split(split.x[idx], split.y[idx])
