"""Group-wise inhibition (gwi) against its specification (methods.md, Seed 3).

The mask, the orthogonality loss and k-means are each recomputed here by a plain per-sample
loop written from the specification; the whole inhibition update is recomputed step by step
on a copy of the model. The two must agree to float rounding.
"""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robench import api
from robench.data import load_dataset
from robench.defenses import StepContext, gwi, resolve_defense
from robench.defenses.gwi import (
    GWIObjective,
    GWIParams,
    inhibition_mask,
    orthogonality_loss,
    split_stage,
)
from robench.defenses.kmeans import batched_kmeans, kmeans_plus_plus, random_channels
from robench.errors import UserError
from robench.models import StagedNet, create_model
from robench.models.layers import Classifier, Normalize
from robench.registry import DEFENSES

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    train = load_dataset("digits").train
    return train.x[:32].float(), train.y[:32]


def digits_model() -> nn.Module:
    torch.manual_seed(0)
    return create_model("cnn", in_channels=1, num_classes=10, image_size=8, mean=(0.3,),
                        std=(0.37,)).train()


def eval_predictions(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    was = model.training
    model.eval()
    with torch.no_grad():
        pred = model(x).argmax(1)
    model.train(was)
    return pred


def controlled_labels(model, x, wrong_every: int | None = None) -> torch.Tensor:
    """Labels the model (eval mode) gets right, except every `wrong_every`-th sample."""
    y = eval_predictions(model, x)
    if wrong_every is not None:
        y[::wrong_every] = (y[::wrong_every] + 1) % 10
    return y


def objective(**params) -> GWIObjective:
    return resolve_defense("gwi", {"gwi": params}).objective


def ctx(iteration: int, smoothing: float = 0.0) -> StepContext:
    return StepContext(epoch=1, iteration=iteration, label_smoothing=smoothing)


# ------------------------------------------------------------------------------------------
# References written from the specification, one sample and one group at a time


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
# The update


def test_the_loss_of_the_loop_step_is_plain_cross_entropy(digits):
    x, y = digits
    model = digits_model()
    out = objective()(model, x, y, ctx(0, 0.1))
    assert torch.equal(out.logits, model(x))
    assert torch.allclose(out.loss, F.cross_entropy(out.logits, y, label_smoothing=0.1))


def test_the_update_is_the_specified_step_on_correct_samples_only(digits, monkeypatch):
    """Eval-mode gradient, masks of the correct samples, then 0.1 CE + 1e-3 L_orth in train
    mode and one SGD step, recomputed here with the groups fixed (channel c in group c % 6)."""
    x, y = digits
    model = digits_model()
    y = controlled_labels(model, x, wrong_every=4)
    seen = []

    def fixed_groups(features, k, iters, generator=None, init=None):
        seen.append(features.shape)
        return torch.arange(features.shape[1]).remainder(k).expand(features.shape[:2])

    monkeypatch.setattr(gwi, "batched_kmeans", fixed_groups)
    reference = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss = objective(start=0, every=1).after_step(model, x, y, ctx(0, 0.1), optimizer)

    net, stage = reference.net, "layer2"  # the cnn's stage before the last
    reference.eval()
    A = net.forward_to(reference.net_input(x), stage).detach().requires_grad_(True)
    z = net.forward_from(A, stage)
    torch.sigmoid(z)[torch.arange(len(y)), y].sum().backward()
    correct = z.argmax(1) == y
    assert 0 < correct.sum() < len(y)
    xc, yc = x[correct], y[correct]
    groups = torch.arange(A.shape[1]).remainder(6).expand(len(yc), -1)
    mask = reference_mask(A.detach()[correct], A.grad[correct], groups, 6)
    reference.train()
    A_train = net.forward_to(reference.net_input(xc), stage)
    logits = net.forward_from(A_train * mask, stage)
    expected = (0.1 * F.cross_entropy(logits, yc, label_smoothing=0.1)
                + 1e-3 * reference_orthogonality(A_train, groups, 6))
    ref_optimizer = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    ref_optimizer.zero_grad()
    expected.backward()
    ref_optimizer.step()

    assert seen == [torch.Size([int(correct.sum()), A.shape[1], A.shape[2] * A.shape[3]])]
    assert torch.allclose(loss, expected.detach(), rtol=1e-5)
    for (name, got), want in zip(model.state_dict().items(), reference.state_dict().values(),
                                 strict=True):
        assert torch.allclose(got.float(), want.float(), rtol=1e-4, atol=1e-6), name


def test_misclassified_samples_take_no_part(digits):
    """The update on a batch with wrong samples is the update on its correct samples alone."""
    x, y = digits
    model = digits_model()
    y = controlled_labels(model, x, wrong_every=3)
    right = eval_predictions(model, x) == y
    alone = copy.deepcopy(model)
    for m, xs, ys in ((model, x, y), (alone, x[right], y[right])):
        torch.manual_seed(5)
        objective(start=0, every=1).after_step(m, xs, ys, ctx(0),
                                               torch.optim.SGD(m.parameters(), lr=0.1))
    for got, want in zip(model.state_dict().values(), alone.state_dict().values(), strict=True):
        assert torch.allclose(got.float(), want.float(), rtol=1e-5, atol=1e-7)
    assert not torch.equal(model.net.linear.weight, digits_model().net.linear.weight)


@pytest.mark.parametrize("n_correct", [0, 1])
def test_a_batch_with_fewer_than_two_correct_samples_changes_nothing(digits, n_correct):
    """None: nothing to inhibit; one: a train-mode pass of one sample can break BatchNorm."""
    x, _ = digits
    model = digits_model()
    y = (eval_predictions(model, x) + 1) % 10
    y[:n_correct] = eval_predictions(model, x[:n_correct])
    before = copy.deepcopy(model.state_dict())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    steps = []
    optimizer.register_step_post_hook(lambda *args: steps.append(1))
    assert objective(start=0, every=1).after_step(model, x, y, ctx(0), optimizer) is None
    assert steps == []
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_the_schedule_starts_at_start_then_every_every_th_iteration(digits):
    x, _ = digits
    model = digits_model()
    y = controlled_labels(model, x)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # predictions stay as they are
    stepped_at = []
    current = {}
    optimizer.register_step_post_hook(lambda *args: stepped_at.append(current["it"]))
    obj = objective(start=4, every=3)
    for it in range(15):
        current["it"] = it
        obj.after_step(model, x, y, ctx(it), optimizer)
    assert stepped_at == [4, 7, 10, 13]
    assert GWIParams().start == 500 and GWIParams().every == 3


def test_batchnorm_statistics_move_once_and_the_mode_is_restored(digits):
    """The eval-mode pass leaves running statistics alone; the train-mode pass on the correct
    samples updates them once, exactly as one train-mode forward of those samples does."""
    x, y = digits
    model = digits_model()
    y = controlled_labels(model, x, wrong_every=5)
    right = eval_predictions(model, x) == y
    reference = copy.deepcopy(model).train()
    with torch.no_grad():
        reference(x[right])  # cut after the last stage: every BatchNorm is before the mask
    params_before = [p.detach().clone() for p in model.parameters()]
    objective(stage="layer3", start=0, every=1).after_step(model, x, y, ctx(0),
                                           torch.optim.SGD(model.parameters(), lr=0.1))
    assert model.training
    for (name, got), want in zip(model.named_buffers(), reference.buffers(), strict=True):
        if "running" in name or "num_batches" in name:
            assert torch.allclose(got.float(), want.float(), rtol=1e-5, atol=1e-7), name
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), params_before,
                                                     strict=True))

    model.eval()
    objective(start=0, every=1).after_step(model, x, eval_predictions(model, x), ctx(0),
                                           torch.optim.SGD(model.parameters(), lr=0.1))
    assert not model.training


