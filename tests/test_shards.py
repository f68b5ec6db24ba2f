"""An evaluation spread over shards or torchrun's processes equals one process, point by point."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from helpers import one_line_error
from typer.testing import CliRunner

from robench import api, records
from robench.cli import app
from robench.errors import Interrupted, UserError
from robench.evaluation.blocks import Shard

pytestmark = pytest.mark.usefixtures("one_thread")

# PGD, then AutoAttack's APGD-CE (the package's code, called once per block like the suite).
EVAL = dict(attacks=["pgd", "apgd-ce"], params={"pgd": {"steps": 5}}, eps=["0.05"],
            n_examples=90, batch_size=15)
FLAGS = ["-A", "pgd", "--steps", "5", "-A", "apgd-ce", "--eps", "0.05", "-n", "90",
         "-b", "15", "--device", "cpu", "--quiet"]


def _copy(run, tmp_path, name):
    """A copy of the session's run without its records, so each test starts from none."""
    dest = tmp_path / name
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("evals"))
    return dest


def _cfg(**changes):
    spec = {**EVAL, **changes}
    return api.EvalConfig(attacks=list(spec["attacks"]), params=dict(spec["params"]),
                          eps=list(spec["eps"]), n_examples=spec["n_examples"],
                          batch_size=spec["batch_size"], device="cpu")


def _verdicts(record):
    """What must not depend on how the points were split: every verdict and count."""
    return {
        "points": (record.points.clean, record.points.robust),
        "accuracy": (record.clean_acc, record.robust_acc, record.autoattack_acc),
        "steps": [(s.name, s.broken, s.attacked, s.disputed, s.robust_acc_after)
                  for s in record.per_attack],
        "flags": record.flags,
    }


@pytest.fixture(scope="module")
def one_process(digits_run, tmp_path_factory):
    run = _copy(digits_run, tmp_path_factory.mktemp("single"), "run")
    (outcome,) = api.evaluate(api.from_run(run), _cfg(), quiet=True)
    record = outcome.record
    # Not a vacuous comparison: points broken by each attack, and points left robust.
    assert record.per_attack[0].broken > 0 and record.per_attack[1].broken > 0
    assert 0 < record.robust_acc < record.clean_acc
    return record


def test_the_shards_cover_every_block_once_in_contiguous_shares():
    for blocks in (1, 2, 5, 7, 16):
        for count in (1, 2, 3, 4, 8):
            shares = [list(Shard(i, count).blocks(blocks)) for i in range(count)]
            assert [b for share in shares for b in share] == list(range(blocks))
            assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_a_shard_is_written_i_slash_n_and_anything_else_is_refused():
    assert Shard.parse("1/3") == Shard(1, 3) and Shard.parse(" 0 / 1 ").whole
    for text in ("3/3", "1", "a/b", "0/0", "-1/2"):
        with pytest.raises(UserError, match="i/N"):
            Shard.parse(text)


def test_three_shards_merged_equal_one_process_point_by_point(digits_run, tmp_path,
                                                              one_process):
    run = _copy(digits_run, tmp_path, "run")
    target = api.from_run(run)
    parts = [api.evaluate(target, _cfg(), quiet=True, shard=Shard(i, 3))[0]
             for i in range(3)]
    assert [int(p.partial.state.covered_mask().sum()) for p in parts] == [30, 30, 30]
    assert not list((run / "evals").glob("*.json"))  # parts only, no record yet
    (merged,) = api.merge_shards(target, _cfg())
    assert _verdicts(merged.record) == _verdicts(one_process)
    assert merged.record.key == one_process.key
    assert not list((run / "evals").glob("*.partial"))  # the parts went into the record


