"""Every shipped recipe is what its header says and trains on real CIFAR-10 images.

The smoke runs take each recipe as a user would (`robench train --recipe NAME`) on the
shared CIFAR-10 copy with `--train-subset`, one epoch at width 0.125: every setting of the
recipe except its length and width is exercised, its defense included.
"""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from robench import api, runs
from robench.cli import app
from robench.recipes import HERE, recipe_layer
from robench.registry import RECIPES, load_all

load_all()
CIFAR_RECIPES = [n for n in RECIPES.names() if n.startswith("cifar10-")]
SEED_RECIPES = ["cifar10-kap", "cifar10-rcm-pgd-at", "cifar10-rcm-trades", "cifar10-gwi",
                "cifar10-local-balls", "cifar10-advbn-finetune"]
BASELINE_RECIPES = ["cifar10-standard", "cifar10-pgd-at-bag-of-tricks", "cifar10-trades",
                    "cifar10-fast-at"]


def header(name: str) -> str:
    lines = (HERE / f"{name}.yaml").read_text().splitlines()
    return "\n".join(line for line in lines if line.startswith("#"))


def test_every_paper_recipe_is_shipped():
    assert set(SEED_RECIPES + BASELINE_RECIPES) <= set(RECIPES.names())


@pytest.mark.parametrize("name", RECIPES.names())
def test_every_recipe_opens_with_a_header_naming_its_source_and_the_number_to_compare(name):
    text = header(name)
    assert text, f"{name} has no header comment"
    assert "# Paper:" in text or "# Source:" in text or "code " in text
    assert "Published:" in text


def test_the_gwi_recipe_is_the_tenet_authors_cifar_setting():
    cfg, defense = api.resolve_config([recipe_layer("cifar10-gwi")])
    assert cfg.model.arch == "resnext29-4x32d" and cfg.data.augment == "augmix+clean"
    o = cfg.optim
    assert (o.epochs, o.batch_size, o.lr, o.weight_decay, o.nesterov, o.schedule) == (
        200, 256, 0.1, 0.0005, True, "cosine")
    assert cfg.defenses["gwi"]["start"] == 500 and cfg.defenses["gwi"]["every"] == 3


def test_the_fast_at_recipe_peaks_at_the_midpoint_as_wong_et_al():
    cfg, _ = api.resolve_config([recipe_layer("cifar10-fast-at")])
    assert cfg.optim.schedule == "cyclic" and cfg.optim.lr == 0.2 and cfg.optim.epochs == 15


@pytest.mark.parametrize("name", ["cifar10-rcm-pgd-at", "cifar10-rcm-trades"])
def test_the_rcm_recipes_train_resnet18_1122_for_110_epochs(name):
    cfg, _ = api.resolve_config([recipe_layer(name)])
    assert cfg.model.arch == "resnet18" and cfg.defenses["rcm"]["strides"] == "1122"
    assert cfg.optim.epochs == 110 and cfg.optim.milestones == [100, 105]


def test_the_advbn_recipe_freezes_the_stem_and_first_stage():
    cfg, _ = api.resolve_config([recipe_layer("cifar10-advbn-finetune")])
    assert cfg.defenses["advbn"]["freeze"] is True
    assert (cfg.optim.epochs, cfg.optim.lr, cfg.optim.milestones) == (20, 0.001, [10])


# --- one epoch of each on the shared CIFAR-10 copy ------------------------------------------


SMOKE = ["--train-subset", "256", "--val-size", "64", "--epochs", "1", "--width", "0.125",
         "--device", "cpu",
         "--quiet"]
EXTRA = {  # what a one-step run needs to reach the method's own update
    "cifar10-gwi": ["--set", "gwi.start=0", "--set", "gwi.every=1"],
}


def train(args: list[str]) -> None:
    result = CliRunner().invoke(app, ["train", *args])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def standard_run(shared_cifar10, tmp_path_factory):
    out = tmp_path_factory.mktemp("recipes")
    train(["--recipe", "cifar10-standard", "--dataset", f"imagefolder:{shared_cifar10}",
           *SMOKE, "--out", str(out)])
    (run,) = out.iterdir()
    return run


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in CIFAR_RECIPES if n != "cifar10-standard"])
def test_each_cifar_recipe_trains_one_epoch_on_the_shared_copy(name, shared_cifar10,
                                                                standard_run, tmp_path):
    init = ["--init", str(standard_run)] if "finetune" in name else []
    train(["--recipe", name, "--dataset", f"imagefolder:{shared_cifar10}", *SMOKE,
           *EXTRA.get(name, []), *init, "--out", str(tmp_path)])
    (run,) = tmp_path.iterdir()
    recipe, _ = api.resolve_config([recipe_layer(name)])
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["defense"] == recipe.defense and saved["model"]["arch"] == recipe.model.arch
    for key in ("batch_size", "lr", "schedule", "weight_decay", "nesterov"):
        assert saved["optim"][key] == getattr(recipe.optim, key), key
    assert saved["data"]["augment"] == recipe.data.augment
    assert saved["defenses"] == {**recipe.defenses, **saved_overrides(name, saved)}
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1] and runs.is_complete(run)


def saved_overrides(name: str, saved: dict) -> dict:
    """The smoke run's own --set values, which the saved config holds over the recipe's."""
    if name == "cifar10-gwi":
        return {"gwi": {**saved["defenses"]["gwi"], "start": 0, "every": 1}}
    return {}


# --- benchmarks/seeds/reproduce.py builds valid runs from the recipes ------------------------


def reproduce_module():
    import importlib.util
    import sys

    root = HERE.parents[1] / "benchmarks"
    sys.path.insert(0, str(root))
    try:
        spec = importlib.util.spec_from_file_location("reproduce", root / "seeds" / "reproduce.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["reproduce"] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(root))
    return module


PAPER_DEFENSES = {
    "kap": ["gaussian", "kap"], "rcm": ["pgd-at", "rcm+pgd-at", "trades", "rcm+trades"],
    "gwi": ["standard", "gwi"], "local-balls": ["fast-at", "local-balls", "pgd-at"],
    "advbn": ["standard", "standard", "advbn"],
}


@pytest.mark.parametrize("seed", sorted(PAPER_DEFENSES))
def test_reproduce_trains_each_seed_against_its_baselines_with_the_recipes(seed):
    reproduce = reproduce_module()
    common = {"data": {"dataset": "cifar10"}, "runtime": {"device": "cpu"}}
    runs_ = reproduce.paper_runs(seed, common)
    defenses = []
    for run in runs_:
        if run.init is None:
            cfg, _ = api.resolve_config(run.layers)
            assert cfg.data.dataset == "cifar10" and cfg.runtime.device == "cpu"
            defenses.append(cfg.defense)
        else:  # a fine-tune names a run of the same seed to start from
            assert run.init in [r.label for r in runs_]
            defenses.append(run.layers[0].get("defense") or recipe_layer(
                "cifar10-advbn-finetune")["defense"])
    assert defenses == PAPER_DEFENSES[seed]
