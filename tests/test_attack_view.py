"""The faster view attacks search on computes the same function as the model."""

import copy

import pytest
import torch

from robench.attacks.view import attack_view, check_view
from robench.models import create_model

ARCHS = [("cnn", 1, 8), ("resnet18", 3, 32), ("preactresnet18", 3, 32), ("vgg11_bn", 3, 32),
         ("alexnet", 3, 32)]


@pytest.mark.parametrize("arch, channels, size", ARCHS)
def test_the_view_matches_outputs_and_input_gradients_and_leaves_the_model_alone(
        arch, channels, size):
    torch.manual_seed(0)
    model = create_model(arch, in_channels=channels, num_classes=10, image_size=size,
                         mean=(0.5,) * channels, std=(0.25,) * channels)
    # Non-trivial BatchNorm statistics, so folding them in is actually exercised.
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(16, channels, size, size))
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    view = attack_view(model)
    x = torch.rand(4, channels, size, size, requires_grad=True)
    out_model = model(x)
    (g_model,) = torch.autograd.grad(out_model.sum(), x)
    out_view = view(x)
    (g_view,) = torch.autograd.grad(out_view.sum(), x)
    assert torch.allclose(out_view, out_model, rtol=1e-4, atol=1e-4)
    # Gradients agree as closely as those of two conv algorithms do: a ReLU input or a
    # max-pool tie within rounding may switch, so not to the last bit, but in direction.
    cosine = torch.nn.functional.cosine_similarity(g_view.flatten(), g_model.flatten(), dim=0)
    assert cosine.item() > 0.999
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in view.modules()) or \
        arch == "preactresnet18"  # pre-activation BN follows no conv: nothing to fold


# ------------------------------------------------------------------------------------------
# Modules called twice, and the check that guards every use of the view


@pytest.fixture(params=["TiedConvBN", "SharedConvTwoBranches"])
def called_twice(request):
    """A planted model whose conv is called twice, with settled BatchNorm, and a batch."""
    import planted

    torch.manual_seed(0)
    model = planted.settle_batchnorm(getattr(planted, request.param)(), (16, 3, 8, 8))
    return model, torch.rand(32, 3, 8, 8)


def test_a_conv_called_twice_or_shared_by_two_branches_folds_correctly(called_twice):
    model, x = called_twice
    view = attack_view(model)
    with torch.no_grad():
        assert torch.allclose(view(x), model(x), rtol=1e-5, atol=1e-5)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in view.modules())
    assert check_view(view, model, x, model(x).argmax(1)) is None


def test_folding_in_place_gets_them_wrong_and_the_check_says_so(called_twice):
    """torch.fx's own fuse folds into the conv module itself: wrong for a shared one."""
    from torch.fx.experimental.optimization import fuse

    model, x = called_twice
    wrong = fuse(copy.deepcopy(model).eval())
    with torch.no_grad():
        assert (wrong(x) - model(x)).abs().max() > 0.01  # measured 0.13 and 0.07
    reason = check_view(wrong, model, x, model(x).argmax(1))
    assert reason is not None and "logits differ" in reason


def test_a_view_that_fails_the_check_is_not_used_and_the_record_says_why(digits_run,
                                                                        monkeypatch):
    from robench import api
    from robench.config import EvalConfig
    from robench.evaluation import standin
    from robench.targets import from_run

    def scaled_view(model):
        view = attack_view(model)
        return torch.nn.Sequential(view, Scale(1.01))

    monkeypatch.setattr(standin, "attack_view", scaled_view)
    target = from_run(digits_run)
    cfg = EvalConfig(attacks=["pgd"], eps=["0.1"], n_examples=30, device="cpu")
    (outcome,) = api.evaluate(target, cfg, quiet=True, force=True)
    rec = outcome.record
    assert rec.per_attack[0].searched_on == "model"
    assert any("view was not used because its logits differ" in n for n in rec.notes)
    monkeypatch.undo()
    (outcome,) = api.evaluate(target, cfg, quiet=True, force=True)
    assert outcome.record.per_attack[0].searched_on == "view"
    assert not outcome.record.notes


class Scale(torch.nn.Module):
    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


# ------------------------------------------------------------------------------------------
# The gradient check is per point (issue 29): one point steered the wrong way fails it


def test_one_point_whose_view_gradient_points_elsewhere_fails_the_check_and_is_named():
    from planted import GradientFlippedAt, SignedFirstValue

    model = SignedFirstValue().eval()
    # seven points near the boundary (v = 0.5), one confident (v = 1: logits -5, +5), whose
    # cross-entropy gradient is e^-10 times smaller: the view negates that one's
    x = torch.tensor([[0.45], [0.47], [0.49], [0.5], [0.51], [0.53], [0.55], [1.0]])
    y = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1])
    view = GradientFlippedAt(model, index=7)
    batch_cosine = _batch_gradient_cosine(view, model, x, y)
    assert batch_cosine > 0.99  # the old batch-wide check passed this view
    reason = check_view(view, model, x, y)
    assert reason == ("its input gradients point elsewhere than the model's on 1 of 8 "
                      "evaluated points (point 7: cosine -1.000 < 0.99)")


def test_a_view_whose_every_point_agrees_passes_the_per_point_check():
    from planted import GradientFlippedAt, SignedFirstValue

    model = SignedFirstValue().eval()
    x = torch.tensor([[0.45], [0.5], [0.55], [1.0]])
    y = torch.tensor([0, 1, 1, 1])
    assert check_view(GradientFlippedAt(model, index=99), model, x, y) is None


def _batch_gradient_cosine(view, model, x, y):
    """The cosine between the two models' cross-entropy input gradients of the whole batch."""
    grads = []
    for net in (view, model):
        xi = x.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(net(xi), y, reduction="sum")
        grads.append(torch.autograd.grad(loss, xi)[0].flatten())
    return float(torch.nn.functional.cosine_similarity(*grads, dim=0))
