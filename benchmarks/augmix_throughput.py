"""Seconds per image of the `augmix+clean` augmentation's AugMix half (torchvision, per image).

    python benchmarks/augmix_throughput.py [--images 2048] [--threads 1]

AugMix runs image by image on the CPU (one call on a batch would share its operations across
the batch), so its cost per CIFAR-10 epoch is this figure times 49,000 mixed images, whatever
the training device. Prints one line per round and the median.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from robench.augment import augment_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (args.images, 3, 32, 32), generator=gen).float().div(255)
    mixed = torch.ones(args.images, dtype=torch.bool)
    augment_batch(x[:8], "augmix+clean", gen, mixed=mixed[:8])  # imports and first calls
    per_image = []
    for r in range(args.rounds):
        t0 = time.perf_counter()
        augment_batch(x, "augmix+clean", gen, mixed=mixed)
        per_image.append((time.perf_counter() - t0) / args.images)
        print(f"round {r + 1}: {1000 * per_image[-1]:.3f} ms per image", flush=True)
    ms = 1000 * statistics.median(per_image)
    print(f"median {ms:.3f} ms per 32x32 image; {ms * 49000 / 1000:.0f} s per CIFAR-10 epoch "
          f"of 49,000 mixed images")


if __name__ == "__main__":
    main()
