"""The registry: entries by decorator, natural order, patterns, and helpful unknown-name errors."""

import pytest

from robench.errors import UserError
from robench.registry import REGISTRIES, Registry, load_all


def make_registry():
    reg = Registry("arch")

    @reg.register("vgg11", "VGG-11")
    def vgg11():
        return "vgg11"

    reg.add("vgg2", object(), "a small VGG")
    reg.add("resnet18", object(), "ResNet-18", default_strides="1222")
    return reg


def test_decorator_registers_and_returns_the_object_unchanged():
    reg = make_registry()
    assert reg.get("vgg11")() == "vgg11"
    assert reg.entry("resnet18").meta == {"default_strides": "1222"}


def test_names_are_in_natural_order_and_filter_by_pattern():
    reg = make_registry()
    assert reg.names() == ["resnet18", "vgg2", "vgg11"]
    assert reg.names("vgg*") == ["vgg2", "vgg11"]


def test_unknown_name_names_the_closest_match_and_the_known_ones():
    reg = make_registry()
    with pytest.raises(UserError) as err:
        reg.get("resnet19")
    message = str(err.value)
    assert "'resnet19'" in message
    assert "did you mean 'resnet18'" in message
    assert "vgg11" in message


def test_registering_a_name_twice_or_without_a_one_line_description_is_a_bug():
    reg = make_registry()
    with pytest.raises(ValueError):
        reg.add("vgg11", object(), "again")
    with pytest.raises(ValueError):
        reg.add("new", object(), "two\nlines")


def test_every_shipped_entry_has_a_one_line_description():
    load_all()
    for kind, reg in REGISTRIES.items():
        for entry in reg:
            assert entry.description.strip(), (kind, entry.name)
    assert "digits" in REGISTRIES["datasets"]
    assert "standard" in REGISTRIES["defenses"]
    assert "preactresnet18" in REGISTRIES["archs"]
