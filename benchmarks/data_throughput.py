"""The in-memory training pipeline's rate: augmented CIFAR-10 images per second.

    python benchmarks/data_throughput.py [--batch-size 128] [--rounds 5] [--device auto]

What `robench train` does per step before the model sees a batch, on the 50,000 decoded
uint8 training images of the shared CIFAR-10 copy (random uint8 images of the same shape
where it is absent): gather the batch's rows by the epoch's permutation, convert to float in
[0, 1], crop from the zero-padded image and flip (robench.augment, one gather for the whole
batch), and lay it out channels-last. One epoch of steps per round; the median of the
rounds, in images per second. AugMix is measured apart (augmix_throughput.py): it runs per
image on the CPU by design.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from robench.augment import augment_batch
from robench.data import to_float
from robench.runtime import resolve_device


def training_images() -> tuple[torch.Tensor, str]:
    try:
        from reference_model import SHARED

        if SHARED.is_file():
            from robench.data import load_dataset
            from robench.data.cache import cache_dir

            root = cache_dir() / "bench-cifar10" / "cifar10-jpeg"
            if root.is_dir():
                return load_dataset(f"imagefolder:{root}", val_size=0).train.x, "CIFAR-10"
    except ImportError:
        pass
    torch.manual_seed(0)
    return torch.randint(0, 256, (50_000, 3, 32, 32), dtype=torch.uint8), "random uint8"


def epoch(x: torch.Tensor, batch_size: int, generator: torch.Generator, device) -> int:
    order = torch.randperm(len(x), generator=generator).to(device)
    seen = 0
    for i in range(len(x) // batch_size):
        idx = order[i * batch_size:(i + 1) * batch_size]
        batch = augment_batch(to_float(x[idx]), "crop+flip", generator)
        batch = batch.contiguous(memory_format=torch.channels_last)
        seen += len(batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    x, source = training_images()
    x = x.to(device)
    generator = torch.Generator().manual_seed(0)
    rates = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        seen = epoch(x, args.batch_size, generator, device)
        rates.append(seen / (time.perf_counter() - t0))
    print(f"{source}, {len(x)} images on {device} ({torch.get_num_threads()} threads), batch "
          f"{args.batch_size}: median {statistics.median(rates):,.0f} augmented images/s "
          f"over {args.rounds} epochs (min {min(rates):,.0f}, max {max(rates):,.0f})")


if __name__ == "__main__":
    main()
