"""Blocks and shards: why an evaluation split over N processes equals one run point by point.

The evaluated points, in selection order, fall into fixed blocks of `--batch-size` points.
Every pass of the protocol (the clean pass, each attack, the sanity checks) works block by
block: one batch holds the points of one block still robust, and every random generator is
seeded from (the evaluation's seed, the pass, the block) before it. What a point meets (its
batch, its random start, a randomised model's draws, AutoAttack's reseeding per batch, even
the batch shape a kernel sees) is therefore a function of its block alone, never of the other
blocks, of how many processes run or of which one it lands on. A shard `i/N` is a contiguous
range of whole blocks; merging the N shards gives the record one process would have written.

The cost of that guarantee: a later attack's batch holds only the block's surviving points, so
on a GPU a larger --batch-size keeps batches full.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

import numpy as np
import torch

from robench.errors import UserError

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0-based): which blocks one process evaluates."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        match = _SHARD.match(text or "")
        if not match:
            raise UserError(f"--shard {text!r} is not of the form i/N (e.g. 0/4: the first of "
                            f"4 shards, numbered from 0).")
        index, count = int(match[1]), int(match[2])
        if count < 1 or index >= count:
            raise UserError(f"--shard {text!r} names shard {index} of {count}; give i/N with "
                            f"N >= 1 and 0 <= i < N.")
        return cls(index, count)

    @property
    def whole(self) -> bool:
        return self.count == 1

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def slug(self) -> str:
        return f"shard-{self.index}-of-{self.count}"

    def blocks(self, n_blocks: int) -> range:
        """Its contiguous share of the blocks (sizes differ by at most one block)."""
        return range(self.index * n_blocks // self.count,
                     (self.index + 1) * n_blocks // self.count)


def n_blocks(n_points: int, size: int) -> int:
    return -(-n_points // size)


def block_points(block: int, size: int, n_points: int) -> slice:
    return slice(block * size, min((block + 1) * size, n_points))


def covered(blocks: range | list[int], size: int, n_points: int) -> torch.Tensor:
    """Bool per point: in one of `blocks`."""
    mask = torch.zeros(n_points, dtype=torch.bool)
    for b in blocks:
        mask[block_points(b, size, n_points)] = True
    return mask


# The passes a block goes through, for its seeds: the clean pass, attack i (1 + i), and the
# sanity checks after the last attack.
CLEAN_PASS = 0


def attack_pass(i: int) -> int:
    return 1 + i


def block_seed(seed: int, pass_: int, block: int) -> int:
    """A 63-bit seed of (seed, pass, block): independent streams, the same on every machine."""
    digest = hashlib.sha256(f"robench-block:{seed}:{pass_}:{block}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def reseed(seed: int, device: torch.device) -> None:
    """Seed Python's, NumPy's and torch's generators (and the current GPU's) with `seed`.

    Called inside robench.evaluation.randomness.seeded, which restores them afterwards.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)
