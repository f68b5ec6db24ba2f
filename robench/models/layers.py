"""Layers shared by every robench model.

Attacks work in [0, 1] pixel space, so normalisation is part of the model, never of the data.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class Normalize(nn.Module):
    """Per-channel `(x - mean) / std`, so a model takes [0, 1] images and eps stays in pixels.

    mean and std are buffers, not parameters: they travel with the weights (so a checkpoint
    normalises the way it was trained) and no optimiser or attack can change them.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        mean = tuple(round(v, 4) for v in self.mean.flatten().tolist())
        std = tuple(round(v, 4) for v in self.std.flatten().tolist())
        return f"mean={mean}, std={std}"


class Classifier(nn.Module):
    """What `create_model` returns: `net(normalize(x))` for x in [0, 1].

    `normalize` and `net` stay separate attributes so a defense can put a module between them
    (RCM's upsampling goes after normalisation and before the network).
    """

    def __init__(self, normalize: Normalize, net: nn.Module):
        super().__init__()
        self.normalize = normalize
        self.resize: nn.Module = nn.Identity()  # RCM's upsampling replaces it
        self.net = net

    def net_input(self, x: torch.Tensor) -> torch.Tensor:
        """What `net` sees for images x: normalised, then resized (a defense splitting `net`
        between stages starts from here)."""
        return self.resize(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.net_input(x))


def kap_grid(channels: int) -> tuple[int, int]:
    """The near-square grid KAP lays `channels` kernels out on: (rows, columns).

    rows is the largest divisor of C not above sqrt(C), so C = rows * columns exactly and
    channel c sits at row c // columns, column c % columns (methods.md, Seed 1). A prime C
    gives a single row, where the 2-D form degenerates to the 1-D one.
    """
    rows = max(d for d in range(1, int(channels**0.5) + 1) if channels % d == 0)
    return rows, channels // rows


class KernelAveragePool(nn.Module):
    """Mean of each channel's activation with its neighbours' at every pixel (KAP).

    The kernels of a layer become an ensemble: a channel's output is the average of itself
    and of the channels next to it on a fixed layout (a k x k window on the near-square grid
    of `kap_grid` in the 2-D form, k consecutive channels in the 1-D form), so no single kernel
    decides a feature alone (Bashivan et al. 2022). At a border the mean is over the
    neighbours that exist, and channel count and spatial size are unchanged.

    The average is linear across channels, so it is applied as a fixed C x C averaging matrix
    (a 1x1 convolution): one GEMM that works for any grid, even one smaller than the window,
    keeps channels-last layout and autocast. The matrix is a buffer rebuilt from the layer's
    arguments, never saved, and the layer has no parameters.

    `noise` adds N(0, noise^2) to the output in training and in evaluation alike, as the
    authors' layer does; with it on, the model is stochastic and must be evaluated as such.
    """

    def __init__(self, channels: int, kernel_size: int = 3, form: str = "2d", noise: float = 0.0):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"KAP kernel_size must be odd and positive, got {kernel_size}")
        if form not in ("1d", "2d"):
            raise ValueError(f"KAP form must be '1d' or '2d', got {form!r}")
        self.channels, self.kernel_size, self.form, self.noise = channels, kernel_size, form, noise
        self.grid = kap_grid(channels) if form == "2d" else (channels, 1)
        self.register_buffer("weight", self._averaging_matrix(), persistent=False)

    def _averaging_matrix(self) -> torch.Tensor:
        rows, columns = self.grid
        reach = (self.kernel_size - 1) // 2
        c = torch.arange(self.channels)
        row, column = c // columns, c % columns
        near = ((row[:, None] - row[None, :]).abs() <= reach) & (
            (column[:, None] - column[None, :]).abs() <= reach
        )
        matrix = near.float() / near.sum(dim=1, keepdim=True)
        return matrix[:, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x, self.weight.to(x.dtype))
        if self.noise > 0:
            out = out + self.noise * torch.randn_like(out)
        return out

    def extra_repr(self) -> str:
        text = f"{self.channels}, kernel_size={self.kernel_size}, form={self.form!r}"
        return text + (f", noise={self.noise}" if self.noise else "")


