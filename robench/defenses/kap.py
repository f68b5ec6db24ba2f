"""Kernel Average Pooling (Bashivan et al. 2022, arXiv 2210.00062): kernel ensembles by design.

The transform puts a `KernelAveragePool` after every convolution of the model, shortcut 1x1
convolutions included, so each conv -> BN -> ReLU becomes conv -> KAP -> BN -> ReLU (the
placement of the authors' CIFAR ResNet-18, applied by robench to every architecture). It adds
no parameters.

Training noise, robench's reading of the authors' code (methods.md, Seed 1): by default the
objective is CE on inputs with additive Gaussian noise of `input_sigma` (0.1), and the layers
add no noise. `noise` > 0 turns on the authors' activation noise inside every KAP layer, in
training and at test time; such a model is stochastic and robench evaluates it with EOT and
AutoAttack's 'rand' version. Composed with an objective-owning defense (`kap+pgd-at`), that
defense trains the model and `input_sigma` is unused.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from robench.defenses.base import register_defense
from robench.defenses.gaussian import GaussianObjective, GaussianParams
from robench.errors import UserError
from robench.models.layers import KernelAveragePool

FORMS = ("2d", "1d")


@dataclass
class KAPParams:
    kernel_size: int = 3
    form: str = "2d"  # "2d": channels on a near-square grid (authors' code); "1d": a line
    noise: float = 0.0  # activation noise in every KAP layer, also at test time
    input_sigma: float = 0.1  # Gaussian input noise of kap's own objective


def check(params: KAPParams) -> KAPParams:
    if params.kernel_size < 1 or params.kernel_size % 2 == 0:
        raise UserError(f"kap.kernel_size must be an odd number >= 1 (so the layer keeps the "
                        f"channel count), got {params.kernel_size}.")
    if params.form not in FORMS:
        raise UserError(f"kap.form {params.form!r} is not one of {', '.join(FORMS)}.")
    if not params.noise >= 0:
        raise UserError(f"kap.noise must be >= 0, got {params.noise}.")
    if not params.input_sigma >= 0:
        raise UserError(f"kap.input_sigma must be >= 0, got {params.input_sigma}.")
    return params


def insert_kap(model: nn.Module, params: KAPParams) -> nn.Module:
    """Every `nn.Conv2d` becomes `Sequential(conv, KAP)`, in place; the model is returned."""
    check(params)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Conv2d):
                kap = KernelAveragePool(child.out_channels, params.kernel_size, params.form,
                                        params.noise)
                setattr(parent, name, nn.Sequential(child, kap))
    return model


def kap_objective(params: KAPParams) -> GaussianObjective:
    return GaussianObjective(GaussianParams(sigma=check(params).input_sigma))


register_defense(
    "kap",
    "Kernel Average Pooling after every conv, trained on Gaussian-noise inputs "
    "(Bashivan et al. 2022)",
    params=KAPParams,
    transform=insert_kap,
    objective=kap_objective,
    objective_yields=True,
)
