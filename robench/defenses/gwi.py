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
from robench.errors import UserError
from robench.models.base import StagedNet

ZSCORE_EPS = 1e-8  # the authors' guard in the z-score of a group's map
# k-means distances this close (relative to the squared norms involved) count as a tie.
TIE_RTOL = 1e-4


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


def _sq_norms(v: torch.Tensor) -> torch.Tensor:
    return (v * v).sum(-1)


def _sq_distances(points: torch.Tensor, centres: torch.Tensor,
                  sq_points: torch.Tensor, sq_centres: torch.Tensor) -> torch.Tensor:
    """||points_i - centres_j||^2 for every pair: [B, N, D] x [B, M, D] -> [B, N, M].

    The expanded form |p|^2 + |c|^2 - 2 <p, c> is one batched matrix product instead of a
    [B, N, M, D] difference; the squared norms ([B, N], [B, M]) are passed in because the
    channels' are the same in every iteration.
    """
    cross = torch.bmm(points, centres.transpose(1, 2))
    return (sq_points.unsqueeze(2) + sq_centres.unsqueeze(1) - 2 * cross).clamp_min_(0)


def _nearest_sets(dist: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Which entries of the last dim are nearest, ties included (bool, dist's shape).

    A tie is a distance within TIE_RTOL * scale (the squared norms involved) of the smallest.
    Exact ties are common (a group of two has its mean halfway between them; dead channels
    are equal) and float rounding, which differs between devices and summation orders, would
    otherwise decide them.
    """
    return dist <= dist.amin(dim=-1, keepdim=True) + TIE_RTOL * scale


def _first_nearest(dist: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """argmin over the last dim, ties (see `_nearest_sets`) going to the lowest index."""
    return _nearest_sets(dist, scale).to(torch.uint8).argmax(dim=-1)


def random_channels(batch: int, channels: int, k: int,
                    generator: torch.Generator | None = None,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """k distinct channel indices per sample, uniformly at random: [batch, k] (long).

    The authors' initialisation, kept for comparison (`batched_kmeans(..., init=...)`).
    Drawn on the generator's device (the CPU for none) and moved to `device`.
    """
    where = generator.device if generator is not None else torch.device("cpu")
    keys = torch.rand(batch, channels, generator=generator, device=where)
    return keys.argsort(dim=1)[:, :k].to(device if device is not None else where)


def kmeans_plus_plus(features: torch.Tensor, k: int,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """k distinct channels per sample by k-means++ seeding: [B, C, D] -> indices [B, k].

    The first centre is uniform; each next one is drawn with probability proportional to
    the squared distance to the nearest centre so far. When every channel not yet taken
    lies on a centre (dead channels are all zero, so this happens), the draw is uniform
    over those channels, which keeps the k indices distinct. Drawn on the generator's device.

    Each draw is an exponential race, argmax_i w_i / E_i with E_i ~ Exp(1) (the winner is i
    with probability w_i / sum w), from uniforms drawn for all k rounds at once: one call to
    the generator instead of k calls to `torch.multinomial`, whose set-up costs more than
    the whole clustering on a small network.
    """
    b, c, _ = features.shape
    where = generator.device if generator is not None else torch.device("cpu")
    rows = torch.arange(b, device=features.device)
    uniforms = torch.rand(k, b, c, generator=generator, device=where)
    races = (-uniforms.clamp_min_(1e-30).log_()).to(features.device)  # Exp(1), never 0

    def draw(weights: torch.Tensor) -> torch.Tensor:
        return (weights.float() / races[len(chosen)]).argmax(dim=1)

    sq = _sq_norms(features)
    taken = torch.zeros(b, c, dtype=torch.bool, device=features.device)
    chosen: list[torch.Tensor] = []
    nearest = torch.ones(b, c, dtype=features.dtype, device=features.device)
    for _ in range(k):
        weights = nearest.masked_fill(taken, 0)
        weights = torch.where(weights.sum(1, keepdim=True) > 0, weights,
                              (~taken).to(weights.dtype))
        pick = draw(weights)
        taken[rows, pick] = True
        chosen.append(pick)
        new = _sq_distances(features, features[rows, pick].unsqueeze(1), sq,
                            sq[rows, pick].unsqueeze(1)).squeeze(2)
        nearest = new if len(chosen) == 1 else torch.minimum(nearest, new)
    return torch.stack(chosen, dim=1)


def _snap(means: torch.Tensor, features: torch.Tensor, sq_features: torch.Tensor) -> torch.Tensor:
    """Each centre becomes the nearest real channel not taken by a lower-numbered centre.

    The authors' greedy order (centre 0 first) keeps the K centres distinct channels. When
    no channel is among the nearest (ties included) of two centres, the common case, no
    centre's nearest can be taken by another, and the greedy order picks exactly each
    centre's own nearest: one pass instead of K.
    """
    sq_means = _sq_norms(means)
    dist = _sq_distances(means, features, sq_means, sq_features)  # [B, K, C]
    scale = sq_means + sq_features.amax(-1, keepdim=True)  # [B, K]
    nearest = _nearest_sets(dist, scale.unsqueeze(2))  # [B, K, C]
    if int(nearest.sum(dim=1).amax()) <= 1:  # the centres' sets of nearest are disjoint
        return nearest.to(torch.uint8).argmax(dim=-1)  # the lowest index of each set
    taken = torch.zeros(dist.shape[0], dist.shape[2], dtype=torch.bool, device=dist.device)
    chosen = []
    for j in range(dist.shape[1]):
        d = dist[:, j].masked_fill(taken, float("inf"))
        pick = _first_nearest(d, scale[:, j:j + 1])
        taken.scatter_(1, pick.unsqueeze(1), True)
        chosen.append(pick)
    return torch.stack(chosen, dim=1)


def batched_kmeans(features: torch.Tensor, k: int, iters: int = 50,
                   generator: torch.Generator | None = None,
                   init: torch.Tensor | None = None) -> torch.Tensor:
    """Cluster each sample's C vectors into k groups: [B, C, D] -> assignments [B, C] (long).

    Squared Euclidean k-means whose centres are real channels, every sample at once. From
    k distinct channels (`init` [B, k], else drawn by `kmeans_plus_plus` from `generator`),
    each iteration assigns every channel to its nearest centre, takes each group's mean (an
    empty group keeps its centre) and snaps it to the nearest channel not taken by a
    lower-numbered centre; a tie, up to TIE_RTOL of the squared norms, goes to the lowest
    index. The assignments returned are those of the last iteration, made against the
    centres it started from (as the authors' code returns). Once no sample's centres move,
    every further iteration would repeat the last one, so the loop stops there. Distances
    are computed in the features' dtype.
    """
    b, c, _ = features.shape
    if not 1 <= k <= c:
        raise ValueError(f"k must be between 1 and the number of vectors ({c}), got {k}")
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    idx = (kmeans_plus_plus(features, k, generator) if init is None
           else init.to(features.device, torch.long))
    rows = torch.arange(b, device=features.device).unsqueeze(1)
    sq = _sq_norms(features)  # [B, C]
    for _ in range(iters):
        centres, sq_centres = features[rows, idx], sq[rows, idx]  # [B, k, D], [B, k]
        dist = _sq_distances(features, centres, sq, sq_centres)  # [B, C, k]
        assign = _first_nearest(dist, (sq + sq_centres.amax(-1, keepdim=True)).unsqueeze(2))
        onehot = F.one_hot(assign, k).to(features.dtype)  # [B, C, k]
        counts = onehot.sum(dim=1).unsqueeze(2)  # [B, k, 1]
        sums = torch.bmm(onehot.transpose(1, 2), features)
        means = torch.where(counts > 0, sums / counts.clamp_min(1), centres)
        new_idx = _snap(means, features, sq)
        if torch.equal(new_idx, idx):
            break
        idx = new_idx
    return assign


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
        if not self.due(ctx.iteration):
            return None
        was_training = model.training
        try:
            return self._update(model, x.detach(), y, ctx, optimizer)
        finally:
            model.train(was_training)

    def _update(self, model, x, y, ctx, optimizer) -> torch.Tensor | None:
        p = self.params
        net, stage = split_stage(model, p.stage)

        # 1. Eval mode: BatchNorm reads its running statistics and writes none, dropout is
        # off. Only G = dL_d/dA is asked for, so no parameter gradient is computed or kept.
        model.eval()
        with torch.no_grad():
            A = net.forward_to(model.net_input(x), stage)
        A = A.detach().requires_grad_(True)
        with torch.enable_grad():
            z = net.forward_from(A, stage).float()
            support = torch.sigmoid(z).gather(1, y.unsqueeze(1)).sum()
            (G,) = torch.autograd.grad(support, A)
        correct = (z.detach().argmax(dim=1) == y).nonzero().squeeze(1)
        if correct.numel() < 2:
            return None
        A, G, x, y = A.detach()[correct], G[correct], x[correct], y[correct]

        # 2-3. Groups and the mask, all samples at once on the model's device.
        k = min(p.groups, A.shape[1])
        seed = int(torch.randint(0, 2**62, (1,)))  # global CPU generator: saved by checkpoints
        gen = torch.Generator(device=A.device).manual_seed(seed)
        assignments = batched_kmeans(A.float().flatten(2), k, p.kmeans_iters, gen)
        mask = inhibition_mask(A, G, assignments, k)

        # 4. Train mode: the inhibited features through the rest, and its own step.
        model.train()
        with torch.enable_grad():
            A_train = net.forward_to(model.net_input(x), stage)
            # The mask in A's dtype and memory layout (channels-last stays channels-last).
            logits = net.forward_from(A_train * torch.empty_like(A_train).copy_(mask), stage)
            ce = F.cross_entropy(logits.float(), y, label_smoothing=ctx.label_smoothing)
            loss = p.weight * ce + p.orth_weight * orthogonality_loss(A_train, assignments, k)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()


register_defense(
    "gwi",
    "Group-wise inhibition: a second step on correct samples with their most discriminative "
    "channel-group regions masked (Liu et al. 2021, TENET)",
    params=GWIParams,
    objective=GWIObjective,
)
