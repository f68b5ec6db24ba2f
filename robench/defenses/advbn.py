"""Adversarial Batch Normalization (Shu et al., NeurIPS 2021): robustness to feature style.

What the authors do (methods.md, Seed 5): the network is cut after its first stage (ResNet
`layer1`). The features f of the batch there have per-channel statistics mu and sigma over
(N, H, W); two per-channel multipliers s_mu and s_sigma (1 x C x 1 x 1, shared by the batch,
starting at 1) restyle them into f_adv = relu((f - mu) * s_sigma + mu * s_mu), which has mean
mu * s_mu and standard deviation sigma * |s_sigma| before the ReLU. The multipliers are found
by PGD with the network in eval mode: 6 steps of s += 0.2 * sign(dCE/ds), each clamped to
[1 - 1.1, 1 + 1.1]; f_adv is then detached. Every BatchNorm after the cut has a clean and an
adversarial copy (the latter initialised from the former) while convolutions and the
classifier are shared, and the loss is CE(head_clean(f), y) + CE(head_adv(f_adv), y). At test
time nothing is perturbed and the clean BatchNorm runs. The authors fine-tune a trained model
(20 epochs, SGD lr 1e-3) with the stem and the first stage frozen.

The bound on the multipliers is called `bound` here, not `eps`: it is not a pixel budget, and
robench gives every unset `eps` the dataset's pixel budget. A bound above 1 (the authors' 1.1)
lets s_sigma go slightly negative, which mirrors a channel's deviations around its mean.

What robench interprets:
- The authors standardise with sigma = sqrt(var + 1e-5) and rescale to sigma * s_sigma;
  sigma cancels, so robench writes the cancelled form (f - mu) * s_sigma + mu * s_mu.
- The ReLU. methods.md's f is post-ReLU (a ResNet stage ends in one), and the ReLU after the
  restyling keeps f_adv in the range the head was trained on. Pre-activation nets
  (preactresnet18, wrn-*) end a stage in a residual sum of any sign, which the next block
  normalises and activates itself; there robench restyles the stage output as it is and
  applies no ReLU, which would clip features the head never sees clipped. The rule, checked
  per batch: the ReLU is applied when the batch's clean features are all non-negative.
- The split defaults to the arch's first stage (`stage_names[0]`: `layer1`, or `block1` for a
  WideResNet). "After the split" means the later stages and the head (e.g. the final BN of a
  pre-activation net); the stem's BatchNorm (ResNet `bn1`) is before it.
- `freeze` does what the authors' fine-tuning does to the stem and the stages up to the
  split: no gradient to their parameters, and every BatchNorm there in eval mode for good
  (a `FrozenBatchNorm2d`, which `model.train()` leaves in eval), so it normalises with its
  running statistics and never updates them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from robench.defenses.base import StepContext, StepOutput, register_defense
from robench.defenses.pgd_at import crafting, require
from robench.errors import UserError
from robench.models.base import StagedNet
from robench.models.layers import DualBatchNorm2d, FrozenBatchNorm2d, branch

WITH_BATCHNORM = "resnet18, preactresnet18, wrn-28-10, cnn or a vgg*_bn"


@dataclass
class AdvBNParams:
    split: str | None = None  # None: the arch's first stage (layer1; block1 for a WideResNet)
    steps: int = 6
    step_size: float = 0.2
    bound: float = 1.1  # multipliers stay in [1 - bound, 1 + bound]; not a pixel budget
    freeze: bool = False  # stem and stages up to the split: no gradient, BatchNorm in eval


def check(params: AdvBNParams) -> AdvBNParams:
    p = params
    require(p.steps >= 1, f"advbn.steps must be >= 1, got {p.steps}.")
    require(p.step_size > 0, f"advbn.step_size must be > 0, got {p.step_size}.")
    require(p.bound > 0, f"advbn.bound must be > 0 (the multipliers stay in "
                         f"[1 - bound, 1 + bound]), got {p.bound}.")
    return p


def staged_net(model: nn.Module) -> StagedNet:
    net = getattr(model, "net", None)
    if not isinstance(net, StagedNet) or not hasattr(model, "net_input"):
        raise UserError("advbn needs a robench model (a network with named stages) to split.")
    return net


def split_stage(model: nn.Module, params: AdvBNParams) -> str:
    """The stage after which the network is cut: `params.split`, else the first stage."""
    net = staged_net(model)
    if params.split is None:
        return net.stage_names[0]
    if params.split not in net.stage_names:
        raise UserError(f"advbn.split {params.split!r} is not a stage of "
                        f"{type(net).__name__}; stages: {', '.join(net.stage_names)}.")
    return params.split


def stem_modules(model: nn.Module) -> list[nn.Module]:
    """The modules `net.stem` runs, found by running it once on a small zero input.

    The stem is a method of the network, not a module, and families differ in what it uses
    (a ResNet's `bn1` is in its stem, a WideResNet's `bn1` in its head), so asking the stem is
    the one way that holds for every family. Eval mode and no_grad: nothing is recorded.
    """
    net = staged_net(model)
    called: list[nn.Module] = []
    hooks = [m.register_forward_pre_hook(lambda m, args: called.append(m))
             for m in net.modules() if m is not net]
    first = next(net.parameters())
    x = torch.zeros(2, model.normalize.mean.shape[1], 8, 8, device=first.device,
                    dtype=first.dtype)
    was_training = net.training
    try:
        net.eval()
        with torch.no_grad():
            net.stem(x)
    finally:
        for hook in hooks:
            hook.remove()
        net.train(was_training)
    return called


def before_split(model: nn.Module, split: str) -> list[nn.Module]:
    """The stem's modules and the stages up to and including `split`."""
    net = staged_net(model)
    stages = net.stage_names[: net.stage_names.index(split) + 1]
    return stem_modules(model) + [getattr(net, name) for name in stages]


