"""Group-wise inhibition (gwi) against its specification (methods.md, Seed 3).

The mask, the orthogonality loss and k-means are each recomputed here by a plain per-sample
loop written from the specification (tests/gwi_reference.py), and the two must agree to
float rounding; the whole update is in test_gwi_update.py.
"""

from __future__ import annotations

import pytest
import torch
from gwi_reference import objective, reference_kmeans, reference_mask, reference_orthogonality

from robench import api
from robench.defenses import resolve_defense
from robench.defenses.gwi import GWIObjective, inhibition_mask, orthogonality_loss
from robench.defenses.kmeans import batched_kmeans, kmeans_plus_plus, random_channels
from robench.errors import UserError
from robench.registry import DEFENSES

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------
# The mask


def test_mask_equals_the_per_group_computation():
    torch.manual_seed(0)
    A = torch.rand(2, 6, 3, 3)
    assignments = torch.tensor([[0, 0, 1, 1, 2, 2], [2, 0, 0, 0, 1, 2]])
    sign = torch.tensor([[1.0, 1, -1, -1, 1, -0.2], [1, 0.5, 1, 1, -1, 1]])
    G = (torch.rand(2, 6, 3, 3) + 0.1) * sign[:, :, None, None]
    A.requires_grad_(True)
    mask = inhibition_mask(A, G, assignments, 3)
    expected = reference_mask(A.detach(), G, assignments, 3)
    assert not mask.requires_grad
    assert mask.shape == A.shape
    assert torch.allclose(mask, expected, rtol=1e-5, atol=1e-6)
    # Group 0 of sample 0 is important: its mask is lowest where sum alpha_k A_k is highest.
    alpha = G[0, :2].mean(dim=(1, 2))
    m = (alpha[:, None, None] * A[0, :2].detach()).sum(0)
    assert mask[0, 0].flatten().argmin() == m.flatten().argmax()
    assert torch.equal(mask[0, 0], mask[0, 1])  # every channel of a group gets its mask
    assert (mask[0, 0] < 1).all()


def test_groups_with_non_positive_importance_get_mask_exactly_one():
    A = torch.rand(1, 5, 4, 4)
    G = torch.zeros(1, 5, 4, 4)
    G[0, 0], G[0, 1] = 0.5, -0.5  # group 0: importance exactly 0
    G[0, 2] = -0.3  # group 1: negative
    G[0, 3], G[0, 4] = 0.2, 0.1  # group 2: positive
    assignments = torch.tensor([[0, 0, 1, 2, 2]])
    mask = inhibition_mask(A, G, assignments, 4)  # group 3 is empty
    assert torch.equal(mask[0, :3], torch.ones(3, 4, 4))
    assert not torch.equal(mask[0, 3:], torch.ones(2, 4, 4))


def test_a_flat_group_map_gives_the_neutral_mask():
    """z-score of a constant map is 0 (the 1e-8 guards the division): mask 1/2 everywhere."""
    A = torch.ones(1, 2, 3, 3)
    G = torch.ones(1, 2, 3, 3)
    mask = inhibition_mask(A, G, torch.tensor([[0, 0]]), 2)
    assert torch.allclose(mask, torch.full_like(mask, 0.5))


# ------------------------------------------------------------------------------------------
# The orthogonality loss


def test_orthogonality_loss_equals_its_formula_with_its_gradient():
    torch.manual_seed(1)
    A = torch.randn(4, 7, 2, 3, requires_grad=True)
    assignments = torch.tensor([
        [0, 1, 2, 3, 4, 5, 0],  # every group
        [1, 1, 4, 4, 4, 1, 1],  # two groups, four empty
        [2, 2, 2, 2, 2, 2, 2],  # one group: no pair, contributes 0
        [5, 0, 5, 3, 0, 3, 5],
    ])
    loss = orthogonality_loss(A, assignments, 6)
    (grad,) = torch.autograd.grad(loss, A)
    B = A.detach().clone().requires_grad_(True)
    expected = reference_orthogonality(B, assignments, 6)
    (expected_grad,) = torch.autograd.grad(expected, B)
    assert loss.dim() == 0
    assert torch.allclose(loss, expected, rtol=1e-5, atol=1e-7)
    assert torch.allclose(grad, expected_grad, rtol=1e-5, atol=1e-7)
    single = orthogonality_loss(A[2:3], assignments[2:3], 6)
    assert single.item() == 0.0


