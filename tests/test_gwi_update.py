"""The group-wise inhibition update (gwi, methods.md Seed 3), recomputed step by step on a
copy of the model from the specification, on every model family.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from gwi_reference import objective, reference_mask, reference_orthogonality
from torch import nn

from robench.data import load_dataset
from robench.defenses import StepContext, gwi
from robench.defenses.gwi import GWIParams, split_stage
from robench.errors import UserError
from robench.models import StagedNet, create_model
from robench.models.layers import Classifier, Normalize

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



def ctx(iteration: int, smoothing: float = 0.0) -> StepContext:
    return StepContext(epoch=1, iteration=iteration, label_smoothing=smoothing)


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


