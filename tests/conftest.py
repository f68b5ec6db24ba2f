"""Shared fixtures: small, fast configs on the embedded digits data."""

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module (`pytestmark = pytest.mark.usefixtures("one_thread")`).

    The nets in these tests are tiny or run at small batches, where a second thread mostly
    spins; on a shared 2-core runner two spinning threads per process made files several
    times slower.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_layers():
    """Config layers for a run of a few seconds on digits."""
    return [{
        "data": {"dataset": "digits", "train_subset": 256},
        "optim": {"epochs": 2, "batch_size": 64},
        "runtime": {"device": "cpu"},
    }]


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """A normally trained digits CNN run directory (trained once per test session)."""
    from robench import api

    out = tmp_path_factory.mktemp("runs")
    cfg, _ = api.resolve_config([{"optim": {"epochs": 12}, "runtime": {"device": "cpu"}}])
    return api.train(cfg, out=out, quiet=True).run_dir


@pytest.fixture(scope="session")
def digits_run_b(tmp_path_factory):
    """A second normally trained digits CNN (seed 1): the other member of planted ensembles."""
    from robench import api

    out = tmp_path_factory.mktemp("runs-b")
    cfg, _ = api.resolve_config([{"optim": {"epochs": 12},
                                  "runtime": {"device": "cpu", "seed": 1}}])
    return api.train(cfg, out=out, quiet=True).run_dir


@pytest.fixture(scope="session")
def shared_cifar10(tmp_path_factory):
    """The shared CIFAR-10 JPEG copy unpacked once per session (in RAM where there is room),
    with its own image cache, and removed afterwards; skipped where the copy is absent (a
    clone without ../shared beside it)."""
    import os
    import shutil
    import subprocess
    import tempfile

    archive = SHARED_DATA / "cifar10-jpeg.tar.gz"
    if not archive.exists():
        pytest.skip(f"the shared CIFAR-10 copy is not at {archive}")
    shm = Path("/dev/shm")
    roomy = shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 2**30
    target = Path(tempfile.mkdtemp(prefix="robench-cifar-", dir=shm if roomy else
                                   tmp_path_factory.mktemp("cifar")))
    cache = tmp_path_factory.mktemp("cifar-cache")
    before = os.environ.get("ROBENCH_CACHE")
    os.environ["ROBENCH_CACHE"] = str(cache)
    try:
        subprocess.run(["tar", "xzf", str(archive), "-C", str(target)], check=True)
        yield target / "cifar10-jpeg"
    finally:
        shutil.rmtree(target, ignore_errors=True)
        if before is None:
            os.environ.pop("ROBENCH_CACHE", None)
        else:
            os.environ["ROBENCH_CACHE"] = before


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """An empty image cache of the test's own, so no test reads another's (the dataset
    tests use it for every test: `pytestmark = pytest.mark.usefixtures("private_cache")`)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("ROBENCH_CACHE", str(cache))
    return cache
