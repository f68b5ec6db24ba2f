"""Batched k-means over the channels of every sample at once, as group-wise inhibition uses it.

Each sample's C channels (vectors of H*W values) are clustered independently; the batch is
one tensor program, with k-means++ or random-channel seeding from a generator, so the groups
are reproducible from the seed and the same on any batch size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Distances this close (relative to the squared norms involved) count as a tie.
TIE_RTOL = 1e-4


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
