"""`--sync-bn`: BatchNorm statistics of the global batch, over every process of a run.

On GPUs this is torch's SyncBatchNorm. torch's refuses any other device, so on CPUs (gloo)
robench normalises with `GlobalBatchNorm`: the per-channel sums of x and x^2 and the count
are summed over the processes with torch.distributed.nn's all_reduce, whose backward sums
the gradients back, so the gradient is that of BatchNorm over the global batch. The sums are
taken in float64, so E[x^2] - E[x]^2 loses nothing a float32 BatchNorm keeps. In eval mode,
or in one process, it is the plain BatchNorm it replaces.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from torch import nn

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """A BatchNorm (1d, 2d or 3d) whose training statistics span every process."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spread = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if not (self.training and spread):
            return super().forward(x)
        c = x.shape[1]
        dims = [0, *range(2, x.dim())]
        x64 = x.double()
        count = torch.full((1,), x.numel() / c, dtype=torch.float64, device=x.device)
        total = dist_nn.all_reduce(torch.cat([x64.sum(dims), (x64 * x64).sum(dims), count]))
        n = total[-1]
        mean = total[:c] / n
        var = (total[c:2 * c] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                          else self.momentum)
                self.running_mean.mul_(1 - factor).add_(factor * mean.to(self.running_mean))
                unbiased = var * n / (n - 1).clamp_min(1)
                self.running_var.mul_(1 - factor).add_(factor * unbiased.to(self.running_var))
        shape = [1, c] + [1] * (x.dim() - 2)
        scale = torch.rsqrt(var + self.eps)
        y = (x64 - mean.view(shape)) * scale.view(shape)
        if self.affine:
            y = y * self.weight.double().view(shape) + self.bias.double().view(shape)
        return y.to(x.dtype)


def _global(bn: nn.modules.batchnorm._BatchNorm) -> GlobalBatchNorm:
    out = GlobalBatchNorm(bn.num_features, bn.eps, bn.momentum, bn.affine,
                          bn.track_running_stats)
    if bn.affine:
        out.weight, out.bias = bn.weight, bn.bias
    if bn.track_running_stats:
        out.running_mean, out.running_var = bn.running_mean, bn.running_var
        out.num_batches_tracked = bn.num_batches_tracked
    out.train(bn.training)
    return out


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Every plain BatchNorm of `model`, in place, as one over the global batch (torch's
    SyncBatchNorm on GPUs, GlobalBatchNorm elsewhere); subclasses (a frozen BatchNorm) stay."""
    convert = nn.SyncBatchNorm.convert_sync_batchnorm if device.type == "cuda" else _global
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) in BATCH_NORMS:
                setattr(parent, name, convert(child))
    return model
