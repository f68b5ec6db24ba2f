"""Resizing a whole split to N x N (`--image-size`), keeping its storage dtype."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robench.data.splits import to_float

_RESIZE_CHUNK = 4096  # images resized at a time, to bound memory


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize to size x size, antialiased when shrinking; keeps the storage dtype."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    shrink = size < max(x.shape[-2:])
    out = torch.empty((*x.shape[:2], size, size), dtype=x.dtype)
    for start in range(0, len(x), _RESIZE_CHUNK):
        chunk = to_float(x[start : start + _RESIZE_CHUNK])
        chunk = F.interpolate(chunk, size=(size, size), mode="bilinear", antialias=shrink)
        out[start : start + len(chunk)] = _from_float(chunk.clamp_(0, 1), x.dtype)
    return out


def _from_float(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if dtype == torch.uint8:
        return x.mul(255).round_().to(torch.uint8)
    return x.to(dtype)