def convert(model: nn.Module, params: AdvBNParams) -> nn.Module:
    """advbn's transform: dual BatchNorm after the split, and the freeze; in place.

    Every `nn.BatchNorm2d` of the later stages and the head becomes a `DualBatchNorm2d`
    holding the original as its clean branch, so the converted model computes exactly what
    it did; an arch with no BatchNorm there is refused (the method has nothing to train).
    """
    check(params)
    net = staged_net(model)
    split = split_stage(model, params)
    early = before_split(model, split)
    kept = {id(m) for part in early for m in part.modules()}
    converted = 0
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, nn.BatchNorm2d):
                continue
            if id(child) not in kept:
                setattr(parent, name, DualBatchNorm2d(child))
                converted += 1
            elif params.freeze:
                setattr(parent, name, FrozenBatchNorm2d.of(child))
    if not converted:
        raise UserError(f"advbn needs BatchNorm layers after its split point ({split}) and "
                        f"this {type(net).__name__} has none there; use an arch with "
                        f"BatchNorm such as {WITH_BATCHNORM}.")
    if params.freeze:
        for part in early:
            for p in part.parameters():
                p.requires_grad_(False)
    return model


def restyle(f: torch.Tensor, s_mu: torch.Tensor, s_sigma: torch.Tensor) -> torch.Tensor:
    """f with each channel's batch mean scaled by s_mu and its deviations by s_sigma.

    Statistics over (N, H, W); the result has per-channel mean mu * s_mu and standard
    deviation sigma * |s_sigma|. Before any ReLU (the caller decides on it).
    """
    mu = f.mean(dim=(0, 2, 3), keepdim=True)
    return (f - mu) * s_sigma + mu * s_mu


def attack_statistics(model: nn.Module, f: torch.Tensor, y: torch.Tensor, split: str,
                      params: AdvBNParams) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The restyled features that most raise the adversarial branch's CE: (f_adv, s_mu, s_sigma).

    PGD on the two multipliers from 1, signed steps, each clamped to [1 - bound, 1 + bound].
    The head runs in eval mode on the adversarial branch with its parameters frozen
    (`crafting`), so the attack writes no running statistics and no gradient; the model's
    mode, flags and route are restored. f_adv is detached and in f's dtype; the statistics
    are computed in float32.
    """
    p = params
    net = staged_net(model)
    f = f.detach()
    feats = f.float()
    relu = bool((feats >= 0).all())  # post-ReLU features stay non-negative (module docstring)
    lo, hi = 1.0 - p.bound, 1.0 + p.bound
    shape = (1, f.shape[1], 1, 1)
    s_mu = torch.ones(shape, device=f.device)
    s_sigma = torch.ones(shape, device=f.device)

    def features(s_mu: torch.Tensor, s_sigma: torch.Tensor) -> torch.Tensor:
        out = restyle(feats, s_mu, s_sigma)
        return (out.relu() if relu else out).to(f.dtype)

    with crafting(model, "eval"), branch(model, "adv"):
        for _ in range(p.steps):
            s_mu.requires_grad_(True)
            s_sigma.requires_grad_(True)
            logits = net.forward_from(features(s_mu, s_sigma), split)
            loss = F.cross_entropy(logits.float(), y)
            g_mu, g_sigma = torch.autograd.grad(loss, (s_mu, s_sigma))
            with torch.no_grad():
                s_mu = (s_mu + p.step_size * g_mu.sign()).clamp_(lo, hi)
                s_sigma = (s_sigma + p.step_size * g_sigma.sign()).clamp_(lo, hi)
    with torch.no_grad():
        f_adv = features(s_mu, s_sigma)
    return f_adv.detach(), s_mu.detach(), s_sigma.detach()


class AdvBNObjective:
    """CE of the clean branch on f plus CE of the adversarial branch on the restyled f.

    Training accuracy is reported on the clean branch (the one evaluated).
    """

    name = "advbn"

    def __init__(self, params: AdvBNParams):
        self.params = check(params)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 ctx: StepContext) -> StepOutput:
        net = staged_net(model)
        if not any(isinstance(m, DualBatchNorm2d) for m in model.modules()):
            raise UserError("advbn's objective needs the dual BatchNorm of advbn's transform; "
                            "train with --defense advbn.")
        split = split_stage(model, self.params)
        f = net.forward_to(model.net_input(x), split)
        f_adv, _, _ = attack_statistics(model, f, y, split, self.params)
        with branch(model, "clean"):
            logits = net.forward_from(f, split)
        with branch(model, "adv"):
            logits_adv = net.forward_from(f_adv, split)
        smoothing = ctx.label_smoothing
        loss = (F.cross_entropy(logits.float(), y, label_smoothing=smoothing)
                + F.cross_entropy(logits_adv.float(), y, label_smoothing=smoothing))
        return StepOutput(loss=loss, logits=logits)


register_defense(
    "advbn",
    "Adversarial BatchNorm: dual BN after the first stage, trained on clean features and on "
    "features restyled by PGD on their channel statistics (Shu et al. 2021)",
    params=AdvBNParams,
    transform=convert,
    objective=AdvBNObjective,
    finetune_recipe="advbn-finetune",
)
