"""Recipes: published settings one flag away, below the user's own settings."""

import pytest
from typer.testing import CliRunner

from robench import api
from robench.cli import app
from robench.errors import UserError
from robench.recipes import recipe_layer
from robench.registry import RECIPES, load_all

load_all()


@pytest.mark.parametrize("name", RECIPES.names())
def test_every_shipped_recipe_resolves_to_a_valid_config(name):
    cfg, defense = api.resolve_config([recipe_layer(name)])
    assert cfg.defense == defense.spec


def test_the_bag_of_tricks_recipe_holds_the_published_schedule():
    cfg, _ = api.resolve_config([recipe_layer("cifar10-pgd-at-bag-of-tricks")])
    assert cfg.optim.epochs == 110 and cfg.optim.milestones == [100, 105]
    assert cfg.defenses["pgd-at"]["eps"] == pytest.approx(8 / 255)
    assert cfg.defenses["pgd-at"]["step_size"] == pytest.approx(2 / 255)


def test_flags_and_set_override_a_recipe():
    cfg, _ = api.resolve_config([recipe_layer("digits-pgd-at"),
                                 {"defenses": {"pgd-at": {"steps": 3}}},
                                 {"optim": {"epochs": 2}}])
    assert cfg.optim.epochs == 2 and cfg.defenses["pgd-at"]["steps"] == 3
    assert cfg.optim.lr == 0.05  # from the recipe


def test_an_unknown_recipe_names_the_closest_one():
    with pytest.raises(UserError, match="did you mean 'digits-pgd-at'"):
        recipe_layer("digits-pgd")


def test_robench_list_recipes():
    result = CliRunner().invoke(app, ["list", "recipes"])
    assert result.exit_code == 0
    assert "cifar10-pgd-at-bag-of-tricks" in result.stdout


def test_a_recipes_milestones_move_with_the_epochs_a_user_gives():
    cfg, _ = api.resolve_config([recipe_layer("cifar10-pgd-at-bag-of-tricks"),
                                 {"optim": {"epochs": 22}}])
    assert cfg.optim.milestones == [20, 21]  # 100 and 105 of 110
    cfg, _ = api.resolve_config([recipe_layer("cifar10-pgd-at-bag-of-tricks"),
                                 {"optim": {"epochs": 22, "milestones": [5]}}])
    assert cfg.optim.milestones == [5]  # a user's own milestones are taken as they are