# ------------------------------------------------------------------------------------------
# k-means


def test_batched_kmeans_matches_the_per_sample_reference():
    torch.manual_seed(2)
    X = torch.randn(6, 24, 5, dtype=torch.float64)
    X[:, 3:7] = 0  # dead channels: equal vectors, ties and empty groups
    X[1, 10:14] = X[1, 2]
    equal_centres = torch.tensor([[2, 10, 3, 4]]).expand(6, 4)  # sample 1: two groups empty
    for init in (kmeans_plus_plus(X, 4, torch.Generator().manual_seed(0)),
                 random_channels(6, 24, 4, torch.Generator().manual_seed(1)), equal_centres):
        for iters in (1, 2, 50):
            got = batched_kmeans(X, 4, iters, init=init)
            expected = torch.stack([reference_kmeans(X[b], 4, iters, init[b])
                                    for b in range(6)])
            assert torch.equal(got, expected), (iters, init)


def test_batched_kmeans_matches_the_reference_when_centres_want_the_same_channel():
    """In a few of 400 samples of 10 random channels two group means are nearest to one
    channel, so snapping must take the greedy order there; a 3-value grid adds exact ties."""
    torch.manual_seed(0)
    for X in (torch.randn(400, 10, 2, dtype=torch.float64),
              torch.randint(0, 3, (16, 24, 3)).double()):
        init = kmeans_plus_plus(X, 5, torch.Generator().manual_seed(0))
        for iters in (2, 50):
            got = batched_kmeans(X, 5, iters, init=init)
            expected = torch.stack([reference_kmeans(X[b], 5, iters, init[b])
                                    for b in range(len(X))])
            assert torch.equal(got, expected), iters


def test_centres_stay_distinct_channels_so_no_group_is_empty():
    """With distinct channel vectors each centre's own channel joins its group, so every one
    of the k groups is used, at every number of iterations, only if no two centres coincide."""
    torch.manual_seed(4)
    X = torch.randn(64, 12, 2, dtype=torch.float64)
    init = random_channels(64, 12, 6, torch.Generator().manual_seed(0))
    for iters in (1, 2, 3, 50):
        got = batched_kmeans(X, 6, iters, init=init)
        assert all(len(set(row.tolist())) == 6 for row in got), iters


def test_batched_kmeans_seeds_with_kmeans_plus_plus_from_the_generator():
    X = torch.randn(3, 20, 4)
    got = batched_kmeans(X, 5, 50, torch.Generator().manual_seed(7))
    init = kmeans_plus_plus(X, 5, torch.Generator().manual_seed(7))
    assert torch.equal(got, batched_kmeans(X, 5, 50, init=init))
    assert torch.equal(got, batched_kmeans(X, 5, 50, torch.Generator().manual_seed(7)))


def test_batched_kmeans_recovers_well_separated_clusters():
    torch.manual_seed(3)
    batch, groups, per, dim = 8, 6, 5, 12
    truth = torch.stack([torch.randperm(groups * per) % groups for _ in range(batch)])
    centres = 10 * torch.randn(batch, groups, dim)
    X = centres[torch.arange(batch)[:, None], truth] + 0.05 * torch.randn(batch, groups * per,
                                                                            dim)
    got = batched_kmeans(X, groups, 50, torch.Generator().manual_seed(0))
    same_truth = truth[:, :, None] == truth[:, None, :]
    same_found = got[:, :, None] == got[:, None, :]
    assert torch.equal(same_found, same_truth)


