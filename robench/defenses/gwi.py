"""Group-wise inhibition (Liu et al., ICCV 2021, arXiv 2103.02152; TENET in the authors' code).

The network is cut after one stage: A = F(x) is that stage's output (B x C x H x W) and
D(A) the rest of the network. After the loop's ordinary CE step, on the samples the model
classifies correctly:

1. an eval-mode pass gives A and the gradient G of L_d = sum_b sigmoid(z_b[y_b]) w.r.t. A;
2. each sample's C channels (vectors of H*W values) are clustered into K groups by k-means;
3. a group whose importance I_g = sum_{k in g} alpha_k (alpha_k = mean_hw G_k) is positive
   gets the mask sigmoid(-zscore(sum_{k in g} alpha_k A_k)), which pushes its most
   discriminative regions toward 0; a group with I_g <= 0 gets 1; every channel gets its
   group's mask, with no gradient through it;
4. a train-mode pass A' = F(x) then takes its own optimiser step on
   weight * CE(D(A' * mask), y) + orth_weight * L_orth, where L_orth is the mean |<P_i, P_j>|
   over pairs of non-empty groups' mean maps P_g, averaged over the samples.

The model has to find the class from the regions it relied on least, so it spreads its
evidence; nothing changes at test time. The update runs from iteration `start` (500) on,
every `every`-th (3) iteration.

The authors' parts: the layer, K = 6, 50 k-means iterations with centres
snapped to real channels, the mask and the orthogonality loss (with their 1e-8 in the
z-score and the population standard deviation), the weights 0.1 and 1e-3 and the schedule.

Robench's reading:
- The stage is the one before the last, the authors' rule from both of their models (CIFAR
  ResNeXt-29, whose stem they count as layer 1, so their `feature_id=3` of 4 is its second of
  three stages; ImageNet ResNet-50, layer3 of 4). So ResNet-18 and PreActResNet-18 use layer3,
  ResNeXt-29 and WRN stage 2 of 3, VGG layer4 of 5, AlexNet and the small CNN layer2 of 3. The
  last stage would leave only BN-ReLU-pool-fc after the mask on a 3-stage arch. An arch of a
  single stage uses it. `gwi.stage` names another.
- The stage output is used as it is: for pre-activation families (preactresnet, WRN) it is
  the residual sum, not a post-ReLU map.
- Correct samples are those the eval-mode pass classifies correctly after the CE step. (The
  authors reuse the CE step's train-mode logits from before its update; the eval pass is
  needed anyway, so robench spends no extra forward.) Fewer than two correct samples skip
  the update: a train-mode pass on one sample can break BatchNorm.
- k-means starts from K distinct channels chosen by k-means++ seeding, where the authors
  draw them uniformly: the centres are real channels either way, but a uniform draw often
  puts two centres in one cluster and leaves another without, which centres snapped to
  channels rarely leave. The draw comes from a generator seeded from the global CPU
  generator, which every checkpoint saves, so a resumed run clusters exactly as the
  uninterrupted one.
- k-means details the authors leave to chance: an empty group keeps its centre (their mean
  of an empty group is NaN); distances equal up to a relative 1e-4 count as a tie, won by
  the lowest index, so that float rounding (different on each device) decides nothing; the
  loop stops when no sample's centres move (their stop, a squared shift below 1e-4, is the
  same thing for centres that are channels), a fixed point, so stopping changes nothing.
  When a layer has fewer channels than groups, each channel is its own group.
- The CE of the inhibition step uses the run's label smoothing, as the authors use one loss
  function for both steps.

Why batched: the authors cluster each sample in turn, copying distances to the host for
NumPy at every iteration and looping in Python over samples, groups and iterations, so the
clustering grows with the batch and stalls the device. Robench clusters every sample of the
batch at once with batched matrix products on the model's device (a handful of kernels per
iteration, whatever the batch), so that the method costs little more than the two extra
passes it needs. robench's budget is 1.5x a standard step over a training run; measured:
1.32x over whole CIFAR-subset runs, 1.52-1.55x when every sample of a batch takes part
(benchmarks/README.md, "Seed defenses"; benchmarks/gwi_step_time.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from robench.defenses.base import StepContext, StepOutput, register_defense
from robench.defenses.kmeans import batched_kmeans
from robench.errors import UserError
from robench.models.base import StagedNet

ZSCORE_EPS = 1e-8  # the authors' guard in the z-score of a group's map


@dataclass
class GWIParams:
    stage: str | None = None  # None: the stage before the last (the authors' rule)
    groups: int = 6
    kmeans_iters: int = 50
    start: int = 500  # first iteration (0-based, counted over the whole run) with an update
    every: int = 3
    weight: float = 0.1  # on the CE of the inhibited features
    orth_weight: float = 1e-3  # on the orthogonality loss


def check(params: GWIParams) -> GWIParams:
    """Each wrong value is a one-sentence UserError naming `gwi.<key>`."""
    p = params
    if p.stage is not None and not str(p.stage).strip():
        raise UserError(f"gwi.stage must name a stage of the model, such as 'layer3', or be "
                        f"unset for the stage before the last; got {p.stage!r}.")
    if p.groups < 2:
        raise UserError(f"gwi.groups must be an integer >= 2 (channels are split into that "
                        f"many groups), got {p.groups}.")
    if p.kmeans_iters < 1:
        raise UserError(f"gwi.kmeans_iters must be an integer >= 1, got {p.kmeans_iters}.")
    if p.start < 0:
        raise UserError(f"gwi.start must be an iteration >= 0, got {p.start}.")
    if p.every < 1:
        raise UserError(f"gwi.every must be an integer >= 1 (1: every iteration), "
                        f"got {p.every}.")
    if not p.weight >= 0:
        raise UserError(f"gwi.weight must be a number >= 0, got {p.weight}.")
    if not p.orth_weight >= 0:
        raise UserError(f"gwi.orth_weight must be a number >= 0, got {p.orth_weight}.")
    return p


# ------------------------------------------------------------------------------------------
# The three pieces, each on a whole batch


def inhibition_mask(A: torch.Tensor, G: torch.Tensor, assignments: torch.Tensor,
                    k: int) -> torch.Tensor:
    """The multiplicative mask [B, C, H, W] (float32, detached) for features A with gradient G.

    Group g of a sample (the channels with assignment g) has importance I_g = sum of
    alpha_k = mean_hw G_k over its channels. I_g <= 0 (an empty group too): mask 1. Else
    M_g = sum alpha_k A_k over the group, z-scored over H*W (population std + 1e-8), and
    the mask is sigmoid(-z): where the group most supports the true class, the mask is
    smallest. Each channel carries its group's mask.
    """
    A, G = A.detach().float(), G.detach().float()
    b, c, h, w = A.shape
    alpha = G.mean(dim=(2, 3))  # [B, C]
    weighted = F.one_hot(assignments, k).float() * alpha.unsqueeze(2)  # [B, C, k]
    importance = weighted.sum(dim=1)  # [B, k]
    maps = torch.bmm(weighted.transpose(1, 2), A.reshape(b, c, h * w))  # [B, k, HW]
    mean = maps.mean(dim=2, keepdim=True)
    std = maps.std(dim=2, correction=0, keepdim=True)
    group_mask = torch.sigmoid(-(maps - mean) / (std + ZSCORE_EPS))
    group_mask = torch.where(importance.unsqueeze(2) > 0, group_mask, 1.0)
    index = assignments.unsqueeze(2).expand(b, c, h * w)
    return torch.gather(group_mask, 1, index).reshape(b, c, h, w)


def orthogonality_loss(A: torch.Tensor, assignments: torch.Tensor, k: int) -> torch.Tensor:
    """Mean over samples of the mean |<P_i, P_j>| over pairs i < j of non-empty groups.

    P_g is the mean map of group g's channels, flattened; a sample with fewer than two
    non-empty groups contributes 0. Differentiable in A; computed in float32.
    """
    b, c = A.shape[:2]
    flat = A.float().reshape(b, c, -1)
    onehot = F.one_hot(assignments, k).float()  # [B, C, k]
    counts = onehot.sum(dim=1)  # [B, k]
    means = torch.bmm(onehot.transpose(1, 2), flat) / counts.clamp_min(1).unsqueeze(2)
    gram = torch.bmm(means, means.transpose(1, 2)).abs()  # empty groups: rows of 0
    upper = torch.triu(gram, diagonal=1).sum(dim=(1, 2))
    n = (counts > 0).sum(dim=1).float()
    pairs = torch.where(n > 1, n * (n - 1) / 2, torch.ones_like(n))
    return (upper / pairs).mean()


# ------------------------------------------------------------------------------------------
# The objective


def split_stage(model: nn.Module, stage: str | None) -> tuple[StagedNet, str]:
    """The staged network inside a robench model and the stage to cut after."""
    net = getattr(model, "net", None)
    if not isinstance(net, StagedNet) or not hasattr(model, "net_input"):
        raise UserError(f"gwi needs a robench model whose network is cut into stages; "
                        f"got {type(model).__name__}.")
    names = net.stage_names
    if stage is None:
        return net, names[-2] if len(names) >= 2 else names[-1]
    if stage not in names:
        raise UserError(f"gwi.stage {stage!r} is not a stage of {type(net).__name__}; "
                        f"valid: {', '.join(names)}.")
    return net, stage


class GWIObjective:
    """CE on the batch (the loop's step), then the inhibition update in `after_step`."""

    def __init__(self, params: GWIParams):
        self.params = check(params)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 ctx: StepContext) -> StepOutput:
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=ctx.label_smoothing)
        return StepOutput(loss=loss, logits=logits)

    def due(self, iteration: int) -> bool:
        p = self.params
        return iteration >= p.start and (iteration - p.start) % p.every == 0

    def after_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   ctx: StepContext, optimizer: torch.optim.Optimizer) -> torch.Tensor | None:
        """The inhibition update when the schedule says so; its loss, or None if none ran."""
        prepared = self.prepare_second(model, x, y, ctx)
        if prepared is None:
            return None
        loss = self.second_loss(model, prepared, ctx)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def prepare_second(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                       ctx: StepContext, reduce=None) -> dict | None:
        """Steps 1-3 (no parameter gradient): the correct samples, groups and mask, or None
        when the update does not run.

        `reduce` sums a tensor over the processes of a distributed run: the update then runs
        on every process or on none (none when any process has fewer than two correct
        samples), and each process's loss is weighted by its share of the correct samples,
        so that the averaged gradient is that of the mean over all of them.
        """
        if not self.due(ctx.iteration):
            return None
        p = self.params
        was_training = model.training
        try:
            net, stage = split_stage(model, p.stage)
            x = x.detach()
            # 1. Eval mode: BatchNorm reads its running statistics and writes none, dropout
            # is off. Only G = dL_d/dA is asked for, so no parameter gradient is computed.
            model.eval()
            with torch.no_grad():
                A = net.forward_to(model.net_input(x), stage)
            A = A.detach().requires_grad_(True)
            with torch.enable_grad():
                z = net.forward_from(A, stage).float()
                support = torch.sigmoid(z).gather(1, y.unsqueeze(1)).sum()
                (G,) = torch.autograd.grad(support, A)
        finally:
            model.train(was_training)
        correct = (z.detach().argmax(dim=1) == y).nonzero().squeeze(1)
        scale = 1.0
        if reduce is None:
            if correct.numel() < 2:
                return None
        else:
            few, total, world = reduce(torch.tensor(
                [float(correct.numel() < 2), float(correct.numel()), 1.0], device=A.device))
            if few > 0:
                return None
            scale = float(correct.numel() * world / total)
        A, G, x, y = A.detach()[correct], G[correct], x[correct], y[correct]

        # 2-3. Groups and the mask, all samples at once on the model's device.
        k = min(p.groups, A.shape[1])
        seed = int(torch.randint(0, 2**62, (1,)))  # global CPU generator: saved by checkpoints
        gen = torch.Generator(device=A.device).manual_seed(seed)
        assignments = batched_kmeans(A.float().flatten(2), k, p.kmeans_iters, gen)
        mask = inhibition_mask(A, G, assignments, k)
        return {"x": x, "y": y, "assignments": assignments, "mask": mask, "k": k,
                "stage": stage, "scale": scale}

    def second_loss(self, model: nn.Module, prepared: dict, ctx: StepContext) -> torch.Tensor:
        """Step 4: the train-mode pass of the inhibited features and its loss."""
        p = self.params
        net, _ = split_stage(model, p.stage)
        x, y, stage = prepared["x"], prepared["y"], prepared["stage"]
        was_training = model.training
        model.train()
        try:
            with torch.enable_grad():
                A_train = net.forward_to(model.net_input(x), stage)
                # The mask in A's dtype and memory layout (channels-last stays channels-last).
                mask = torch.empty_like(A_train).copy_(prepared["mask"])
                logits = net.forward_from(A_train * mask, stage)
                ce = F.cross_entropy(logits.float(), y, label_smoothing=ctx.label_smoothing)
                orth = orthogonality_loss(A_train, prepared["assignments"], prepared["k"])
                loss = p.weight * ce + p.orth_weight * orth
            return loss * prepared["scale"] if prepared["scale"] != 1.0 else loss
        finally:
            model.train(was_training)


register_defense(
    "gwi",
    "Group-wise inhibition: a second step on correct samples with their most discriminative "
    "channel-group regions masked (Liu et al. 2021, TENET)",
    params=GWIParams,
    objective=GWIObjective,
)
