"""RobustBench's model zoo: `robench eval --model robustbench:<name>` on checkpoints written here
in RobustBench's layout (no network: random weights of a small zoo architecture)."""

import hashlib
import importlib.util
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import one_line_error
from PIL import Image
from typer.testing import CliRunner

from robench.cli import app
from robench.records import validate

if importlib.util.find_spec("robustbench") is None:  # `make test` installs it (the dev extra)
    pytest.skip("the robustbench extra is not installed", allow_module_level=True)

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()
NAME = "Sehwag2021Proxy_R18"  # a ResNet-18: the smallest kind of architecture in the zoo
CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def downloader(monkeypatch):
    """Replaces RobustBench's Google Drive downloader: set(fn) installs fn(gdrive_id, dest)."""
    from robench.targets.zoo import model_zoo

    model_zoo()  # the package imported the way robench imports it
    import robustbench.utils

    return lambda fn: monkeypatch.setattr(robustbench.utils, "download_gdrive_new", fn)


def zoo_net():
    from robench.targets.zoo import model_zoo

    return model_zoo()["cifar10"]["Linf"][NAME]["model"]()


@pytest.fixture
def cifar_folder(tmp_path):
    """A CIFAR-10 shaped image folder: 10 classes, 32x32, 2 train and 2 test images each."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in CIFAR10:
            for i in range(2):
                path = tmp_path / "cifar" / split / cls / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    return tmp_path / "cifar"


@pytest.fixture
def zoo_checkpoint(tmp_path):
    """Random weights saved the way RobustBench's files are: {'state_dict': {'module.<key>'}}
    at <model_dir>/cifar10/Linf/<name>.pt. Returns (model_dir, path, the state dict)."""
    torch.manual_seed(0)
    state = {k: v.clone() for k, v in zoo_net().state_dict().items()}
    for k, v in state.items():  # not the architecture's own initial values
        if v.is_floating_point():
            state[k] = torch.randn_like(v) * 0.05 + (1.0 if k.endswith("running_var") else 0)
    path = tmp_path / "models" / "cifar10" / "Linf" / f"{NAME}.pt"
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    return tmp_path / "models", path, state


def zoo_args(folder, model_dir, out, *more):
    return ["eval", "--model", f"robustbench:{NAME}", "--dataset", f"imagefolder:{folder}",
            "--zoo-dataset", "cifar10", "--model-dir", model_dir, "--out", out, "-A", "fgsm",
            "-n", "8", "--eps", "8/255", "--quiet", *more]


def test_a_zoo_model_is_built_from_the_package_and_loads_the_checkpoint_exactly(zoo_checkpoint):
    from robench.targets.zoo import load_zoo_model

    model_dir, path, state = zoo_checkpoint
    zoo = load_zoo_model(f"robustbench:{NAME}", dataset="cifar10", threat="Linf",
                         model_dir=model_dir)
    loaded = zoo.model.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert not zoo.model.training
    assert zoo.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert zoo.checkpoint == str(path)


def test_eval_records_the_zoo_model_and_its_checkpoint_hash(cifar_folder, zoo_checkpoint,
                                                            tmp_path):
    model_dir, path, _ = zoo_checkpoint
    result = invoke(*zoo_args(cifar_folder, model_dir, tmp_path / "evals"))
    assert result.exit_code == 0, result.output
    (record_file,) = (tmp_path / "evals").glob("fgsm-*.json")
    record = validate(json.loads(record_file.read_text()))
    m = record.model
    assert (m.kind, m.zoo, m.arch, m.zoo_dataset, m.zoo_threat) == (
        "zoo", "robustbench", NAME, "cifar10", "Linf")
    assert m.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert m.checkpoint == str(path)
    assert record.selection.n_examples == 8 and record.published is None
    assert "next: robench report" in result.stderr


def test_a_pickle_with_a_payload_in_the_zoo_layout_is_refused(cifar_folder, tmp_path):
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "models" / "cifar10" / "Linf" / f"{NAME}.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps({"state_dict": Payload()}))
    line = one_line_error(invoke(*zoo_args(cifar_folder, tmp_path / "models", tmp_path / "o")))
    assert "weights_only" in line and str(path) in line
    assert not marker.exists() and not (tmp_path / "o").exists()


def test_a_missing_checkpoint_names_the_path_and_downloads_only_when_asked(
        cifar_folder, tmp_path, downloader):
    calls = []
    downloader(lambda gid, dest: calls.append(gid))
    line = one_line_error(invoke(*zoo_args(cifar_folder, tmp_path / "models", tmp_path / "o")))
    assert f"models/cifar10/Linf/{NAME}.pt" in line and "--download" in line
    assert calls == []

    def offline(gid, dest):
        calls.append(gid)
        raise ConnectionError("no network")

    downloader(offline)
    line = one_line_error(invoke(*zoo_args(cifar_folder, tmp_path / "models", tmp_path / "o"),
                                 "--download"))
    assert "downloading" in line and "ConnectionError" in line and len(calls) == 1
    assert not (tmp_path / "models" / "cifar10" / "Linf" / f"{NAME}.pt").exists()


def test_download_writes_robustbench_s_layout_and_the_file_is_then_loaded(
        cifar_folder, zoo_checkpoint, tmp_path, downloader):
    _, source, _ = zoo_checkpoint
    downloader(lambda gid, dest: Path(dest).write_bytes(source.read_bytes()))
    fresh = tmp_path / "fresh-models"
    result = invoke(*zoo_args(cifar_folder, fresh, tmp_path / "o"), "--download")
    assert result.exit_code == 0, result.output
    assert (fresh / "cifar10" / "Linf" / f"{NAME}.pt").read_bytes() == source.read_bytes()


def test_published_accuracies_go_in_the_record_and_beside_robench_s_in_the_report(
        cifar_folder, zoo_checkpoint, tmp_path):
    info = tmp_path / "model_info" / "cifar10" / "Linf" / f"{NAME}.json"
    info.parent.mkdir(parents=True)
    info.write_text(json.dumps({"name": "x", "eps": "8/255", "clean_acc": "84.59",
                                "reported": "55.54", "autoattack_acc": "55.54"}))
    model_dir, _, _ = zoo_checkpoint
    out = tmp_path / "runs" / "zoo" / "evals"
    result = invoke(*zoo_args(cifar_folder, model_dir, out), "--model-info",
                    tmp_path / "model_info")
    assert result.exit_code == 0, result.output
    (record_file,) = out.glob("fgsm-*.json")
    published = validate(json.loads(record_file.read_text())).published
    assert (published.clean_acc, published.robust_acc, published.metric) == (
        0.8459, 0.5554, "autoattack")
    report = invoke("report", tmp_path / "runs", "--out", tmp_path / "board", "--quiet")
    assert report.exit_code == 0, report.output
    md = (tmp_path / "board" / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| rank"))
    row = next(line for line in md.splitlines() if f"robustbench:{NAME}" in line)
    cells = dict(zip(header.split("|"), row.split("|"), strict=True))
    assert cells[" published clean "].strip() == "84.6%"
    assert cells[" published AA "].strip() == "55.5%"


@pytest.mark.parametrize("name, match", [
    ("Sehwag2021Proxy_R19", "did you mean 'Sehwag2021Proxy_R18'"),
    ("Chen2020Adversarial", "ensemble"),
])  # fmt: skip
def test_unknown_and_ensemble_zoo_models_are_one_sentence(cifar_folder, tmp_path, name, match):
    args = zoo_args(cifar_folder, tmp_path / "models", tmp_path / "o")
    args[2] = f"robustbench:{name}"
    assert match in one_line_error(invoke(*args))


def test_zoo_options_without_a_zoo_model_are_refused(digits_run):
    line = one_line_error(invoke("eval", digits_run, "--threat", "L2", "-A", "fgsm"))
    assert "--threat" in line and "robustbench" in line


def test_a_checkpoint_of_another_architecture_is_refused_naming_keys(cifar_folder, tmp_path):
    path = tmp_path / "models" / "cifar10" / "Linf" / f"{NAME}.pt"
    path.parent.mkdir(parents=True)
    torch.save({"conv.weight": torch.zeros(3)}, path)
    line = one_line_error(invoke(*zoo_args(cifar_folder, tmp_path / "models", tmp_path / "o")))
    assert "does not fit" in line and "missing keys" in line


def test_list_zoo_shows_which_checkpoints_are_here(zoo_checkpoint):
    model_dir, _, _ = zoo_checkpoint
    result = invoke("list", "zoo", "Sehwag2021Proxy*", "--model-dir", model_dir, "--json")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)["zoo"]}
    assert rows[NAME]["checkpoint_here"] is True
    assert rows["Sehwag2021Proxy"]["checkpoint_here"] is False


def test_published_numbers_at_another_eps_are_left_out_of_that_table(
        cifar_folder, zoo_checkpoint, tmp_path):
    info = tmp_path / "model_info" / "cifar10" / "Linf" / f"{NAME}.json"
    info.parent.mkdir(parents=True)
    info.write_text(json.dumps({"eps": "8/255", "clean_acc": "84.59", "autoattack_acc": "55.54"}))
    model_dir, _, _ = zoo_checkpoint
    out = tmp_path / "runs" / "zoo" / "evals"
    args = zoo_args(cifar_folder, model_dir, out, "--model-info", tmp_path / "model_info")
    args[args.index("8/255")] = "4/255"
    assert invoke(*args).exit_code == 0
    from robench import report

    (table,) = report.leaderboard(report.load_records([tmp_path / "runs"])).values()
    assert table["published_clean"].isna().all()
