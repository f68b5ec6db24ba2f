"""One judge: every verdict is the real model's, in fp32, whatever the attacks searched on.

The planted stand-ins disagree with the model on purpose (tests/planted.py): one is right in
bf16 where the model is wrong in fp32, one calls points broken that the model gets right.
"""

import pytest
import torch
from planted import ClassZeroBoosted, RightOnlyInBf16

from robench import api
from robench.attacks import Attack, ThreatModel, create_attack
from robench.attacks.base import Found
from robench.attacks.judge import Judge
from robench.attacks.view import InPrecision
from robench.config import EvalConfig
from robench.data import to_float
from robench.evaluation import clean_pass, run_attacks
from robench.evaluation.standin import Searchers
from robench.targets import from_run

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def points(digits_run):
    target = from_run(digits_run)
    return target.model, to_float(target.test.x[:200]), target.test.y[:200]


def fp32_correct(model, x, y):
    """The model's own verdict, computed here: eval mode, fp32, one pass."""
    model.eval()
    with torch.no_grad():
        return model(x).argmax(1) == y


def test_the_judge_is_fp32_even_inside_bf16_autocast(points):
    net, x, y = points
    threshold = float(x.flatten(1).sum(1).median())
    model = RightOnlyInBf16(net, threshold).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = model(x).argmax(1) == y
        judged = Judge(model).correct(x, y)
    expected = fp32_correct(model, x, y)
    assert int(bf16.sum()) - int(expected.sum()) >= 50  # the stand-in is right on ~90 more
    assert torch.equal(judged, expected)


def test_a_bf16_evaluation_gives_the_fp32_clean_and_robust_verdicts(digits_run, points):
    net, x, y = points
    threshold = float(x.flatten(1).sum(1).median())
    target = from_run(digits_run)
    target.model = RightOnlyInBf16(net, threshold).eval()
    cfg = EvalConfig(attacks=["gaussian"], eps=["0.001"], n_examples=200, device="cpu",
                     precision="bf16")
    (outcome,) = api.evaluate(target, cfg, quiet=True, force=True)
    rec = outcome.record
    expected = int(fp32_correct(target.model, x, y).sum())
    assert round(rec.clean_acc * 200) == expected  # about 110; bf16 alone says 199
    assert round(rec.robust_acc * 200) <= expected
    assert rec.precision == "bf16" and rec.per_attack[0].precision == "bf16"
    assert (rec.verdict.rule, rec.verdict.precision) == ("one-pass", "fp32")


class ClaimsOnStandIns(Attack):
    """Returns x unchanged; claims every point broken when handed a stand-in (bf16), none
    when handed the model itself. Records what it was handed."""

    name = "claims"

    def __init__(self, log):
        super().__init__(ThreatModel("Linf", 0.1))
        self.log = log

    def run(self, model, x, y, judge=None):
        standin = isinstance(model, InPrecision)
        self.log.append((standin, len(x)))
        claimed = torch.full((len(x),), standin, dtype=torch.bool)
        return Found(x.clone(), claimed=claimed)


def protocol(model, x, y, attacks, precision):
    judge = Judge(model)
    state = clean_pass(judge, x, y, device=CPU, batch_size=500).state
    run_attacks(x, y, attacks, state, searchers=Searchers(model, None, precision),
                judge=judge, device=CPU, batch_size=500)
    return state


def test_a_stand_ins_claim_the_judge_rejects_is_attacked_again_on_the_model(points):
    net, x, y = points
    log = []
    state = protocol(net, x, y, [ClaimsOnStandIns(log)], precision="bf16")
    clean = int(state.clean_correct.sum())
    # first on the stand-in (all points still correct), then every disputed point again on
    # the model itself, in fp32, whose run (no claim, x unchanged) stands
    assert log == [(True, clean), (False, clean)]
    assert state.steps[0].disputed == clean
    assert torch.equal(state.robust, state.clean_correct)


def test_claims_of_a_search_on_the_model_in_fp32_count_as_broken(points):
    """There the claim is an observed misclassification of the model itself."""
    net, x, y = points

    class ClaimsAll(ClaimsOnStandIns):
        def run(self, model, x, y, judge=None):
            return Found(x.clone(), claimed=torch.ones(len(x), dtype=torch.bool))

    state = protocol(net, x, y, [ClaimsAll([])], precision="fp32")
    assert state.steps[0].disputed == 0
    assert not state.robust.any()


class Recording(torch.nn.Module):
    """Counts the points of every forward pass that takes a gradient."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.sizes = inner, []

    def forward(self, x):
        if torch.is_grad_enabled():
            self.sizes.append(len(x))
        return self.inner(x)


def test_pgd_restarts_drop_only_points_the_judge_finds_broken(points):
    net, x, y = points
    standin = Recording(ClassZeroBoosted(net)).eval()  # calls every y != 0 point broken
    attack = create_attack("pgd", norm="Linf", eps=0.01, seed=0,
                           params={"steps": 2, "restarts": 3})
    found = attack.search(standin, x, y, judge=Judge(net))
    # every restart attacked (nearly) every point: at eps 0.01 the model itself keeps them
    robust = fp32_correct(net, found.x_adv, y)
    assert standin.sizes[:2] == [200, 200]  # restart 1: 200 points, 2 steps
    assert sum(standin.sizes) >= 3 * 2 * int(robust.sum())
    assert found.claimed[y != 0].all()  # the stand-in's claims, kept for the protocol
    assert not found.judged_broken[robust].any()


def test_gaussian_draws_are_judged_by_the_model_not_by_the_stand_in(points):
    net, x, y = points
    always_wrong = ClassZeroBoosted(net, boost=1e4).eval()
    attack = create_attack("gaussian", norm="Linf", eps=0.05, seed=0, params={"draws": 3})
    found = attack.search(always_wrong, x, y, judge=Judge(net))
    reference = attack.search(net, x, y, judge=Judge(net))
    assert torch.equal(found.x_adv, reference.x_adv)
    assert torch.equal(found.judged_broken, reference.judged_broken)


def test_on_cuda_the_judge_turns_tf32_off_for_its_passes_and_restores_the_callers_choice():
    """A CUDA 'fp32' pass is TF32 by default; a verdict is IEEE fp32. The flags are process
    settings, so they are checked here without a GPU."""
    from robench.attacks.judge import full_precision

    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    saved = conv.fp32_precision, matmul.fp32_precision
    try:
        conv.fp32_precision, matmul.fp32_precision = "tf32", "tf32"
        with full_precision(torch.device("cuda")):
            assert (conv.fp32_precision, matmul.fp32_precision) == ("ieee", "ieee")
        assert (conv.fp32_precision, matmul.fp32_precision) == ("tf32", "tf32")
        with full_precision(CPU):  # a CPU pass leaves the CUDA settings alone
            assert (conv.fp32_precision, matmul.fp32_precision) == ("tf32", "tf32")
    finally:
        conv.fp32_precision, matmul.fp32_precision = saved