def test_kmeans_plus_plus_draws_the_next_centre_in_proportion_to_its_squared_distance():
    """Four 1-D channels at 0, 1, 2, 4 in 8,000 samples: the first centre is uniform, the
    second j given the first i has probability (x_j - x_i)^2 / sum_l (x_l - x_i)^2."""
    n, values = 8000, torch.tensor([0.0, 1.0, 2.0, 4.0])
    X = values.view(1, 4, 1).expand(n, 4, 1).contiguous()
    picks = kmeans_plus_plus(X, 2, torch.Generator().manual_seed(0))
    first, second = picks[:, 0], picks[:, 1]
    sq = (values[None, :] - values[:, None]) ** 2  # [i, j]
    expected = 0.25 * sq / sq.sum(dim=1, keepdim=True)  # P(first = i, second = j)
    observed = torch.zeros(4, 4)
    observed.index_put_((first, second), torch.ones(n), accumulate=True)
    observed /= n
    sd = (expected * (1 - expected) / n).sqrt()
    assert (observed - expected).abs().max() <= (5 * sd).max()
    assert torch.all(observed[torch.arange(4), torch.arange(4)] == 0)  # never the same one


def test_kmeans_plus_plus_gives_distinct_channels_even_when_all_are_equal():
    X = torch.zeros(4, 9, 3)
    X[1] = torch.randn(9, 3)
    init = kmeans_plus_plus(X, 6, torch.Generator().manual_seed(0))
    assert init.shape == (4, 6)
    assert all(len(set(row.tolist())) == 6 for row in init)
    assert batched_kmeans(X, 6, 50, torch.Generator().manual_seed(0)).shape == (4, 9)


def test_kmeans_refuses_more_groups_than_channels():
    with pytest.raises(ValueError, match="k must be between 1"):
        batched_kmeans(torch.randn(1, 3, 2), 4, 10)


# ------------------------------------------------------------------------------------------
# Parameters, registration, a run


@pytest.mark.parametrize("key,value", [
    ("groups", 1), ("kmeans_iters", 0), ("start", -1), ("every", 0), ("weight", -0.1),
    ("orth_weight", -1.0), ("stage", " "),
])
def test_bad_parameters_are_one_sentence_user_errors_naming_the_key(key, value):
    with pytest.raises(UserError) as info:
        objective(**{key: value})
    message = str(info.value)
    assert message.startswith(f"gwi.{key} ")
    assert (repr(value) if isinstance(value, str) else str(value)) in message
    assert message.endswith(".") and "\n" not in message
    assert message.count(". ") == 0


def test_gwi_is_registered_and_owns_the_objective():
    assert "gwi" in DEFENSES
    defense = resolve_defense("gwi")
    assert defense.objective_owner == "gwi"
    assert isinstance(defense.objective, GWIObjective)
    assert defense.params_dict() == {"gwi": {
        "stage": None, "groups": 6, "kmeans_iters": 50, "start": 500, "every": 3,
        "weight": 0.1, "orth_weight": 1e-3}}


def test_a_gwi_run_trains_and_its_model_loads(tmp_path, monkeypatch):
    updates = []
    update = GWIObjective.after_step

    def counting(self, *args):
        loss = update(self, *args)
        updates.append(loss is not None)
        return loss

    monkeypatch.setattr(GWIObjective, "after_step", counting)
    cfg, _ = api.resolve_config([{
        "data": {"dataset": "digits", "train_subset": 192},
        "optim": {"epochs": 1, "batch_size": 64},
        "runtime": {"device": "cpu"},
        "defenses": {"gwi": {"start": 0, "every": 1}},
        "defense": "gwi",
    }])
    result = api.train(cfg, out=tmp_path, quiet=True)
    assert len(updates) == 3 and any(updates)
    model, loaded = api.load_run_model(result.run_dir)
    assert loaded.defense == "gwi"
    assert loaded.defenses["gwi"]["start"] == 0
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)
