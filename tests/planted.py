"""Planted models: small networks built to catch one way an evaluation can over-report.

Each wraps a trained classifier (or is a tiny net of its own) and hides a trap that an
evaluation must not fall into: randomness a tracer bakes in, randomness that shows only in
some passes, modules called twice, a stand-in that disagrees with the model near the
decision boundary. The tests use them; so does the before/after measurement in the
closing note of the soundness issue.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch import nn


class PythonRandomMember(nn.Module):
    """Each forward pass classifies with one member, picked by Python's `random`.

    torch.fx runs `random.random()` once while tracing, so a traced copy always uses the
    same member: an EOT attack on it averages one member's gradients twenty times.
    """

    def __init__(self, first: nn.Module, second: nn.Module):
        super().__init__()
        self.first, self.second = first, second

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.first(x) if random.random() < 0.5 else self.second(x)


class NumpyRandomShift(nn.Module):
    """Classifies the input shifted by a brightness offset drawn with NumPy."""

    def __init__(self, net: nn.Module, size: float = 0.3):
        super().__init__()
        self.net, self.size = net, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset = float(np.random.uniform(-self.size, self.size))
        return self.net(x + offset)


class FixedShapeNoise(nn.Module):
    """Adds noise of a fixed shape, drawn with `torch.randn(shape)` (not derived from x).

    A tracer sees no input in the call, so it stores one draw as a constant.
    """

    def __init__(self, net: nn.Module, shape: tuple[int, ...], sigma: float = 0.3):
        super().__init__()
        self.net, self.shape, self.sigma = net, shape, sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x + self.sigma * torch.randn(self.shape))


class CoinFlipEnsemble(nn.Module):
    """One of two members for the whole batch, chosen by a fair coin in each pass.

    Two passes agree half the time, so a two-pass comparison misses the randomness half the
    time.
    """

    def __init__(self, first: nn.Module, second: nn.Module):
        super().__init__()
        self.first, self.second = first, second

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.first(x) if bool(torch.rand(()) < 0.5) else self.second(x)


class NoisyWhereMarked(nn.Module):
    """Noisy on the points whose first pixel is at least 0.5 (tests mark them), deterministic
    elsewhere: randomness that only some inputs show."""

    def __init__(self, net: nn.Module, sigma: float = 0.3):
        super().__init__()
        self.net, self.sigma = net, sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noisy = (x.flatten(1)[:, 0] >= 0.5).view(-1, *([1] * (x.dim() - 1)))
        noise = self.sigma * torch.randn_like(x) * noisy
        return self.net(x + noise)


class TiedConvBN(nn.Module):
    """One conv-BN block applied twice: folding BN into the conv in place folds it twice."""

    def __init__(self, channels: int = 3, classes: int = 4):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1),
                                   nn.BatchNorm2d(channels))
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.block(x))
        x = torch.relu(self.block(x))
        return self.head(x.mean((2, 3)))


class SharedConvTwoBranches(nn.Module):
    """One conv feeding two BatchNorms: each branch needs its own fold."""

    def __init__(self, channels: int = 3, classes: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(channels, 8, 3, padding=1)
        self.bn_a, self.bn_b = nn.BatchNorm2d(8), nn.BatchNorm2d(8)
        self.head = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.bn_a(self.conv(x))).mean((2, 3))
        b = torch.relu(self.bn_b(self.conv(x))).mean((2, 3))
        return self.head(torch.cat([a, b], 1))


def settle_batchnorm(model: nn.Module, shape: tuple[int, ...], seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine terms, then eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=gen))
                m.bias.copy_(torch.rand(m.bias.shape, generator=gen) - 0.5)
        model.train()
        for _ in range(3):
            model(2 * torch.rand(shape, generator=gen))
    return model.eval()


def _class_zero(z: torch.Tensor) -> torch.Tensor:
    """One-hot rows for class 0, shaped like the logits z."""
    mask = torch.zeros_like(z)
    mask[:, 0] = 1
    return mask


class RightOnlyInBf16(nn.Module):
    """The classifier under bf16 autocast; in fp32, class 0 wins wherever the pixels sum to
    more than `threshold`: a stand-in (bf16) that is right where the model is wrong."""

    def __init__(self, net: nn.Module, threshold: float):
        super().__init__()
        self.net, self.threshold = net, threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net(x).float()
        if torch.is_autocast_enabled(x.device.type):
            return z
        hit = (x.flatten(1).sum(1) > self.threshold).float()
        return z + _class_zero(z) * (100 * hit)[:, None]


class ClassZeroBoosted(nn.Module):
    """The classifier with class 0's logit raised by `boost`: a stand-in that calls every
    point of another class broken while the model itself gets most of them right."""

    def __init__(self, net: nn.Module, boost: float = 100.0):
        super().__init__()
        self.net, self.boost = net, boost

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net(x).float()
        return z + _class_zero(z) * self.boost


class ZeroGradient(nn.Module):
    """Classifies the input rounded to 1/16: the same predictions, an input gradient of zero
    everywhere (rounding has none), so gradient attacks cannot move: masked gradients."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.round(x * 16) / 16)


