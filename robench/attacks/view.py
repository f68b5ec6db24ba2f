"""A faster stand-in of a model for computing attack gradients.

Attacks spend their time in forward and backward passes of a model in eval mode, where
BatchNorm is a fixed affine map: folding it into the preceding convolution, and running in
channels-last layout, gives the same function with fewer memory passes (about 1.5x faster in
fp32 on a CPU for a CIFAR ResNet-18). The view is only used to *search* for adversarial
examples. Whether an example fools the model is always decided by the original model, so the
view cannot make a point count as broken when it is not; and since the view computes the same
function up to float rounding (tested for every architecture, outputs and input gradients),
the search is as strong as it would be on the model itself.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn


class _ChannelsLast(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.inner(x)


def attack_view(model: nn.Module) -> nn.Module:
    """An eval-mode copy with BatchNorm folded into convolutions, in channels-last layout.

    A model torch.fx cannot trace keeps its BatchNorm; the copy is still channels-last.
    """
    view = copy.deepcopy(model).eval()
    try:
        from torch.fx.experimental.optimization import fuse

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            view = fuse(view)
    except Exception:  # not traceable (data-dependent control flow): keep the plain copy
        pass
    has_conv = any(isinstance(m, nn.Conv2d) for m in view.modules())
    if has_conv:
        view = _ChannelsLast(view.to(memory_format=torch.channels_last))
    for p in view.parameters():
        p.requires_grad_(False)
    return view.eval()
