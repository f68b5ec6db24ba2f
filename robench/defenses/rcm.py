"""Larger feature maps before global average pooling (Xu et al., arXiv 2202.12435; RCM code).

Two changes, each leaving the attack budget on the original [0, 1] image:
- strides: fewer downsampling steps, set through the architecture's stride string (one digit
  per stage; ResNet/PreActResNet 1222 -> 1122, VGG 22222 -> 11222, AlexNet 2222 -> 1122, and
  robench's own choice for archs the paper does not cover: WideResNet 122 -> 112, cnn 12 -> 11);
- scale: the normalised input interpolated by `scale` inside the model, before the network.
The default is the stride change alone, the configuration the paper's tables lead with;
`rcm.scale=2` with the arch's baseline strides (`--strides 1222`) is the upsampling variant.
Neither adds a parameter. RCM owns no objective: `rcm+pgd-at` and `rcm+trades` are how the
paper trains it; plain `rcm` trains with standard cross-entropy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import nn

from robench.defenses.base import register_defense
from robench.errors import UserError
from robench.models.layers import Upsample
from robench.registry import ARCHS

MODES = ("nearest", "bilinear", "bicubic", "area")


@dataclass
class RCMParams:
    strides: str | None = None  # None: --strides if given, else the arch's RCM configuration
    scale: int = 1  # input upsampling factor inside the model (2 in the paper's variant)
    mode: str = "nearest"


def _check(params: RCMParams) -> None:
    if params.scale < 1:
        raise UserError(f"rcm.scale must be an integer >= 1 (1: no upsampling), "
                        f"got {params.scale}.")
    if params.mode not in MODES:
        raise UserError(f"rcm.mode {params.mode!r} is not one of {', '.join(MODES)}.")


def choose_strides(params: RCMParams, model_cfg) -> RCMParams:
    """Fill rcm.strides and the model's strides with one agreed value, or refuse a conflict."""
    _check(params)
    chosen = params.strides if params.strides is not None else model_cfg.strides
    if chosen is None:
        chosen = ARCHS.entry(model_cfg.arch).meta.get("rcm_strides")
        if chosen is None:
            raise UserError(f"rcm has no stride configuration for arch {model_cfg.arch!r}; "
                            f"set one with rcm.strides=<digits> or --strides.")
    chosen = str(chosen)
    if model_cfg.strides is not None and str(model_cfg.strides) != chosen:
        raise UserError(f"--strides {model_cfg.strides} conflicts with rcm.strides={chosen}; "
                        f"give the stride configuration once.")
    model_cfg.strides = chosen
    return replace(params, strides=chosen)


def upsample_input(model: nn.Module, params: RCMParams) -> nn.Module:
    _check(params)
    if params.scale > 1:
        model.resize = Upsample(params.scale, params.mode)
    return model


register_defense(
    "rcm",
    "Larger feature maps before average pooling: fewer strides and/or input upsampling "
    "inside the model (Xu et al. 2022)",
    params=RCMParams,
    transform=upsample_input,
    configure_model=choose_strides,
)
