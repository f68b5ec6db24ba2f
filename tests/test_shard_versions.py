"""Shards merged into one record must be of one evaluation: same robench, same torch, same
kind of device; a shard that is not, or is missing, is named by its file."""

import json

import pytest
import torch
from tiny_target import tiny_cfg, tiny_net, tiny_target

import robench
from robench import api
from robench.errors import UserError
from robench.evaluation.blocks import Shard
from robench.evaluation.shards import Partial, merge

pytestmark = pytest.mark.usefixtures("one_thread")


def _shards(tmp_path, count=2, only=None):
    """The tiny target evaluated in `count` shards (those in `only`); their part files."""
    target = tiny_target(tmp_path / "run", tiny_net())
    paths = [api.evaluate(target, tiny_cfg(), quiet=True, shard=Shard(i, count))[0].path
             for i in range(count) if only is None or i in only]
    return target, paths


def _edit(path, **changes):
    data = json.loads(path.read_text())
    for name, value in changes.items():
        if name in ("robench", "torch"):
            data["versions"][name] = value
        else:
            data[name] = value
    path.write_text(json.dumps(data))


def test_each_shard_part_says_which_robench_torch_and_device_made_it(tmp_path):
    _, paths = _shards(tmp_path)
    for path in paths:
        data = json.loads(path.read_text())
        assert data["versions"] == {"robench": robench.__version__, "torch": torch.__version__}
        assert data["device"] == "cpu"


@pytest.mark.parametrize(("change", "named"), [
    ({"torch": "1.13.1"}, "was made with torch 1.13.1, but shard file"),
    ({"robench": "0.0.1"}, "was made with robench 0.0.1, but shard file"),
    ({"device": "cuda:0"}, "was made on a cuda device, but shard file"),
])
def test_a_merge_of_a_shard_made_with_another_version_or_device_kind_is_refused(
        tmp_path, change, named):
    target, paths = _shards(tmp_path)
    _edit(paths[1], **change)
    with pytest.raises(UserError) as refused:
        api.merge_shards(target, tiny_cfg())
    message = str(refused.value)
    assert f"shard file {str(paths[1])!r} {named} {str(paths[0])!r}" in message
    assert "\n" not in message
    assert not list(target.evals_dir.glob("*.json"))  # no record
    assert all(p.is_file() for p in paths)  # the shards stay, to be evaluated again


def test_a_shard_from_a_robench_that_recorded_no_versions_is_refused_beside_one_that_did(
        tmp_path):
    target, paths = _shards(tmp_path)
    data = json.loads(paths[0].read_text())
    del data["versions"]
    paths[0].write_text(json.dumps(data))
    with pytest.raises(UserError) as refused:
        api.merge_shards(target, tiny_cfg())
    assert (f"was made with robench {robench.__version__}, but shard file "
            f"{str(paths[0])!r} with an unrecorded robench version;") in str(refused.value)


def test_the_parts_of_torchrun_processes_are_refused_the_same_way_naming_the_shard(tmp_path):
    _, paths = _shards(tmp_path)
    _edit(paths[0], torch="2.0.0")
    parts = [Partial.from_dict(json.loads(p.read_text())) for p in paths]
    with pytest.raises(UserError, match=r"^shard 1/2 was made with torch .+, but shard 0/2 "
                                        r"with torch 2\.0\.0;"):
        merge(parts)


def test_shards_on_two_devices_of_one_kind_merge(tmp_path):
    target, paths = _shards(tmp_path)
    _edit(paths[0], device="cuda:0")
    _edit(paths[1], device="cuda:1")
    (merged,) = api.merge_shards(target, tiny_cfg())
    assert merged.record.selection.n_examples == 12


def test_a_missing_shard_is_named_i_slash_n_with_the_file_expected(tmp_path):
    target, paths = _shards(tmp_path, count=3, only=(0, 2))
    expected = paths[0].with_name(paths[0].name.replace("shard-0-of-3", "shard-1-of-3"))
    with pytest.raises(UserError) as refused:
        api.merge_shards(target, tiny_cfg())
    message = str(refused.value)
    assert f"shard 1/3 is missing: {str(expected)!r} was expected" in message
    assert "robench eval --shard 1/3" in message


def test_two_missing_shards_are_each_named_with_their_file(tmp_path):
    target, paths = _shards(tmp_path, count=4, only=(0, 2))
    files = [paths[0].with_name(paths[0].name.replace("shard-0-of-4", f"shard-{i}-of-4"))
             for i in (1, 3)]
    with pytest.raises(UserError) as refused:
        api.merge_shards(target, tiny_cfg())
    assert (f"shards 1/4 and 3/4 are missing: {str(files[0])!r} and {str(files[1])!r} were "
            f"expected") in str(refused.value)
