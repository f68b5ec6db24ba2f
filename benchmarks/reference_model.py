"""A trained CIFAR-10 ResNet-18 that robench did not make, for the speed benchmarks.

Attack speed depends on the weights, not only the architecture: a trained network's
activations and gradients have other magnitudes (and, on a CPU, other denormal counts) than a
freshly initialised one. So the attack benchmarks run on a trained network defined and
trained here, in plain PyTorch, outside robench's model zoo and training engine: robench
attacks it as it would attack any user's model.

The network is the usual CIFAR ResNet-18 (3x3 stem, four stages of two basic blocks,
64-512 channels, global average pooling), with the input normalisation inside. It is trained
once (plain SGD, crop+flip, 3 epochs of 5,000 images of the shared CIFAR-10 copy: about 50 %
clean accuracy; bf16 autocast where the CPU has bf16 instructions, fp32 elsewhere) and kept
in $ROBENCH_CACHE (or ~/.cache/robench) as `bench-resnet18-<epochs>ep-<n>-<precision>
.safetensors`; later runs load it.
"""

from __future__ import annotations

import tarfile
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.skip = nn.Sequential()
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.b1(self.c1(x)))
        return F.relu(self.b2(self.c2(out)) + self.skip(x))


class ResNet18(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64),
                                  nn.ReLU())
        layers, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(self.stem((x - self.mean) / self.std))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def cifar(split: str, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Float images in [0, 1] and labels of the shared copy's `split` ("train" or "test"),
    `n` of them drawn by a fixed shuffle. The copy is unpacked once into the cache folder,
    so robench's decoded-image cache (keyed on the folder's path and files) is hit later."""
    from robench.data import load_dataset, to_float
    from robench.data.cache import cache_dir

    if not SHARED.is_file():
        raise SystemExit(f"the shared CIFAR-10 copy is not at {SHARED}")
    root = cache_dir() / "bench-cifar10"
    if not (root / "cifar10-jpeg" / "test").is_dir():
        partial = Path(tempfile.mkdtemp(dir=root.parent if root.parent.is_dir() else None))
        with tarfile.open(SHARED) as tar:
            tar.extractall(partial, filter="data")
        root.parent.mkdir(parents=True, exist_ok=True)
        partial.rename(root)
    splits = load_dataset(f"imagefolder:{root / 'cifar10-jpeg'}", val_size=0)
    part = splits.train if split == "train" else splits.test
    # The folder is class-ordered: a fixed shuffle, so the first n mix every class.
    order = torch.randperm(len(part.y), generator=torch.Generator().manual_seed(0))
    idx = order[: len(part.y) if n is None else n]
    return to_float(part.x[idx]), part.y[idx]


def _train(epochs: int, n_train: int, precision: str, device: torch.device) -> ResNet18:
    torch.manual_seed(0)
    x, y = cifar("train", n_train)
    x, y = x.to(device), y.to(device)
    net = ResNet18().to(device=device, memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4,
                          nesterov=True)
    steps = epochs * (len(y) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=steps)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(len(y)).to(device)
        for i in range(len(y) // 128):
            idx = order[i * 128:(i + 1) * 128]
            xb = F.pad(x[idx], (4, 4, 4, 4))
            dx, dy = torch.randint(0, 9, (2,)).tolist()
            xb = xb[:, :, dy:dy + 32, dx:dx + 32]
            if torch.rand(()) < 0.5:
                xb = xb.flip(3)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = F.cross_entropy(net(xb.contiguous(memory_format=torch.channels_last)),
                                       y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        print(f"reference ResNet-18: epoch {epoch + 1}/{epochs} loss {loss.item():.3f} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return net.eval()


def trained_resnet18(epochs: int = 3, n_train: int = 5000,
                     device: torch.device | str = "cpu") -> ResNet18:
    """The trained reference network in eval mode, contiguous layout, on the CPU, from the
    cache if there. On a GPU (`device`) it is trained there in bf16, in seconds rather than
    the minutes a CPU takes, and cached under its own name: a different network, so figures
    are compared only within one run."""
    from safetensors.torch import load_file, save_file

    from robench.data.cache import cache_dir
    from robench.runtime import cpu_has_bf16

    device = torch.device(device)
    on_gpu = device.type == "cuda"
    precision = "bf16" if on_gpu or cpu_has_bf16() else "fp32"
    where = "-cuda" if on_gpu else ""
    path = cache_dir() / f"bench-resnet18-{epochs}ep-{n_train}-{precision}{where}.safetensors"
    net = ResNet18()
    if path.is_file():
        net.load_state_dict(load_file(path))
    else:
        trained = _train(epochs, n_train, precision, device)
        state = {k: v.contiguous().cpu() for k, v in trained.state_dict().items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(state, path)
        net.load_state_dict(state)
    return net.eval()


if __name__ == "__main__":
    model = trained_resnet18()
    xt, yt = cifar("test", 1000)
    with torch.no_grad():
        print(f"clean accuracy on 1000 test images: "
              f"{(model(xt).argmax(1) == yt).float().mean():.2%}")
