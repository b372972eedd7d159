"""Fixtures shared by the test directories."""

from __future__ import annotations

import pytest

from tests.cluster.fixtures import testbed_env


@pytest.fixture
def cluster_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The virtual Slurm cluster's variables (SLURM_CONF, the SSH login's) merged into
    os.environ; fails, with instructions, if the cluster is not running."""
    env = testbed_env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env
