"""What a result cost: wall seconds, throughput and peak memory, as FastAT's benchmark reports.

Peak memory is the CUDA allocator's maximum (reset where the work starts) on a GPU, and the
process's maximum resident set size on a CPU. The latter cannot be reset: it covers the
process from its start (interpreter, torch, the dataset) to the end of the work, which is
what a user must provision for a command.
"""

from __future__ import annotations

import resource
import sys
from dataclasses import dataclass

import torch

CUDA = "cuda-max-allocated"
CPU = "cpu-max-rss"


@dataclass
class Cost:
    seconds: float  # wall time of the work
    items_per_s: float  # images (training) or evaluated points (evaluation) per second
    peak_memory_bytes: int
    peak_memory: str  # what was measured: CUDA or CPU


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> tuple[int, str]:
    """(bytes, kind) of the peak memory so far (see the module docstring)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), CUDA
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024), CPU  # Linux reports KiB


def measure(device: torch.device, seconds: float, items: int) -> Cost:
    """The cost of `items` done in `seconds` (rounded to ms, the rate from the rounded time)."""
    peak, kind = peak_memory(device)
    seconds = round(seconds, 3)
    return Cost(seconds=seconds, items_per_s=round(items / seconds, 3) if seconds else 0.0,
                peak_memory_bytes=peak, peak_memory=kind)
