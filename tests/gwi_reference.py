"""The gwi tests' references, written from the specification (methods.md, Seed 3) one sample
and one group at a time, and the objective they are compared with."""

from __future__ import annotations

import itertools
import math

import torch

from robench.defenses import resolve_defense
from robench.defenses.gwi import GWIObjective


def objective(**params) -> GWIObjective:
    return resolve_defense("gwi", {"gwi": params}).objective



def reference_mask(A, G, assignments, k):
    mask = torch.ones_like(A)
    for b in range(A.shape[0]):
        for g in range(k):
            members = (assignments[b] == g).nonzero().flatten().tolist()
            if not members:
                continue
            alpha = [G[b, c].mean() for c in members]
            if sum(alpha) <= 0:
                continue
            m = sum(a * A[b, c] for a, c in zip(alpha, members, strict=True))
            spread = math.sqrt(((m - m.mean()) ** 2).mean().item())
            z = (m - m.mean()) / (spread + 1e-8)
            for c in members:
                mask[b, c] = 1 / (1 + torch.exp(z))
    return mask


def reference_orthogonality(A, assignments, k):
    total = 0.0
    for b in range(A.shape[0]):
        P = [A[b, assignments[b] == g].mean(0).flatten() for g in range(k)
             if (assignments[b] == g).any()]
        pairs = list(itertools.combinations(range(len(P)), 2))
        if pairs:
            total = total + sum(torch.dot(P[i], P[j]).abs() for i, j in pairs) / len(pairs)
    return total / A.shape[0]


def first_nearest(dist, p, candidates):
    """The lowest index whose distance is within 1e-4 (|p|^2 + max |c|^2) of the smallest."""
    tolerance = 1e-4 * ((p**2).sum() + max((c**2).sum() for c in candidates))
    best = min(dist)
    return next(i for i, d in enumerate(dist) if d <= best + tolerance)


def reference_kmeans(X, k, iters, start):
    """One sample: X [C, D]; centres snapped to the nearest channel no earlier centre took."""
    centres = [int(i) for i in start]
    for _ in range(iters):
        assign = torch.tensor([
            first_nearest([((x - X[j]) ** 2).sum() for j in centres], x, X[centres])
            for x in X])
        snapped: list[int] = []
        for g in range(k):
            members = X[assign == g]
            mean = members.mean(0) if len(members) else X[centres[g]]
            dist = [math.inf if c in snapped else ((X[c] - mean) ** 2).sum()
                    for c in range(len(X))]
            snapped.append(first_nearest(dist, mean, X))
        if snapped == centres:
            break
        centres = snapped
    return assign
