"""Learning-rate schedules, checked against values worked out by hand."""

import math

import pytest

from robench.config import OptimConfig
from robench.schedules import lr_at


def test_multistep_multiplies_by_gamma_at_each_milestone():
    cfg = OptimConfig(epochs=110, lr=0.1, schedule="multistep", milestones=[100, 105], gamma=0.1)
    steps = 10
    assert lr_at(cfg, 0, steps) == pytest.approx(0.1)
    assert lr_at(cfg, 99 * steps + 9, steps) == pytest.approx(0.1)
    assert lr_at(cfg, 100 * steps, steps) == pytest.approx(0.01)
    assert lr_at(cfg, 105 * steps, steps) == pytest.approx(0.001)


def test_cosine_starts_at_lr_is_half_way_down_at_mid_training_and_ends_near_zero():
    cfg = OptimConfig(epochs=10, lr=0.2, schedule="cosine")
    assert lr_at(cfg, 0, 5) == pytest.approx(0.2)
    assert lr_at(cfg, 25, 5) == pytest.approx(0.1)
    assert lr_at(cfg, 49, 5) == pytest.approx(0.1 * (1 + math.cos(math.pi * 49 / 50)))


def test_onecycle_rises_linearly_to_the_peak_at_two_fifths_then_falls_to_zero():
    cfg = OptimConfig(epochs=10, lr=0.2, schedule="onecycle")
    assert lr_at(cfg, 0, 1) == pytest.approx(0.0)
    assert lr_at(cfg, 2, 1) == pytest.approx(0.1)
    assert lr_at(cfg, 4, 1) == pytest.approx(0.2)
    assert lr_at(cfg, 7, 1) == pytest.approx(0.1)
    assert lr_at(cfg, 10, 1) == pytest.approx(0.0)


def test_cyclic_peaks_at_the_midpoint_like_wong_et_al_cyclic_lr():
    """Wong et al.'s CIFAR fast-AT: torch's CyclicLR from 0 to lr_max with step_size_up =
    step_size_down = half the iterations, stepped every iteration."""
    cfg = OptimConfig(epochs=15, lr=0.2, schedule="cyclic")
    steps = 4  # 60 iterations, the peak at iteration 30
    assert lr_at(cfg, 0, steps) == pytest.approx(0.0)
    assert lr_at(cfg, 15, steps) == pytest.approx(0.1)
    assert lr_at(cfg, 30, steps) == pytest.approx(0.2)
    assert lr_at(cfg, 45, steps) == pytest.approx(0.1)
    assert lr_at(cfg, 59, steps) == pytest.approx(0.2 / 30)


def test_cyclic_follows_torchs_cyclic_lr_as_wong_et_al_configure_it():
    import torch

    epochs, steps = 3, 7
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.2, momentum=0.9)
    half = epochs * steps / 2
    sched = torch.optim.lr_scheduler.CyclicLR(opt, base_lr=0.0, max_lr=0.2, step_size_up=half,
                                              step_size_down=half)
    cfg = OptimConfig(epochs=epochs, lr=0.2, schedule="cyclic")
    for step in range(epochs * steps):
        assert lr_at(cfg, step, steps) == pytest.approx(opt.param_groups[0]["lr"], abs=1e-12)
        opt.step()
        sched.step()


def test_warmup_ramps_linearly_over_the_warmup_epochs():
    cfg = OptimConfig(epochs=10, lr=0.1, schedule="constant", warmup_epochs=2)
    assert lr_at(cfg, 0, 10) == pytest.approx(0.1 * 1 / 20)
    assert lr_at(cfg, 9, 10) == pytest.approx(0.1 * 10 / 20)
    assert lr_at(cfg, 20, 10) == pytest.approx(0.1)
