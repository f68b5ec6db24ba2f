"""Config layering, typed validation and YAML round trips."""

import pytest
import yaml

from robench import config as C
from robench.errors import UserError


def test_defaults_come_from_the_dataset_table_below_every_layer():
    cfg = C.resolve([])
    assert cfg.data.dataset == "digits"
    assert cfg.model.arch == "cnn"
    assert cfg.optim.schedule == "cosine"
    cifar = C.resolve([{"data": {"dataset": "cifar10"}}])
    assert cifar.model.arch == "preactresnet18"
    assert cifar.optim.milestones == [100, 105]
    assert cifar.optim.epochs == 110


def test_later_layers_win_yaml_then_set_then_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 0.3\n  epochs: 7\nmodel:\n  width: 0.5\n")
    layers = [C.load_yaml(path), C.parse_set(["optim.lr=0.2", "optim.epochs=9"]),
              {"optim": {"lr": 0.01}}]
    cfg = C.resolve(layers)
    assert cfg.optim.lr == 0.01
    assert cfg.optim.epochs == 9
    assert cfg.model.width == 0.5


def test_set_values_are_read_as_yaml_scalars_and_defense_names_are_shorthand():
    layer = C.parse_set(["optim.milestones=[3, 5]", "runtime.channels_last=true",
                         "trades.beta=3", "model.strides=1122"], defense_names=["trades"])
    assert layer["optim"]["milestones"] == [3, 5]
    assert layer["runtime"]["channels_last"] is True
    assert layer["defenses"] == {"trades": {"beta": 3}}


@pytest.mark.parametrize("item", ["optim.lr", "=3", "noequals"])
def test_malformed_set_items_are_refused(item):
    with pytest.raises(UserError, match="key=value"):
        C.parse_set([item])


def test_unknown_keys_are_refused_with_the_key_and_a_suggestion():
    with pytest.raises(UserError) as err:
        C.resolve([{"optim": {"learning_rate": 0.1}}])
    assert "'optim.learning_rate'" in str(err.value)
    with pytest.raises(UserError, match="'optm'.*did you mean 'optim'"):
        C.resolve([{"optm": {"lr": 0.1}}])


@pytest.mark.parametrize("layer, key", [
    ({"optim": {"epochs": "ten"}}, "optim.epochs"),
    ({"optim": {"epochs": 2.5}}, "optim.epochs"),
    ({"optim": {"lr": "fast"}}, "optim.lr"),
    ({"runtime": {"deterministic": "yes"}}, "runtime.deterministic"),
    ({"optim": {"milestones": [1, "x"]}}, "optim.milestones[1]"),
    ({"optim": 3}, "optim"),
])
def test_wrong_types_are_refused_with_the_key_named(layer, key):
    with pytest.raises(UserError) as err:
        C.resolve([layer])
    assert f"'{key}'" in str(err.value)


@pytest.mark.parametrize("layer, fragment", [
    ({"optim": {"epochs": 0}}, "epochs"),
    ({"optim": {"lr": -0.1}}, "lr"),
    ({"optim": {"batch_size": 0}}, "batch_size"),
    ({"optim": {"milestones": [50]}, "data": {"dataset": "digits"}}, "milestones"),
    ({"runtime": {"precision": "fp8"}}, "precision"),
    ({"model": {"width": 0.0}}, "width"),
])
def test_out_of_range_values_are_refused_with_the_value(layer, fragment):
    with pytest.raises(UserError, match=fragment):
        C.resolve([layer])


def test_an_int_is_accepted_where_a_float_is_expected():
    assert C.resolve([{"optim": {"lr": 1}}]).optim.lr == 1.0


def test_malformed_yaml_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  lr: [0.1\n")
    with pytest.raises(UserError, match="bad.yaml.*not valid YAML at line"):
        C.load_yaml(path)
    path.write_text("- a list\n")
    with pytest.raises(UserError, match="mapping"):
        C.load_yaml(path)


def test_the_saved_config_resolves_back_to_the_same_config(tmp_path):
    cfg = C.resolve([{"optim": {"lr": 0.02, "milestones": [2]}, "data": {"image_size": 16}}])
    C.dump_yaml(cfg, tmp_path / "config.yaml")
    again = C.resolve([yaml.safe_load((tmp_path / "config.yaml").read_text())])
    assert again == cfg
    assert again.hash() == cfg.hash()


def test_the_hash_ignores_where_a_run_happens_but_not_what_it_does():
    base = C.resolve([])
    elsewhere = C.resolve([{"runtime": {"device": "cpu"}, "data": {"data_dir": "/x"}}])
    other_lr = C.resolve([{"optim": {"lr": 0.5}}])
    assert base.hash() == elsewhere.hash()
    assert base.hash() != other_lr.hash()


def test_diff_names_each_changed_key():
    a = C.resolve([])
    b = C.resolve([{"optim": {"epochs": 3}, "runtime": {"seed": 4}}])
    assert [k for k, _, _ in C.diff(a, b)] == ["optim.epochs", "runtime.seed"]


def test_the_dataset_tables_milestones_move_with_a_users_epochs():
    assert C.resolve([{"data": {"dataset": "cifar10"}, "optim": {"epochs": 22}}]
                     ).optim.milestones == [20, 21]
    assert C.resolve([{"data": {"dataset": "cifar10"}, "optim": {"epochs": 1}}]
                     ).optim.milestones == []
    given = C.resolve([{"data": {"dataset": "cifar10"},
                        "optim": {"epochs": 50, "milestones": [10]}}])
    assert given.optim.milestones == [10]


def test_eps_may_be_written_as_a_fraction_in_configs_and_set():
    cfg = C.resolve([C.parse_set(["validation.eps=8/255"])])
    assert cfg.validation.eps == pytest.approx(8 / 255)
    with pytest.raises(UserError, match="eps"):
        C.resolve([C.parse_set(["validation.eps=8/0"])])