# The authors' rule, the stage before the last: their ResNet-50's layer3 of 4 and their
# ResNeXt-29's second stage of 3 (their feature_id 3 counts the stem as layer 1).
ARCHS = [
    ("resnet18", 3, 32, 0.125, "layer3"),
    ("preactresnet18", 3, 32, 0.125, "layer3"),
    ("wrn-28-10", 3, 32, 0.05, "block2"),
    ("vgg11_bn", 3, 32, 0.125, "layer4"),
    ("alexnet", 3, 32, 0.125, "layer2"),
    ("resnext29-4x32d", 3, 32, 0.125, "stage_2"),
    ("cnn", 1, 8, 1.0, "layer2"),
]


@pytest.mark.parametrize("arch,channels,size,width,stage", ARCHS)
def test_an_update_runs_on_every_family(arch, channels, size, width, stage):
    torch.manual_seed(0)
    model = create_model(arch, in_channels=channels, num_classes=10, image_size=size,
                         mean=(0.5,) * channels, std=(0.25,) * channels, width=width).train()
    assert split_stage(model, None)[1] == stage
    x = torch.rand(8, channels, size, size)
    y = controlled_labels(model, x)
    before = [p.detach().clone() for p in model.parameters()]
    loss = objective(start=0, every=1).after_step(model, x, y, ctx(0),
                                                  torch.optim.SGD(model.parameters(), lr=0.1))
    assert loss is not None and torch.isfinite(loss)
    assert model.training
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))


def test_an_update_runs_under_bf16_autocast_and_channels_last():
    torch.manual_seed(0)
    model = create_model("resnet18", in_channels=3, num_classes=10, image_size=32,
                         mean=(0.5,) * 3, std=(0.25,) * 3, width=0.125)
    model = model.to(memory_format=torch.channels_last).train()
    x = torch.rand(8, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = controlled_labels(model, x)
        loss = objective(start=0, every=1).after_step(
            model, x, y, ctx(0), torch.optim.SGD(model.parameters(), lr=0.1))
    assert loss is not None and torch.isfinite(loss)


class TwoStages(StagedNet):
    stage_names = ("first", "second")

    def __init__(self):
        super().__init__()
        self.first = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU())
        self.second = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, 10)

    def head(self, x):
        return self.fc(x.mean(dim=(2, 3)))


class OneStage(StagedNet):
    stage_names = ("only",)

    def __init__(self):
        super().__init__()
        self.only = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, 10)

    def head(self, x):
        return self.fc(x.mean(dim=(2, 3)))


def test_the_stage_is_the_one_before_the_last_or_the_only_one_or_the_one_named():
    model = Classifier(Normalize((0.0,), (1.0,)), TwoStages())
    assert split_stage(model, None)[1] == "first"
    assert split_stage(model, "second")[1] == "second"
    assert split_stage(Classifier(Normalize((0.0,), (1.0,)), OneStage()), None)[1] == "only"
    with pytest.raises(UserError, match=r"^gwi\.stage 'layer9' is not a stage of TwoStages; "
                                        r"valid: first, second\.$"):
        split_stage(model, "layer9")
    with pytest.raises(UserError, match="cut into stages"):
        objective(start=0, every=1).after_step(nn.Linear(2, 2), torch.rand(2, 2),
                                               torch.tensor([0, 1]), ctx(0), None)


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
