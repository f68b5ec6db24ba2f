"""`--batch-size auto` picks the largest batch that fits, records it, and says so; a slow
precision is named before the work starts."""

import json
import warnings

import pytest
import torch
from helpers import one_line_error
from torch import nn
from typer.testing import CliRunner

from robench import api
from robench.cli import app
from robench.errors import RobenchWarning, UserError
from robench.evaluation import batch_size as auto
from robench.evaluation.blocks import Shard

pytestmark = pytest.mark.usefixtures("one_thread")
MiB = 2**20


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("auto")
    cfg, _ = api.resolve_config([{"data": {"dataset": "digits", "train_subset": 256},
                                  "optim": {"epochs": 1, "batch_size": 64},
                                  "validation": {"steps": 2}, "runtime": {"device": "cpu"}}])
    return api.train(cfg, out=out, quiet=True).run_dir


def _linear_inputs(n=8):
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), torch.rand(n, 1, 8, 8), \
        torch.randint(0, 10, (n,))


@pytest.fixture
def choose(monkeypatch):
    """choose_batch_size with a stated cost per point and a stated free memory, in MiB."""

    def run(n_points, free_mib, per_point_mib=1.0, **kwargs):
        net, x, y = _linear_inputs()
        monkeypatch.setattr(auto, "step_bytes_per_point", lambda *a: int(per_point_mib * MiB))
        return auto.choose_batch_size(net, x, y, n_points, free=lambda d: free_mib * MiB,
                                      **kwargs)

    return run


def test_the_choice_is_the_largest_power_of_two_within_half_the_free_memory(choose):
    # 1 MiB per point, 300 MiB free: 150 MiB may be used, so 128 points, not 256.
    assert choose(1000, 300).batch_size == 128
    assert choose(1000, 1024).batch_size == 512
    # All the points, when they fit: a batch of 360, not 256.
    assert choose(360, 1024).batch_size == 360
    # Never more than MAX_BATCH, however much memory is free.
    assert choose(100_000, 10**7, per_point_mib=0.001).batch_size == auto.MAX_BATCH


def test_a_batch_that_runs_out_of_memory_for_real_is_halved_until_one_fits(choose):
    tried = []

    def trial(search, x, y, batch):
        tried.append(batch)
        return batch <= 64  # a device that fails above 64 points, whatever the estimate

    choice = choose(1000, 10_000, trial=trial, confirm=True)
    assert choice.batch_size == 64
    assert tried == [1000, 512, 256, 128, 64]


def test_an_out_of_memory_error_in_the_trial_means_it_does_not_fit(monkeypatch):
    net, x, y = _linear_inputs()

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(net, "forward", oom)
    assert auto._fits_on_device(net, x, y, 4) is False


def test_when_not_even_one_point_fits_the_error_says_how_much_is_needed(choose):
    with pytest.raises(UserError, match=r"one point needs about 512 MiB for an attack step "
                                        r"and 100 MiB are free"):
        choose(1000, 100, per_point_mib=512)


def test_the_estimate_counts_what_autograd_saves_per_point():
    net, x, y = _linear_inputs(8)
    # A wider layer saves no more per point (the weights are not per point), a deeper
    # network saves its hidden activations: the estimate must grow with them.
    deep = nn.Sequential(nn.Flatten(), nn.Linear(64, 4096), nn.ReLU(), nn.Linear(4096, 10))
    shallow = auto.step_bytes_per_point(net, x, y)
    deeper = auto.step_bytes_per_point(deep, x, y)
    assert deeper - shallow >= auto.HEADROOM * 4096 * 4  # at least the 4096 hidden floats


def test_an_evaluation_with_auto_records_the_chosen_batch_and_matches_that_number(small_run):
    target = api.from_run(small_run)
    cfg = api.EvalConfig(attacks=["fgsm"], eps=["0.1"], n_examples=40, batch_size="auto",
                         device="cpu")
    (outcome,) = api.evaluate(target, cfg, quiet=True)
    r = outcome.record
    assert r.batch_size == 40  # 40 points of an 8x8 CNN fit many times over
    assert any(n.startswith("--batch-size auto chose 40:") for n in r.notes)
    explicit = api.EvalConfig(attacks=["fgsm"], eps=["0.1"], n_examples=40, batch_size=40,
                              device="cpu")
    (again,) = api.evaluate(target, explicit, quiet=True)
    assert again.reused and again.path == outcome.path


def test_auto_is_refused_where_every_process_must_share_the_blocks(small_run):
    target = api.from_run(small_run)
    cfg = api.EvalConfig(attacks=["fgsm"], eps=["0.1"], n_examples=40, batch_size="auto",
                         device="cpu")
    with pytest.raises(UserError, match="shards must share their blocks"):
        api.evaluate(target, cfg, quiet=True, shard=Shard(0, 2))
    with pytest.raises(UserError, match="--merge needs the --batch-size number"):
        api.merge_shards(target, cfg)


@pytest.mark.parametrize("value", ["0", "-4", "many", "1.5", ""])
def test_a_batch_size_that_is_neither_a_number_nor_auto_is_one_clear_error(small_run, value):
    result = CliRunner().invoke(app, ["eval", str(small_run), "-A", "fgsm",
                                      "--batch-size", value])
    line = one_line_error(result)
    assert f"--batch-size must be a positive integer or 'auto', got {value!r}" in line


def test_the_cli_takes_auto_and_shows_the_choice(small_run):
    result = CliRunner().invoke(app, ["eval", str(small_run), "-A", "fgsm", "--eps", "0.05",
                                      "-n", "24", "--batch-size", "auto", "--json"])
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)
    assert record["batch_size"] == 24


def test_bf16_on_a_cpu_without_bf16_instructions_is_a_warning_naming_fp32(monkeypatch):
    from robench import runtime

    cpu = torch.device("cpu")
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    with pytest.warns(RobenchWarning, match=r"--precision bf16: this CPU \(.*\) has no bf16 "
                                            r"instructions .*--precision fp32 will be faster"):
        runtime.warn_if_slow(cpu, "bf16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runtime.warn_if_slow(cpu, "fp32")  # fp32 is never slow
        monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: True)
        runtime.warn_if_slow(cpu, "bf16")


def test_the_cli_prints_the_slow_precision_warning_as_one_line(small_run, monkeypatch):
    from robench import runtime

    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    result = CliRunner().invoke(app, ["attack", str(small_run), "-A", "fgsm", "--eps", "0.05",
                                      "-n", "8", "--precision", "bf16", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    (line,) = [ln for ln in result.stderr.splitlines() if "bf16" in ln]
    assert line.startswith("warning: --precision bf16: this CPU")
    assert "Warning" not in result.stderr and ".py:" not in result.stderr
