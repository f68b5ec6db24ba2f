"""What a result cost: seconds, throughput and peak memory in env.json, records and reports."""

import json

import pytest

from robench import api
from robench.cost import CPU
from robench.evaluation.blocks import Shard
from robench.report import read_csv

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def costed_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("costed")
    cfg, _ = api.resolve_config([{"data": {"dataset": "digits", "train_subset": 256},
                                  "optim": {"epochs": 2, "batch_size": 64},
                                  "validation": {"steps": 2}, "runtime": {"device": "cpu"}}])
    return api.train(cfg, out=out, quiet=True).run_dir


def test_a_training_run_records_its_wall_time_throughput_and_peak_memory(costed_run):
    summary = json.loads((costed_run / "env.json").read_text())["summary"]
    cost = summary["cost"]
    assert cost["peak_memory"] == CPU
    assert cost["peak_memory_bytes"] > 2**26  # a process with torch loaded: well over 64 MiB
    assert cost["seconds"] >= summary["train_seconds"] > 0  # validation is in the wall time
    images = 2 * 4 * 64  # epochs x full batches of 256 images x batch
    assert cost["items_per_s"] == round(images / cost["seconds"], 3)


def test_an_evaluation_record_and_a_merged_one_carry_their_cost(costed_run):
    target = api.from_run(costed_run)
    cfg = api.EvalConfig(attacks=["fgsm"], eps=["0.1"], n_examples=40, batch_size=20,
                         device="cpu")
    (outcome,) = api.evaluate(target, cfg, quiet=True)
    r = outcome.record
    assert r.schema_version == 5
    assert r.cost.seconds == r.seconds and r.cost.items_per_s == round(40 / r.seconds, 3)
    assert r.cost.peak_memory == CPU and r.cost.peak_memory_bytes > 2**26
    outcome.path.unlink()
    for i in range(2):
        api.evaluate(target, cfg, quiet=True, shard=Shard(i, 2))
    (merged,) = api.merge_shards(target, cfg)
    assert merged.record.cost.peak_memory_bytes > 2**26
    assert merged.record.cost.seconds == merged.record.seconds


def test_the_report_shows_training_time_and_peak_memory_and_plots_cost(costed_run, tmp_path):
    peak = json.loads((costed_run / "env.json").read_text())["summary"]["cost"]
    loaded = api.load_records([costed_run])
    written = api.write_report(loaded, tmp_path, ["md", "csv", "png"])
    (csv,) = [p for p in written if p.suffix == ".csv" and "corruption" not in p.name]
    table = read_csv(csv)
    assert table.loc[0, "train_peak_memory"] == peak["peak_memory_bytes"]
    md = next(p for p in written if p.suffix == ".md").read_text()
    assert "train MiB" in md and f"{peak['peak_memory_bytes'] / 2**20:.0f}" in md
    assert any(p.name.endswith("-cost-vs-robust.png") for p in written)


def _out_of_memory(*args, **kwargs):
    raise RuntimeError("[enforce fail at alloc_cpu.cpp:116] . DefaultCPUAllocator: can't "
                       "allocate memory: you tried to allocate 68719476736 bytes.")


def test_out_of_memory_in_an_evaluation_names_the_batch_size_to_try(costed_run, monkeypatch):
    from robench.attacks.gradient import FGSM
    from robench.errors import UserError

    monkeypatch.setattr(FGSM, "run", _out_of_memory)
    cfg = api.EvalConfig(attacks=["fgsm"], eps=["0.2"], n_examples=30, batch_size=300,
                         device="cpu")
    with pytest.raises(UserError, match=r"out of memory on cpu at --batch-size 300; try "
                                        r"--batch-size 150"):
        api.evaluate(api.from_run(costed_run), cfg, quiet=True)


def test_out_of_memory_in_training_names_the_batch_size_and_marks_the_run_failed(
        tmp_path, monkeypatch):
    from robench.defenses.standard import StandardObjective
    from robench.errors import UserError

    monkeypatch.setattr(StandardObjective, "__call__", _out_of_memory)
    cfg, _ = api.resolve_config([{"data": {"dataset": "digits", "train_subset": 128},
                                  "optim": {"epochs": 1, "batch_size": 64},
                                  "runtime": {"device": "cpu"}}])
    with pytest.raises(UserError, match=r"--batch-size 64; train with --batch-size 32"):
        api.train(cfg, out=tmp_path, quiet=True)
    (run,) = tmp_path.iterdir()
    assert json.loads((run / "env.json").read_text())["status"] == "failed"