def test_the_standard_autoattack_in_two_shards_equals_one_process(digits_run, tmp_path):
    cfg = dict(attacks=["autoattack"], params={}, n_examples=20, batch_size=10)
    single, sharded = _copy(digits_run, tmp_path, "one"), _copy(digits_run, tmp_path, "two")
    (one,) = api.evaluate(api.from_run(single), _cfg(**cfg), quiet=True)
    assert 0 < one.record.robust_acc < one.record.clean_acc
    target = api.from_run(sharded)
    for i in range(2):
        api.evaluate(target, _cfg(**cfg), quiet=True, shard=Shard(i, 2))
    (merged,) = api.merge_shards(target, _cfg(**cfg))
    assert _verdicts(merged.record) == _verdicts(one.record)
    assert merged.record.autoattack_acc == one.record.autoattack_acc


def test_a_merge_with_a_shard_missing_or_of_another_split_is_refused(digits_run, tmp_path):
    run = _copy(digits_run, tmp_path, "run")
    target = api.from_run(run)
    for i in (0, 2):
        api.evaluate(target, _cfg(), quiet=True, shard=Shard(i, 3))
    with pytest.raises(UserError, match=r"shard 1/3 is missing: .*shard-1-of-3.partial. was"):
        api.merge_shards(target, _cfg())
    api.evaluate(target, _cfg(), quiet=True, shard=Shard(1, 2))
    with pytest.raises(UserError, match="different numbers of shards"):
        api.merge_shards(target, _cfg())
    assert not list((run / "evals").glob("*.json"))  # nothing half-written


def test_an_interrupted_shard_resumes_inside_the_attack_it_was_running(
        digits_run, tmp_path, monkeypatch, one_process):
    from robench.attacks.gradient import PGD

    run = _copy(digits_run, tmp_path, "run")
    target = api.from_run(run)
    real, calls, interrupted = PGD.run, [], []

    def interrupted_on_the_second_block(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2 and not interrupted:
            interrupted.append(1)
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(PGD, "run", interrupted_on_the_second_block)
    shard = Shard(0, 1 + 2)  # blocks 0 and 1 of the six
    with pytest.raises(Interrupted, match="--resume"):
        api.evaluate(target, _cfg(), quiet=True, shard=shard)
    calls.clear()
    (resumed,) = api.evaluate(target, _cfg(), quiet=True, shard=shard, resume=True)
    assert len(calls) == 1  # only the block that was interrupted ran again
    for i in (1, 2):
        api.evaluate(target, _cfg(), quiet=True, shard=Shard(i, 3))
    (merged,) = api.merge_shards(target, _cfg())
    assert _verdicts(merged.record) == _verdicts(one_process)


def test_shard_and_merge_from_the_command_line(digits_run, tmp_path, one_process):
    run = _copy(digits_run, tmp_path, "run")
    cli = CliRunner()
    line = one_line_error(cli.invoke(app, ["eval", str(run), *FLAGS, "--merge"]))
    assert "no shard of this evaluation" in line
    line = one_line_error(cli.invoke(app, ["eval", str(run), *FLAGS, "--shard", "2/2x"]))
    assert "--shard '2/2x'" in line
    for i in range(2):
        result = cli.invoke(app, ["eval", str(run), *FLAGS, "--shard", f"{i}/2"])
        assert result.exit_code == 0, result.output
        assert f"shard {i}/2" in result.stdout and "--merge instead of --shard" in result.stderr
    result = cli.invoke(app, ["eval", str(run), *FLAGS, "--merge", "--json"])
    assert result.exit_code == 0, result.output
    (data,) = json.loads(result.stdout)
    assert (data["points"]["clean"], data["points"]["robust"]) == _verdicts(one_process)["points"]
    assert any("2 shards" in note for note in data["notes"])


@pytest.mark.slow
def test_two_torchrun_processes_write_the_record_of_one_process(digits_run, tmp_path,
                                                                one_process):
    run = _copy(digits_run, tmp_path, "run")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
         "2", "-m", "robench", "eval", str(run), *FLAGS, "--json"],
        capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (data,) = json.loads(done.stdout)  # rank 0 alone prints
    (path,) = (run / "evals").glob("*.json")
    record = records.read(path)
    assert _verdicts(record) == _verdicts(one_process)
    assert data["key"] == one_process.key
    assert not list((run / "evals").glob("*.partial"))
