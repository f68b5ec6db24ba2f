"""What the gradient-attack tests share: the attacks, norms and budgets they sweep, and the
digits CNN they attack."""

from __future__ import annotations

from torch import nn

from robench.models import create_model

ATTACKS = ("fgsm", "pgd", "cw", "gaussian")
NORMS = ("Linf", "L2")
EPS = {"Linf": 0.2, "L2": 1.0}


def digits_cnn(digits) -> nn.Module:
    info = digits.info
    return create_model("cnn", in_channels=1, num_classes=10, image_size=8, mean=info.mean,
                        std=info.std)

