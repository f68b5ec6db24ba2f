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
