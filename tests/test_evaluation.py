"""The evaluation protocol: per-point worst case, point selection, records, soundness."""

import json

import pytest
import torch
from torch import nn

from robench import api, records
from robench.attacks import Attack, ThreatModel
from robench.attacks.judge import Judge
from robench.config import EvalConfig
from robench.data import Split
from robench.errors import UserError
from robench.evaluation import clean_pass, detect, run_attacks, select_points
from robench.evaluation.standin import Searchers
from robench.records import wilson_interval
from robench.targets import from_run

K = 3  # classes of the toy problem


class Toy(nn.Module):
    """Logits are the first K features; the last feature carries the point's id."""

    def forward(self, x):
        return x.flatten(1)[:, :K] * 10


def toy_points(n=10):
    x = torch.zeros(n, 1, 1, K + 1)
    y = torch.arange(n) % K
    x[torch.arange(n), 0, 0, y] = 0.6
    x[torch.arange(n), 0, 0, (y + 1) % K] = 0.5
    x[:, 0, 0, K] = torch.arange(n) / 100
    return x, y


class Breaks(Attack):
    """Moves the listed points across the decision boundary (by 0.2) and leaves the rest."""

    name = "breaks"

    def __init__(self, ids, log):
        super().__init__(ThreatModel("Linf", 0.2))
        self.ids, self.log = ids, log

    def run(self, model, x, y, judge=None):
        ids = torch.round(x[:, 0, 0, K] * 100).long()
        self.log.extend(ids.tolist())
        x_adv = x.clone()
        hit = torch.isin(ids, torch.tensor(self.ids))
        x_adv[hit, 0, 0, y[hit]] -= 0.2
        x_adv[hit, 0, 0, (y[hit] + 1) % K] += 0.2
        return x_adv


def protocol(model, x, y, attacks, *, precision="fp32", view=None, batch_size=4):
    """The clean pass and the cascade, as `robench eval` runs them (one-pass judge)."""
    cpu = torch.device("cpu")
    judge = Judge(model)
    state = clean_pass(judge, x, y, device=cpu, batch_size=batch_size).state
    run_attacks(x, y, attacks, state, searchers=Searchers(model, view, precision),
                judge=judge, device=cpu, batch_size=batch_size)
    return state


def test_robust_accuracy_is_the_per_point_worst_case_and_later_attacks_see_only_robust_points():
    x, y = toy_points(10)
    model = Toy()
    seen_a, seen_b = [], []
    state = protocol(model, x, y, [Breaks([0, 1], seen_a), Breaks([1, 2], seen_b)])
    assert state.clean_correct.all()
    assert sorted(seen_a) == list(range(10))
    assert sorted(seen_b) == list(range(2, 10))  # 0 and 1 were already broken
    assert state.robust.tolist() == [False] * 3 + [True] * 7
    assert [s.broken for s in state.steps] == [2, 1]
    assert [s.robust_acc_after for s in state.steps] == [0.8, 0.7]


def test_an_attack_that_leaves_the_eps_ball_is_an_error_not_a_result():
    class Cheat(Attack):
        name = "cheat"

        def run(self, model, x, y, judge=None):
            return (x + 0.5).clamp(0, 1)

    x, y = toy_points(4)
    with pytest.raises(RuntimeError, match="ball"):
        Cheat(ThreatModel("Linf", 0.2))(Toy(), x, y)


def test_first_n_points_for_shuffled_data_and_a_stratified_sample_for_class_ordered_data():
    shuffled = Split(torch.zeros(12, 1, 1, 1), torch.tensor([2, 0, 1] * 4))
    idx, method = select_points(shuffled, 5, seed=0)
    assert method == "first" and idx.tolist() == [0, 1, 2, 3, 4]
    ordered = Split(torch.zeros(30, 1, 1, 1), torch.arange(3).repeat_interleave(10))
    idx, method = select_points(ordered, 6, seed=0)
    assert method == "stratified"
    assert torch.bincount(ordered.y[idx], minlength=3).tolist() == [2, 2, 2]
    assert select_points(ordered, 6, seed=0)[0].tolist() == idx.tolist()
    assert select_points(ordered, 6, seed=1)[0].tolist() != idx.tolist()


def test_wilson_interval_matches_published_values():
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)


class Noisy(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x + 0.05 * torch.randn_like(x))


def test_a_randomised_model_is_detected():
    x, _ = toy_points(4)
    assert not detect(Toy(), x).stochastic
    assert detect(Noisy(Toy()), x).stochastic


def evaluate(target, **kwargs):
    cfg = EvalConfig(**{"attacks": ["pgd"], "n_examples": 60, "device": "cpu", **kwargs})
    return api.evaluate(target, cfg, quiet=True)


def test_eval_of_a_run_writes_a_valid_record_with_every_protocol_parameter(digits_run):
    target = from_run(digits_run)
    (outcome,) = evaluate(target, attacks=["gaussian", "pgd"], eps=["0.2"])
    data = json.loads(outcome.path.read_text())
    assert outcome.path.parent == digits_run / "evals"
    rec = records.validate(data)
    assert rec.eps == 0.2 and rec.norm == "Linf" and rec.attacks == ["gaussian", "pgd"]
    assert rec.selection.n_examples == 60 and rec.selection.method == "first"
    assert rec.per_attack[1].params["steps"] == 20
    assert rec.model.run_id == digits_run.name and len(rec.model.weights_sha256) == 64
    assert rec.clean_acc >= 0.9
    assert rec.robust_acc <= 0.1  # a normally trained CNN at eps 0.2
    assert rec.robust_ci95[0] <= rec.robust_acc <= rec.robust_ci95[1]
    assert rec.robust_acc == rec.per_attack[-1].robust_acc_after
    assert not rec.flags


