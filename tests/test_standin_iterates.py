"""A search on a stand-in keeps, per point, the iterate the *real* model is worst at.

The stand-in (a BatchNorm-folded view, bf16 autocast) only steers the search. Which iterate a
restart keeps is decided on the real model in fp32: an iterate that fools the real model is
kept whatever the stand-in's margin there (issue 29, item 8). Planted: the real model
(NarrowBand) is fooled only at the middle iterate of a 2-step PGD, while the stand-in
(RisingStandIn) has its largest margin at the last one.
"""

import pytest
import torch
from planted import NarrowBand, RisingStandIn

from robench.attacks import create_attack
from robench.attacks.judge import Judge
from robench.evaluation.protocol import attack_batch
from robench.evaluation.standin import Search

pytestmark = pytest.mark.usefixtures("one_thread")

# Iterates of v from 0.5: 0.5 (start), 0.7 (in the band: fooled), 0.8 (0.9 projected back).
# From 0.1: 0.1, 0.3, 0.4, all outside the band.
X = torch.tensor([[0.5], [0.5], [0.1]])
Y = torch.tensor([0, 0, 0])


def pgd(restarts=1, loss="ce"):
    return create_attack("pgd", norm="Linf", eps=0.3, seed=0,
                         params={"steps": 2, "step_size": 0.2, "random_start": False,
                                 "restarts": restarts, "loss": loss})


@pytest.mark.parametrize("restarts", [1, 2])
def test_an_iterate_that_fools_the_real_model_counts_though_the_stand_in_prefers_another(
        restarts):
    real = NarrowBand().eval()
    assert Judge(real).correct(X, Y).tolist() == [True, True, True]
    ok, disputed = attack_batch(pgd(restarts), Search(RisingStandIn(), "view", "fp32"),
                                Search(real, "model", "fp32"), X, Y, Judge(real))
    assert ok.tolist() == [False, False, True] and disputed == 0


def test_with_no_iterate_fooling_it_the_real_models_worst_iterate_is_returned():
    real = NarrowBand(width=-0.01).eval()  # the band is empty: never fooled
    found = pgd().search(RisingStandIn(), X[:1], Y[:1], judge=Judge(real))
    # the real margin -0.01 - |v - 0.7| is largest at v = 0.7, the middle iterate
    assert round(float(found.x_adv[0, 0]), 4) == 0.7
    assert found.judged_broken.tolist() == [False] and found.claimed.tolist() == [False]


def test_a_search_on_the_real_model_itself_keeps_its_own_margins():
    real = NarrowBand().eval()
    found = pgd().search(real, X, Y, judge=Judge(real))
    assert found.claimed.tolist() == [True, True, False]
