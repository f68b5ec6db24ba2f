"""The contract of every gradient attack (inside the eps-ball and [0, 1], the model's
parameters, buffers, mode and gradients untouched, eval mode while attacking), the attack
losses, and parameter checking."""

from __future__ import annotations

import pytest
import torch
from attack_cases import ATTACKS, EPS, NORMS, digits_cnn
from torch import nn

from robench.attacks import attack_mode, create_attack
from robench.attacks.base import Found
from robench.attacks.losses import ce, cw_margin, dlr
from robench.data import load_dataset
from robench.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


# ------------------------------------------------------------------------------------------
# Validity, model state and mode


VARIANTS = [
    ("fgsm", {}),
    ("fgsm", {"random_start": True}),
    ("pgd", {"steps": 3}),
    ("pgd", {"steps": 3, "restarts": 2, "loss": "dlr", "eot_iter": 2}),
    ("pgd", {"steps": 3, "random_start": False, "step_size": 1.0, "loss": "cw"}),
    ("cw", {"steps": 3}),
    ("gaussian", {}),
    ("gaussian", {"draws": 3}),
]


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize(("name", "params"), VARIANTS)
def test_every_attack_stays_in_the_eps_ball_and_in_0_1(digits, norm, name, params):
    torch.manual_seed(0)
    model = digits_cnn(digits).eval()
    x, y = digits.test.x[:64], digits.test.y[:64]
    eps = {"Linf": 0.3, "L2": 2.0}[norm]  # large, so the [0, 1] clamp is active too
    attack = create_attack(name, norm=norm, eps=eps, params=params)
    with attack_mode(model):
        out = attack.run(model, x, y)  # run, not __call__: the base's check is not used
    x_adv = out.x_adv if isinstance(out, Found) else out
    delta = (x_adv - x).flatten(1).double()
    size = delta.abs().max(1).values if norm == "Linf" else delta.pow(2).sum(1).sqrt()
    assert x_adv.shape == x.shape and x_adv.dtype == torch.float32
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert size.max() <= eps + 1e-6
    assert size.max() > eps / 2  # it did perturb


@pytest.mark.parametrize("was_training", [True, False])
@pytest.mark.parametrize("name", ATTACKS)
def test_attack_leaves_parameters_buffers_mode_and_grads_untouched(digits, name, was_training):
    torch.manual_seed(0)
    model = digits_cnn(digits).train(was_training)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = digits.test.x[:32], digits.test.y[:32]
    for norm in NORMS:
        params = {"draws": 2} if name == "gaussian" else {}
        create_attack(name, norm=norm, eps=EPS[norm], params=params)(model, x, y)
    after = model.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key
    assert all(m.training == was_training for m in model.modules())
    assert all(p.grad is None and p.requires_grad for p in model.parameters())


class ModeRecorder(nn.Module):
    """Records `self.training` at every forward pass."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(64, 10)
        self.modes: list[bool] = []

    def forward(self, x):
        self.modes.append(self.training)
        return self.linear(x.flatten(1))


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_runs_the_model_in_eval_mode_and_restores_train_mode(digits, name):
    model = ModeRecorder().train()
    params = {"draws": 2} if name == "gaussian" else {}
    create_attack(name, norm="Linf", eps=0.1, params=params)(model, digits.test.x[:8],
                                                              digits.test.y[:8])
    assert model.modes and not any(model.modes)
    assert model.training


# ------------------------------------------------------------------------------------------
# Losses


LOGITS = torch.tensor([[1.0, 3.0, 2.0, 0.0],
                       [5.0, 1.0, 2.0, 4.0],
                       [0.0, 1.0, 7.0, 3.0]])
LABELS = torch.tensor([1, 0, 0])


def test_cw_margin_is_the_best_other_logit_minus_the_true_one():
    assert torch.equal(cw_margin(LOGITS, LABELS), torch.tensor([-1.0, -1.0, 7.0]))


def test_dlr_divides_the_margin_by_the_gap_between_first_and_third_logits():
    # Sorted rows: (3, 2, 1, 0), (5, 4, 2, 1), (7, 3, 1, 0).
    expected = torch.tensor([-(3 - 2) / (3 - 1), -(5 - 4) / (5 - 2), -(0 - 7) / (7 - 1)])
    assert torch.allclose(dlr(LOGITS, LABELS), expected)


def test_dlr_is_invariant_to_shifting_and_scaling_the_logits():
    assert torch.allclose(dlr(LOGITS * 10 + 3, LABELS), dlr(LOGITS, LABELS))


def test_dlr_needs_three_classes():
    with pytest.raises(UserError, match="3 classes"):
        dlr(torch.tensor([[1.0, 2.0]]), torch.tensor([0]))


def test_ce_is_per_example_and_losses_are_fp32_for_bf16_logits():
    expected = -torch.log_softmax(LOGITS, 1)[torch.arange(3), LABELS]
    assert torch.allclose(ce(LOGITS, LABELS), expected)
    for loss in (ce, cw_margin, dlr):
        assert loss(LOGITS.bfloat16(), LABELS).dtype == torch.float32


# ------------------------------------------------------------------------------------------
# Parameters


@pytest.mark.parametrize(("name", "params", "key"), [
    ("pgd", {"steps": 0}, "pgd.steps"),
    ("pgd", {"restarts": 0}, "pgd.restarts"),
    ("pgd", {"eot_iter": 0}, "pgd.eot_iter"),
    ("pgd", {"step_size": 0.0}, "pgd.step_size"),
    ("pgd", {"step_size": -0.1}, "pgd.step_size"),
    ("pgd", {"loss": "xent"}, "pgd.loss"),
    ("pgd", {"stepz": 3}, "pgd.stepz"),
    ("pgd", {"steps": "ten"}, "pgd.steps"),
    ("fgsm", {"loss": "hinge"}, "fgsm.loss"),
    ("fgsm", {"steps": 3}, "fgsm.steps"),
    ("cw", {"steps": 0}, "cw.steps"),
    ("cw", {"loss": "ce"}, "cw.loss"),
    ("gaussian", {"draws": 0}, "gaussian.draws"),
])
def test_bad_parameters_raise_a_user_error_naming_the_key(name, params, key):
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        create_attack(name, norm="Linf", eps=0.1, params=params)


def test_unknown_norm_is_a_user_error():
    with pytest.raises(UserError, match="L1"):
        create_attack("fgsm", norm="L1", eps=0.1)


def test_defaults_are_the_documented_ones():
    pgd = create_attack("pgd", norm="Linf", eps=0.2)
    assert pgd.describe() == {"name": "pgd", "norm": "Linf", "eps": 0.2, "seed": 0, "steps": 20,
                              "step_size": None, "random_start": True, "restarts": 1,
                              "loss": "ce", "eot_iter": 1}
    assert pgd.step_size == 0.05
    cw = create_attack("cw", norm="L2", eps=0.5)
    assert (cw.params.steps, cw.step_size, cw.loss_name) == (30, 0.125, "cw")
    fgsm = create_attack("fgsm", norm="Linf", eps=0.1)
    assert (fgsm.params.random_start, fgsm.params.loss) == (False, "ce")
    assert create_attack("gaussian", norm="Linf", eps=0.1).params.draws == 1
