"""A training step never waits for the device: no tensor value is read on the host between
drawing a batch and updating the weights.

On a GPU, reading a tensor's value (`.item()`, `float(t)`, `if t:`, `.tolist()`) stops the
host until every queued kernel has run; in an inner loop that idles the GPU once per step.
These tests run the per-step code on the CPU with those reads made to raise, so a read
added to a step fails here on any machine.
"""

import contextlib

import pytest
import torch

from robench.augment import augment_batch
from robench.config import TrainConfig
from robench.defenses import StepContext, resolve_defense
from robench.models import create_model
from robench.progress import EpochReporter
from robench.training import make_optimizer

pytestmark = pytest.mark.usefixtures("one_thread")

READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy")


class HostRead(AssertionError):
    pass


@contextlib.contextmanager
def no_host_reads():
    saved = {name: getattr(torch.Tensor, name) for name in READS}

    def refuse(name):
        def read(self, *args, **kwargs):
            raise HostRead(f"a training step read a tensor's value with {name}")
        return read

    try:
        for name in READS:
            setattr(torch.Tensor, name, refuse(name))
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch.Tensor, name, fn)


def test_the_detector_catches_a_read():
    with pytest.raises(HostRead), no_host_reads():
        torch.ones(1).item()
    with pytest.raises(HostRead), no_host_reads():
        if torch.ones(()):
            pass
    assert torch.ones(()).item() == 1.0  # restored afterwards


@pytest.mark.parametrize("defense", ["standard", "gaussian", "pgd-at", "trades", "fast-at"])
@pytest.mark.parametrize("augment", ["crop+flip", "crop", "none"])
def test_a_step_from_augmentation_to_the_update_reads_no_tensor_value(defense, augment):
    torch.manual_seed(0)
    model = create_model("cnn", in_channels=1, num_classes=10, image_size=8, mean=(0.5,),
                         std=(0.25,))
    spec = resolve_defense(defense, dataset="digits")
    optimizer = make_optimizer(model, TrainConfig())
    x_uint8 = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8)
    y = torch.randint(0, 10, (16,))
    generator = torch.Generator().manual_seed(0)
    reporter = EpochReporter(1, quiet=True)
    before = [p.detach().clone() for p in model.parameters()]
    model.train()
    with no_host_reads():
        x = augment_batch(x_uint8.float().div_(255), augment, generator)
        out = spec.objective(model, x, y, StepContext(epoch=1, iteration=3))
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        reporter.step(out.loss.detach())
        correct = (out.logits.detach().argmax(1) == y).sum()
    assert int(correct) >= 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
