"""A target of a second's work: 12 one-channel 4x4 images of 3 classes, any model on them."""

import torch
from torch import nn

from robench import api
from robench.data import DatasetInfo, Split
from robench.records import ModelSource

N, CLASSES = 12, 3


def tiny_net() -> nn.Module:
    """A linear classifier of the 4x4 images, the same weights in every call."""
    gen = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, CLASSES))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return net


def tiny_target(run, model: nn.Module) -> api.Target:
    """`model` (in eval mode) on the tiny test split, its records under run/evals."""
    gen = torch.Generator().manual_seed(0)
    info = DatasetInfo(name="tiny", channels=1, image_size=4, num_classes=CLASSES,
                       mean=(0.5,), std=(0.25,), classes=("a", "b", "c"), augment="none")
    test = Split(torch.randint(0, 256, (N, 1, 4, 4), generator=gen, dtype=torch.uint8),
                 torch.arange(N) % CLASSES)
    return api.Target(model=model.eval(), info=info, test=test,
                      source=ModelSource(kind="external", arch="tiny", defense="none",
                                         weights_sha256="00" * 32),
                      evals_dir=run / "evals", label="tiny")


def tiny_cfg(**changes) -> api.EvalConfig:
    """FGSM at eps 0.1 on all 12 points, in blocks of 6 (two blocks: two shards)."""
    return api.EvalConfig(**{"attacks": ["fgsm"], "eps": ["0.1"], "n_examples": N,
                             "batch_size": 6, "device": "cpu", **changes})
