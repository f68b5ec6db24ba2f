"""Shared fixtures: small, fast configs on the embedded digits data."""

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def tiny_layers():
    """Config layers for a run of a few seconds on digits."""
    return [{
        "data": {"dataset": "digits", "train_subset": 256},
        "optim": {"epochs": 2, "batch_size": 64},
        "runtime": {"device": "cpu"},
    }]