class RecordingMember(PythonRandomMember):
    """PythonRandomMember that notes, per forward pass, the member used and whether autograd
    was recording: the passes an attack takes its gradients from are the ones with grad."""

    def __init__(self, first: nn.Module, second: nn.Module):
        super().__init__(first, second)
        self.passes: list[tuple[int, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        member = 0 if random.random() < 0.5 else 1
        self.passes.append((member, torch.is_grad_enabled()))
        return (self.first if member == 0 else self.second)(x)


# --- attacks (issue 29) ---


class NarrowBand(nn.Module):
    """Two classes on the first input value v: class 1 wins only for |v - centre| < width.

    A search stepping v upwards from below crosses the band and leaves it: the model is
    fooled at one iterate in the middle of the search, not at its start or its end.
    """

    def __init__(self, centre: float = 0.7, width: float = 0.05):
        super().__init__()
        self.centre, self.width = centre, width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x.flatten(1)[:, 0]
        return torch.stack([torch.zeros_like(v), self.width - (v - self.centre).abs()], 1)


class RisingStandIn(nn.Module):
    """A stand-in whose class-1 logit v - 1 rises with the first input value v and never
    wins on [0, 1]: its margin is largest at a search's last iterate, and it claims nothing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x.flatten(1)[:, 0]
        return torch.stack([torch.zeros_like(v), v - 1], 1)


class GradientFlippedAt(nn.Module):
    """The net's logits exactly, with the input gradient of one point of the batch negated
    (a view that is the model's function but steers the search the wrong way there)."""

    def __init__(self, net: nn.Module, index: int):
        super().__init__()
        self.net, self.index = net, index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net(x)
        sign = torch.ones(len(x), 1, dtype=z.dtype, device=z.device)
        if self.index < len(x):
            sign[self.index] = -1.0
        return z.detach() + sign * (z - z.detach())


class SignedFirstValue(nn.Module):
    """Two logits +-scale (v - 0.5) of the first input value v: confident far from 0.5,
    so a point there has an input gradient far smaller than one near 0.5."""

    def __init__(self, scale: float = 10.0):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.scale * (x.flatten(1)[:, 0] - 0.5)
        return torch.stack([-d, d], 1)
# --- unchanged (issue 29) ---
# Models that change themselves while robench evaluates them, in ways a state_dict does not
# show: whatever robench measured was then not one model, so it must write nothing.


class CountsInHiddenBuffer(nn.Module):
    """Counts its forward passes in a non-persistent buffer (left out of the state_dict)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.register_buffer("calls", torch.zeros((), dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.net(x)


class FreezesItselfInForward(nn.Module):
    """Turns off `requires_grad` of its classifier's parameters in every forward pass."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for p in self.net.parameters():
            p.requires_grad_(False)
        return self.net(x)


class HooksItselfInForward(nn.Module):
    """Registers a (do-nothing) forward hook on its classifier in its first forward pass."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.hooked = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.hooked:
            self.net.register_forward_hook(lambda module, args, out: None)
            self.hooked = True
        return self.net(x)


class TrainsSubmoduleInForward(nn.Module):
    """Puts its classifier in train mode in every forward pass (robench restores each
    module's mode after a block, which hides the switch from a before/after comparison)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.net.train()
        return self.net(x)


# --- training (issue 29) ---
class WrongEveryFourthPass(nn.Module):
    """Two classes read off the first pixel (class 1 where it is at least 0.5), with a margin
    no small eps can cross; on every fourth forward pass the points whose second pixel is at
    least 0.5 ("fragile") get the other class. A single pass is usually right on them, while
    any four consecutive passes (a judge with four draws) include a wrong one."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1).float()
        s = flat[:, 0] - 0.5
        self.calls += 1
        if self.calls % 4 == 0:
            s = torch.where(flat[:, 1] >= 0.5, -s, s)
        return torch.stack([-s, s], 1) * self.scale


class RecordsPrecision(nn.Module):
    """Wraps a classifier and notes, per forward pass, what it was run in: the input's dtype,
    whether autocast was on, and the cuDNN / cuBLAS fp32 settings ("ieee" means TF32 off)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.seen: list[tuple[str, bool, str, str]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((str(x.dtype), torch.is_autocast_enabled(x.device.type),
                          torch.backends.cudnn.conv.fp32_precision,
                          torch.backends.cuda.matmul.fp32_precision))
        return self.net(x)


class EveryFourthPassWrong(nn.Module):
    """The classifier, except that every fourth forward pass returns its logits in reversed
    class order (wrong on every point of a two-class one-hot of ten, where class 1 is the
    label): of any 8 consecutive passes exactly 2 are wrong, so the mean over 8 draws is 6/8
    of what a right pass gets."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        z = self.net(x)
        return z.flip(1) if self.calls % 4 == 0 else z


def fragile_splits(n: int = 12, fragile: int = 5):
    """Validation data for WrongEveryFourthPass: two-class 4x4 images whose first pixel
    carries the class (y = i % 2) and whose second pixel marks the first `fragile` points."""
    from robench.data import DatasetSplits, Split
    from robench.data.splits import DatasetInfo
    x = torch.zeros(n, 3, 4, 4, dtype=torch.uint8)
    y = torch.arange(n) % 2
    x[:, 0, 0, 0] = (y * 255).to(torch.uint8)
    x[:fragile, 0, 0, 1] = 255
    info = DatasetInfo(name="digits", channels=3, image_size=4, num_classes=2,
                       mean=(0.0,) * 3, std=(1.0,) * 3, classes=("a", "b"), augment="none")
    split = Split(x, y)
    return DatasetSplits(info=info, train=split, val=split, test=split, description="planted")


def validation_config(precision: str = "fp32"):
    """A one-epoch config whose validation runs PGD (2 steps) and FGSM at eps 8/255 on CPU."""
    from robench.config import resolve
    cfg = resolve([{"validation": {"steps": 2, "eps": 8 / 255},
                    "runtime": {"device": "cpu", "precision": precision,
                                "eval_batch_size": 64}}])
    cfg.optim.epochs = 1
    return cfg