def test_one_record_per_eps_and_a_recorded_protocol_is_not_repeated(digits_run):
    target = from_run(digits_run)
    outcomes = evaluate(target, eps=["0.05,0.1", "0.2"], attacks=["fgsm"])
    assert [o.record.eps for o in outcomes] == [0.05, 0.1, 0.2]
    accs = [o.record.robust_acc for o in outcomes]
    assert accs == sorted(accs, reverse=True)
    again = evaluate(target, eps=["0.1"], attacks=["fgsm"])
    assert again[0].reused and again[0].path == outcomes[1].path


def test_evaluation_leaves_parameters_buffers_and_mode_as_they_were(digits_run):
    target = from_run(digits_run)
    target.model.train()
    before = {k: v.clone() for k, v in target.model.state_dict().items()}
    evaluate(target, attacks=["fgsm", "pgd"], eps=["0.15"], n_examples=20)
    assert target.model.training
    after = target.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in target.model.parameters())


def test_a_randomised_model_is_flagged_and_attacked_with_eot(digits_run):
    target = from_run(digits_run)
    target.model = Noisy(target.model)
    (outcome,) = evaluate(target, eps=["0.2"], n_examples=20)
    rec = outcome.record
    assert "stochastic-model" in rec.flags
    assert rec.per_attack[0].params["eot_iter"] == 20
    assert any("EOT" in note for note in rec.notes)


def test_more_examples_than_the_test_split_is_refused_before_any_work(digits_run):
    target = from_run(digits_run)
    with pytest.raises(UserError, match="361.*360"):
        evaluate(target, n_examples=361)


def test_records_of_another_schema_version_or_impossible_numbers_are_refused(digits_run):
    target = from_run(digits_run)
    (outcome,) = evaluate(target, attacks=["fgsm"], eps=["0.1"], n_examples=20)
    data = json.loads(outcome.path.read_text())
    with pytest.raises(UserError, match="schema version"):
        records.validate({**data, "schema_version": 99})
    with pytest.raises(UserError, match="exceeds clean"):
        records.validate({**data, "robust_acc": 1.0, "clean_acc": 0.5})
    with pytest.raises(UserError, match="'eps'"):
        records.validate({**data, "eps": "8/255"})


def test_an_interrupted_evaluation_resumes_after_its_finished_attacks(digits_run, monkeypatch):
    from robench.attacks import gradient
    from robench.errors import Interrupted
    from robench.evaluation import runner

    target = from_run(digits_run)
    cfg = EvalConfig(attacks=["fgsm", "pgd"], eps=["0.1"], n_examples=60, device="cpu")
    real_save = runner.save_state

    def save_then_stop(path, state):  # the state is saved after every block and attack
        real_save(path, state)
        if state.steps:
            raise KeyboardInterrupt

    monkeypatch.setattr(runner, "save_state", save_then_stop)
    with pytest.raises(Interrupted, match="after 1 of 2 attacks.*--resume"):
        api.evaluate(target, cfg, quiet=True)
    assert not list((digits_run / "evals").glob("fgsm+pgd-linf-0.1-*.json"))
    monkeypatch.setattr(runner, "save_state", real_save)

    calls = []
    real_fgsm_run = gradient.FGSM.run
    monkeypatch.setattr(gradient.FGSM, "run",
                        lambda self, *a: calls.append(1) or real_fgsm_run(self, *a))
    (resumed,) = api.evaluate(target, cfg, quiet=True, resume=True)
    assert calls == []  # fgsm had finished before the interruption
    assert not list((digits_run / "evals").glob(".*state*"))
    (fresh,) = api.evaluate(target, cfg, quiet=True, force=True)
    assert resumed.record.robust_acc == fresh.record.robust_acc
    assert [s.broken for s in resumed.record.per_attack] == \
        [s.broken for s in fresh.record.per_attack]


def test_autoattack_in_the_protocol_matches_its_own_report_and_switches_to_rand_if_needed(
        digits_run):
    target = from_run(digits_run)
    (outcome,) = evaluate(target, attacks=["autoattack"], eps=["0.2"], n_examples=50)
    rec = outcome.record
    assert rec.autoattack_acc == rec.robust_acc <= 0.05
    assert rec.per_attack[0].params["suite"]["version"] == "standard"
    target.model = Noisy(target.model)
    (outcome,) = evaluate(target, attacks=["autoattack"], eps=["0.2"], n_examples=20)
    assert outcome.record.per_attack[0].params["suite"]["version"] == "rand"
    assert "stochastic-model" in outcome.record.flags


def test_robust_accuracy_rising_with_eps_is_flagged(digits_run, monkeypatch):
    from robench.attacks import gradient

    target = from_run(digits_run)
    real_run = gradient.FGSM.run

    def weaker_at_larger_eps(self, model, x, y, judge=None):  # a masked-gradient stand-in
        return x.clone() if self.eps > 0.15 else real_run(self, model, x, y, judge)

    monkeypatch.setattr(gradient.FGSM, "run", weaker_at_larger_eps)
    outcomes = evaluate(target, attacks=["fgsm"], eps=["0.2", "0.1"], n_examples=40)
    assert [o.record.eps for o in outcomes] == [0.1, 0.2]  # evaluated in increasing order
    assert not outcomes[0].record.flags
    assert any(f.startswith("robust-accuracy-rose-with-eps") for f in outcomes[1].record.flags)
