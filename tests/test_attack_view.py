"""The faster view attacks search on computes the same function as the model."""

import pytest
import torch

from robench.attacks.view import attack_view
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
