"""Planted cases of record reuse: a stored record shown for a model or data that changed.

    cases(workdir) -> [(case, what robench does here, the truth)]

Each case evaluates a tiny model twice through `robench.api` (FGSM, 10 points): once, then
after one change, and says whether the second call reused the stored record. Uses only
functions that exist at commit 830c880, so it runs against an older checkout too.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from image_folders import make_folder, write_image  # noqa: E402

from robench import api  # noqa: E402
from robench.config import EvalConfig  # noqa: E402
from robench.targets import from_external  # noqa: E402

SEEDED = '''
from pathlib import Path

import torch
from torch import nn

CHANNELS, CLASSES = {channels}, {classes}


def build():
    torch.manual_seed(int(Path(__file__).with_name("seed.txt").read_text()))
    return nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(CHANNELS * 4, CLASSES))
'''

HELPER = '''
import torch
from torch import nn

SHIFT = {shift}


class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

    def forward(self, x):
        return torch.roll(self.net(x), SHIFT, dims=1)
'''


def _eval(model: Path, out: Path, dataset: str = "digits", **kw):
    target = from_external(f"{model}:build", weights=None, dataset=dataset, out=out, **kw)
    cfg = EvalConfig(attacks=["fgsm"], eps=["0.1"], n_examples=10, device="cpu")
    (outcome,) = api.evaluate(target, cfg, quiet=True)
    return outcome


def _shown(outcome) -> str:
    r = outcome.record
    what = "reused the stored record" if outcome.reused else "evaluated again"
    return f"{what} (clean {r.clean_acc:.2f}, robust {r.robust_acc:.2f})"


def _seeded(folder: Path, channels=1, classes=10, seed=0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "seed.txt").write_text(str(seed))
    (folder / "mine.py").write_text(SEEDED.format(channels=channels, classes=classes))
    return folder / "mine.py"


def _edited_helper(work: Path) -> tuple[str, str, str]:
    name = "planted_reuse_helper"
    (work / "lib").mkdir(parents=True)
    (work / "models").mkdir()
    model = work / "models" / "mine.py"
    model.write_text("import sys\nfrom pathlib import Path\n\nsys.path.insert(0, str(Path("
                     "__file__).resolve().parents[1] / 'lib'))\n\n\ndef build():\n"
                     f"    from {name} import Scaled\n\n    return Scaled()\n")
    (work / "lib" / f"{name}.py").write_text(HELPER.format(shift=0))
    _eval(model, work / "evals")
    sys.modules.pop(name, None)  # as a new process would, read the helper again
    (work / "lib" / f"{name}.py").write_text(HELPER.format(shift=3))
    shown = _eval(model, work / "evals")
    sys.modules.pop(name, None)
    truth = _eval(model, work / "fresh")  # the edited model, never evaluated before
    sys.modules.pop(name, None)
    return ("edited helper module (logits rolled, weights unchanged)", _shown(shown),
            f"a new model: {_shown(truth).replace('evaluated again', 'evaluated')}")


def _changed_weights(work: Path) -> tuple[str, str, str]:
    model = _seeded(work / "m")
    _eval(model, work / "evals")
    (work / "m" / "seed.txt").write_text("1")
    shown = _eval(model, work / "evals")
    truth = _eval(model, work / "fresh")
    return ("model file without --weights, weights seeded differently", _shown(shown),
            f"other weights: {_shown(truth).replace('evaluated again', 'evaluated')}")


def _preprocessing(work: Path) -> list[tuple[str, str, str]]:
    model = _seeded(work / "m")
    _eval(model, work / "norm", mean=(0.0,), std=(1.0,))
    norm = _eval(model, work / "norm", mean=(0.5,), std=(0.25,))
    _eval(model, work / "size", image_size=8)
    size = _eval(model, work / "size", image_size=6)
    return [("--mean/--std changed", _shown(norm), "another input to the model: evaluated again"),
            ("--image-size 8 then 6", _shown(size), "other images: evaluated again")]


def _image_folders(work: Path) -> list[tuple[str, str, str]]:
    here = make_folder(work / "a" / "images", n_train=4, n_test=3)
    there = shutil.copytree(here, work / "b" / "copy")
    model = _seeded(work / "m", channels=3, classes=4)
    _eval(model, work / "evals", dataset=f"imagefolder:{here}")
    copy = _eval(model, work / "evals", dataset=f"imagefolder:{there}")
    path_shown = str(work) in copy.record.dataset
    same = (f"{_shown(copy)}; heading {'shows the path' if path_shown else 'without the path'}"
            f" ({copy.record.dataset.replace(str(work), '<workdir>')})")
    write_image(here / "test" / "sky" / "000.png", (20, 20, 200), marker=77)
    changed = _eval(model, work / "evals", dataset=f"imagefolder:{here}")
    return [("same image folder at another path", same,
             "the same data: reused, and the heading names no path"),
            ("one test image changed", _shown(changed), "other data: evaluated again")]


def cases(workdir: Path) -> list[tuple[str, str, str]]:
    workdir = Path(workdir)
    before = os.environ.get("ROBENCH_CACHE")
    os.environ["ROBENCH_CACHE"] = str(workdir / "cache")  # a cache of its own
    try:
        return [_edited_helper(workdir / "helper"), _changed_weights(workdir / "weights"),
                *_preprocessing(workdir / "preprocessing"), *_image_folders(workdir / "folders")]
    finally:
        if before is None:
            os.environ.pop("ROBENCH_CACHE", None)
        else:
            os.environ["ROBENCH_CACHE"] = before


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for row in cases(Path(tmp)):
            print(" | ".join(row))
