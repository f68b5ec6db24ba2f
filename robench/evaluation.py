"""Measuring a model on a data split."""

from __future__ import annotations

import torch

from robench.data import Split, to_float
from robench.runtime import autocast, evaluating


@torch.no_grad()
def predict(model: torch.nn.Module, split: Split, *, device: torch.device, batch_size: int = 512,
            precision: str = "fp32", channels_last: bool = False) -> torch.Tensor:
    """Predicted labels for every image of `split`, computed in eval mode."""
    preds = []
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    with evaluating(model):
        for start in range(0, len(split), batch_size):
            x = to_float(split.x[start:start + batch_size].to(device, non_blocking=True))
            x = x.contiguous(memory_format=memory_format)
            with autocast(device, precision):
                preds.append(model(x).argmax(1).cpu())
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)


def accuracy(model: torch.nn.Module, split: Split, **kwargs) -> float | None:
    """Fraction of `split` classified correctly; None for an empty split."""
    if len(split) == 0:
        return None
    return (predict(model, split, **kwargs) == split.y.cpu()).float().mean().item()
