"""A stored record is shown instead of evaluating again only when it measured the same thing:
the same evaluated parameters and buffers, the same code, the same data by content, the same
preprocessing and the same versions of robench, torch and AutoAttack."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from image_folders import make_folder, write_image

import robench
from robench import api
from robench.config import EvalConfig
from robench.data import load_dataset
from robench.targets import from_external

pytestmark = pytest.mark.usefixtures("private_cache", "one_thread")

CFG = dict(attacks=["fgsm"], eps=["0.1"], n_examples=10, device="cpu")

# A model file whose weights come from a seed in a text file beside it: no --weights, and
# the Python source is the same whatever the seed.
SEEDED_MODEL = '''
from pathlib import Path

import torch
from torch import nn


def build():
    torch.manual_seed(int(Path(__file__).with_name("seed.txt").read_text()))
    return nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(CHANNELS * 4, CLASSES))
'''


def _model_file(folder: Path, channels=1, classes=10, seed=0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "seed.txt").write_text(str(seed))
    path = folder / "mine.py"
    path.write_text(f"CHANNELS, CLASSES = {channels}, {classes}\n" + SEEDED_MODEL)
    return path


def _eval(model: Path, out: Path, dataset="digits", **target):
    target = from_external(f"{model}:build", weights=None, dataset=dataset, out=out, **target)
    (outcome,) = api.evaluate(target, EvalConfig(**CFG), quiet=True)
    return outcome


def test_a_model_file_without_weights_whose_weights_differ_is_evaluated_again(tmp_path):
    model, out = _model_file(tmp_path / "m"), tmp_path / "evals"
    first = _eval(model, out)
    assert _eval(model, out).reused  # the same seed: the same parameters
    (tmp_path / "m" / "seed.txt").write_text("1")
    second = _eval(model, out)
    assert not second.reused
    assert len(list(out.glob("*.json"))) == 2
    assert second.record.model.state_sha256 != first.record.model.state_sha256
    assert second.record.model.file_sha256 == first.record.model.file_sha256


def _helper_model(tmp_path: Path, scale: str) -> tuple[Path, str]:
    """A model file in models/ that imports a helper from lib/, a folder beside it, inside
    its factory; the helper's SCALE multiplies the logits, so an edit changes no weight."""
    name = "reuse_helper_" + "".join(c if c.isalnum() else "_" for c in tmp_path.name)
    (tmp_path / "lib").mkdir(exist_ok=True)
    (tmp_path / "lib" / f"{name}.py").write_text(
        "import torch\nfrom torch import nn\n\n"
        f"SCALE = {scale}\n\n\n"
        "class Scaled(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        torch.manual_seed(0)\n"
        "        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))\n\n"
        "    def forward(self, x):\n"
        "        return self.net(x) * SCALE\n")
    model = tmp_path / "models" / "mine.py"
    model.parent.mkdir(exist_ok=True)
    model.write_text(
        "import sys\nfrom pathlib import Path\n\n"
        "sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'lib'))\n\n\n"
        f"def build():\n    from {name} import Scaled\n\n    return Scaled()\n")
    return model, name


def test_an_edited_helper_module_that_the_model_imports_is_evaluated_again(tmp_path):
    model, name = _helper_model(tmp_path, "1.0")
    out = tmp_path / "evals"
    first = _eval(model, out)
    sys.modules.pop(name)  # each CLI command is a new process: the helper is read again
    assert _eval(model, out).reused
    sys.modules.pop(name)
    _helper_model(tmp_path, "-1.0")
    second = _eval(model, out)
    sys.modules.pop(name)
    assert not second.reused
    assert len(list(out.glob("*.json"))) == 2
    assert second.record.model.state_sha256 == first.record.model.state_sha256
    assert second.record.model.file_sha256 != first.record.model.file_sha256


def test_an_edited_factory_body_is_evaluated_again(tmp_path):
    model, out = _model_file(tmp_path / "m"), tmp_path / "evals"
    _eval(model, out)
    model.write_text(model.read_text().replace("CLASSES))", "CLASSES), nn.Tanh())"))
    assert not _eval(model, out).reused


def test_a_record_of_another_robench_version_is_not_reused(tmp_path, monkeypatch):
    model, out = _model_file(tmp_path / "m"), tmp_path / "evals"
    first, installed = _eval(model, out), robench.__version__
    monkeypatch.setattr(robench, "__version__", "999.0")
    second = _eval(model, out)
    assert not second.reused
    assert (first.record.versions["robench"], second.record.versions["robench"]) == (
        installed, "999.0")
    assert sorted(first.record.versions) == ["pyautoattack", "robench", "torch"]


def test_a_record_with_another_mean_and_std_is_not_reused(tmp_path):
    model, out = _model_file(tmp_path / "m"), tmp_path / "evals"
    first = _eval(model, out, mean=(0.0,), std=(1.0,))
    second = _eval(model, out, mean=(0.5,), std=(0.25,))
    assert not second.reused
    assert (first.record.data.mean, first.record.data.std) == ([0.0], [1.0])
    assert (second.record.data.mean, second.record.data.std) == ([0.5], [0.25])
    assert _eval(model, out).record.data.mean == []  # no normalisation in front


def test_a_record_at_another_image_size_is_not_reused(tmp_path):
    out = tmp_path / "evals"
    model = _model_file(tmp_path / "m")  # pools to 2x2: any image size fits
    first = _eval(model, out, image_size=8)
    second = _eval(model, out, image_size=6)
    assert not second.reused
    assert (first.record.data.image_size, second.record.data.image_size) == (8, 6)
    assert first.record.data.fingerprint != second.record.data.fingerprint


def test_an_image_folder_copied_to_another_path_is_the_same_dataset_and_its_record_reused(
        tmp_path):
    here = make_folder(tmp_path / "a" / "imgs", n_train=4, n_test=3)
    there = shutil.copytree(here, tmp_path / "b" / "copy")
    a, b = load_dataset(f"imagefolder:{here}"), load_dataset(f"imagefolder:{there}")
    assert a.info.name == b.info.name
    assert a.info.name.startswith("imagefolder:") and str(tmp_path) not in a.info.name
    model, out = _model_file(tmp_path / "m", channels=3, classes=4), tmp_path / "evals"
    first = _eval(model, out, dataset=f"imagefolder:{here}")
    again = _eval(model, out, dataset=f"imagefolder:{there}")
    assert again.reused and again.path == first.path
    assert first.record.dataset == a.info.name
    api.write_report(api.load_records([out]), tmp_path / "board", ["md"])
    board = (tmp_path / "board" / "report.md").read_text()
    assert a.info.name in board and str(tmp_path) not in board


def test_a_changed_image_makes_another_dataset_and_is_evaluated_again(tmp_path):
    root = make_folder(tmp_path / "imgs", n_train=4, n_test=3)
    name = load_dataset(f"imagefolder:{root}").info.name
    model, out = _model_file(tmp_path / "m", channels=3, classes=4), tmp_path / "evals"
    first = _eval(model, out, dataset=f"imagefolder:{root}")
    write_image(root / "test" / "sky" / "000.png", (20, 20, 200), marker=77)
    assert load_dataset(f"imagefolder:{root}").info.name != name
    second = _eval(model, out, dataset=f"imagefolder:{root}")
    assert not second.reused
    assert second.record.data.fingerprint != first.record.data.fingerprint