class Upsample(nn.Module):
    """Interpolate the (normalised) input by `scale`: RCM's larger feature maps at no new weight.

    Sitting inside the model, after normalisation, it keeps the attack on the original image:
    eps is still measured on the 32x32 [0, 1] input the user gives.
    """

    def __init__(self, scale: int = 2, mode: str = "nearest"):
        super().__init__()
        self.scale, self.mode = scale, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale, mode=self.mode)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, mode={self.mode!r}"


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm that stays in eval mode: running statistics normalise, nothing updates them.

    Fine-tuning with a frozen part (AdvBN's stem and first stage) means more than no gradient:
    a BatchNorm left in train mode would normalise with each batch's statistics and keep
    moving its running ones. `model.train()` reaches every module, so the mode is pinned here
    rather than set once. It stays an `nn.BatchNorm2d` with the same state-dict keys, so
    checkpoints load either way and the attack view still folds it into its convolution.
    """

    @classmethod
    def of(cls, bn: nn.BatchNorm2d) -> FrozenBatchNorm2d:
        """A frozen layer holding `bn`'s parameters and statistics (its tensors themselves)."""
        frozen = cls(bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                     track_running_stats=bn.track_running_stats)
        frozen._parameters = dict(bn._parameters)
        frozen._buffers = dict(bn._buffers)
        for p in frozen.parameters():
            p.requires_grad_(False)
        return frozen.eval()

    def train(self, mode: bool = True) -> FrozenBatchNorm2d:
        return super().train(False)


class DualBatchNorm2d(nn.Module):
    """Two BatchNorms for one layer, `clean` and `adv`; `route` says which one runs.

    AdvBN (Shu et al. 2021) trains the layers after its split on clean and on restyled
    features; the two kinds of batch have different statistics, so each gets its own
    normalisation (statistics and affine parameters) while the convolutions stay shared.
    `clean` is the original layer itself, untouched, so a freshly converted model computes
    exactly what it did before; `adv` starts as a copy of it. `route` is a plain attribute,
    not saved: a model is built and loaded in the clean branch, the one evaluated at test time.

    A state dict written before the conversion (`...bn.weight` rather than
    `...bn.clean.weight`) loads into both branches, so a plain trained model can be fine-tuned
    with both copies starting from its BatchNorm, as the method prescribes.
    """

    ROUTES = ("clean", "adv")

    def __init__(self, clean: nn.BatchNorm2d):
        super().__init__()
        self.clean = clean
        self.adv = copy.deepcopy(clean)
        self.route = "clean"
        self.register_load_state_dict_pre_hook(_load_plain_batchnorm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adv(x) if self.route == "adv" else self.clean(x)

    def extra_repr(self) -> str:
        return f"route={self.route!r}"


def _load_plain_batchnorm(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """Keys of an unconverted BatchNorm (`prefix + 'weight'`) fill both branches."""
    names = [name for name, _ in module.clean.named_parameters()]
    names += [name for name, _ in module.clean.named_buffers()]
    for name in names:
        key = prefix + name
        if key in state_dict and prefix + "clean." + name not in state_dict:
            value = state_dict.pop(key)
            state_dict[prefix + "clean." + name] = value
            state_dict[prefix + "adv." + name] = value


@contextlib.contextmanager
def branch(model: nn.Module, route: str) -> Iterator[None]:
    """Every `DualBatchNorm2d` of `model` on `route` ("clean" or "adv"); restored after.

    A model without dual BatchNorm is refused: asking for the adversarial branch of a model
    that has none would otherwise silently run its only (clean) BatchNorm.
    """
    if route not in DualBatchNorm2d.ROUTES:
        raise ValueError(f"route must be one of {DualBatchNorm2d.ROUTES}, got {route!r}")
    duals = [m for m in model.modules() if isinstance(m, DualBatchNorm2d)]
    if not duals:
        raise ValueError("the model has no DualBatchNorm2d layers to route")
    before = [m.route for m in duals]
    for m in duals:
        m.route = route
    try:
        yield
    finally:
        for m, previous in zip(duals, before, strict=True):
            m.route = previous
