from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.fixtures import testbed_env
from tests.kernel.harness import Kernel, wait_gone


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[Kernel]:
    """A 4-rank "MPI (local)" hub of its own (widgets keep state per kernel)."""
    k = Kernel(tmp_path, ranks=4)
    yield k
    pids = k.process_tree()
    k.shutdown()
    assert wait_gone(pids) == [], "hub or ranks left running after shutdown"


@pytest.fixture
def slurm_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """The virtual cluster's variables in os.environ, the working directory a temp one (the
    jobs' output files go there)."""
    env = testbed_env()  # fails, not skips, when the cluster is down
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    return env


@pytest.fixture
def hub(tmp_path: Path, slurm_env: dict[str, str]) -> Iterator[Kernel]:
    """A 2-rank hub that reaches the virtual Slurm cluster."""
    k = Kernel(tmp_path, ranks=2, env=slurm_env)
    yield k
    pids = k.process_tree()
    k.shutdown()
    assert wait_gone(pids) == []
