"""Test images for the corruption tests: structured shapes, constants, fixed generators."""

from __future__ import annotations

import torch


def shapes(n: int, channels: int, size: int, seed: int = 0) -> torch.Tensor:
    """Structured test images: a flat background with hard-edged discs and rectangles."""
    g = torch.Generator().manual_seed(seed)
    t = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    rows, cols = t.view(1, 1, -1, 1), t.view(1, 1, 1, -1)
    img = (torch.rand(n, channels, 1, 1, generator=g) * 0.5 + 0.25).expand(-1, -1, size, size)
    for k in range(6):
        cy, cx = torch.rand(2, n, 1, 1, 1, generator=g)
        r = torch.rand(n, 1, 1, 1, generator=g) * 0.25 + 0.08
        colour = torch.rand(n, channels, 1, 1, generator=g).expand_as(img)
        if k % 2 == 0:
            inside = (rows - cy) ** 2 + (cols - cx) ** 2 < r**2
        else:
            inside = ((rows - cy).abs() < r) & ((cols - cx).abs() < r / 2)
        img = torch.where(inside, colour, img)
    return img.contiguous()


def constant(value, size: int = 8, n: int = 2) -> torch.Tensor:
    value = torch.tensor(value if isinstance(value, (list, tuple)) else [value])
    return value.view(1, -1, 1, 1).expand(n, -1, size, size).contiguous().float()


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
