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
