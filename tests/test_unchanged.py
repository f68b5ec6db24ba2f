"""A model that changes itself while robench evaluates it: refused, and nothing written.

The evaluated model must be one model from the first forward pass to the last, in every part
an evaluation could disturb or a model could touch: parameters and every buffer (also those a
state_dict leaves out), which parameters take gradients, each module's train/eval flag, and
the hooks registered on each module. A change is found before any file is written.
"""

import dataclasses

import pytest
import torch
from planted import (
    CountsInHiddenBuffer,
    FreezesItselfInForward,
    HooksItselfInForward,
    TrainsSubmoduleInForward,
)
from tiny_target import N, tiny_cfg, tiny_net, tiny_target
from torch import nn

from robench import api
from robench.errors import ModelChanged, UserError
from robench.evaluation.blocks import Shard
from robench.evaluation.unchanged import check_unchanged, snapshot
from robench.runtime import evaluating

pytestmark = pytest.mark.usefixtures("one_thread")


def _listing(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


PLANTED = [  # (the model, what the refusal must name)
    (CountsInHiddenBuffer, "buffer 'calls' changed"),
    (FreezesItselfInForward, "parameter 'net.1.weight' stopped requiring gradients"),
    (HooksItselfInForward, "module 'net' gained 1 forward hook"),
    (TrainsSubmoduleInForward, "module 'net' was put in train mode"),
]


@pytest.mark.parametrize(("planted", "named"), PLANTED, ids=[p.__name__ for p, _ in PLANTED])
def test_an_evaluation_of_a_model_that_changes_itself_is_refused_and_writes_nothing(
        tmp_path, planted, named):
    run = tmp_path / "run"
    (run / "evals").mkdir(parents=True)
    (run / "evals" / "earlier.json").write_text("{}")  # what was there stays, alone
    before = _listing(run)
    with pytest.raises(ModelChanged) as refused:
        api.evaluate(tiny_target(run, planted(tiny_net())), tiny_cfg(), quiet=True)
    message = str(refused.value)
    assert message.startswith("the model changed during the evaluation: ")
    assert named in message
    assert message.endswith("; robench wrote nothing.")
    assert "\n" not in message and isinstance(refused.value, UserError)
    assert _listing(run) == before


def test_the_same_evaluation_of_a_model_that_keeps_still_writes_its_record(tmp_path):
    # The control: the refusal above is the planted change, not the tiny target.
    run = tmp_path / "run"
    (outcome,) = api.evaluate(tiny_target(run, tiny_net()), tiny_cfg(), quiet=True)
    assert _listing(run) == ["evals", f"evals/{outcome.path.name}"]


def test_an_evaluation_at_two_eps_that_changes_the_model_at_the_second_keeps_neither(tmp_path):
    class ChangesAfter(nn.Module):
        """Unchanged for its first `calls` passes, then its hidden buffer counts."""

        def __init__(self, net, calls):
            super().__init__()
            self.net, self.left = net, calls
            self.register_buffer("seen", torch.zeros(()), persistent=False)

        def forward(self, x):
            self.left -= 1
            if self.left < 0:
                self.seen += 1
            return self.net(x)

    run = tmp_path / "run"
    target = tiny_target(run, ChangesAfter(tiny_net(), 0))
    cfg = tiny_cfg(eps=["0.05", "0.1"])
    # How many passes the first eps takes, counted on a model that stays the same.
    counting = tiny_target(tmp_path / "count", ChangesAfter(tiny_net(), 0))
    counting.model.left = 10**9
    api.evaluate(counting, dataclasses.replace(cfg, eps=["0.05"]), quiet=True)
    target.model.left = 10**9 - counting.model.left  # changes once the second eps begins
    with pytest.raises(ModelChanged, match="buffer 'seen' changed"):
        api.evaluate(target, cfg, quiet=True)
    assert target.model.left < 0  # it ran into the second eps, after the first's record
    assert _listing(run) == []  # that record, and the folder made for it, are gone


def test_a_shard_of_a_model_that_changes_itself_writes_no_part(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(ModelChanged, match="buffer 'calls' changed"):
        api.evaluate(tiny_target(run, CountsInHiddenBuffer(tiny_net())), tiny_cfg(), quiet=True,
                     shard=Shard(0, 2))
    assert _listing(run) == []


def test_adversarial_examples_of_a_model_that_changes_itself_are_not_saved(tmp_path):
    run = tmp_path / "run"
    target = tiny_target(run, CountsInHiddenBuffer(tiny_net()))
    with pytest.raises(ModelChanged, match="buffer 'calls' changed.*robench wrote nothing"):
        api.craft(target, "fgsm", eps="0.1", n_examples=N, batch_size=6, device="cpu",
                  quiet=True)
    assert _listing(run) == []


def _changed(change) -> str:
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)).eval()
    model[1].register_buffer("hidden", torch.zeros(2), persistent=False)
    before = snapshot(model)
    change(model)
    with pytest.raises(ModelChanged) as refused:
        check_unchanged(model, before)
    return str(refused.value)


def test_the_check_names_each_kind_of_change():
    def add(name, value):
        return lambda m: m[1].get_buffer(name).add_(value)

    cases = {
        "buffer '1.hidden' changed": add("hidden", 1),
        "buffer '1.running_mean' changed": add("running_mean", 1),
        "parameter '0.weight' changed": lambda m: m[0].weight.data.add_(1),
        "parameter '0.bias' stopped requiring gradients": lambda m: m[0].bias.requires_grad_(False),
        "module '1' went from eval to train mode": lambda m: m[1].train(),
        "module '0' gained 1 forward pre-hook": lambda m: m[0].register_forward_pre_hook(
            lambda *a: None),
        "module '0' gained 1 backward hook": lambda m: m[0].register_full_backward_hook(
            lambda *a: None),
        "the model gained 1 forward hook": lambda m: m.register_forward_hook(lambda *a: None),
        "buffer '0.extra' appeared": lambda m: m[0].register_buffer("extra", torch.ones(1)),
    }
    for named, change in cases.items():
        message = _changed(change)
        assert named in message, (named, message)
        assert message.endswith("; its result is not used.")


def test_an_unchanged_model_passes_the_check_and_a_nan_buffer_is_unchanged():
    model = nn.Sequential(nn.Linear(2, 2))
    model.register_buffer("gap", torch.tensor([float("nan"), 1.0]))
    before = snapshot(model)
    with evaluating(model):
        model(torch.ones(1, 2))
    check_unchanged(model, before)  # raises if anything differs


def test_a_forward_pass_that_switches_a_module_to_train_mode_is_caught_where_it_happens():
    model = TrainsSubmoduleInForward(nn.Linear(2, 2)).train()
    with pytest.raises(ModelChanged, match="module 'net' was put in train mode"):
        with evaluating(model):
            model(torch.ones(1, 2))
    assert model.training and model.net.training  # each module's mode is still restored
