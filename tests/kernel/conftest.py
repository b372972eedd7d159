from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import Kernel, wait_gone


def _close(k: Kernel) -> None:
    pids = k.process_tree()
    k.shutdown()
    assert wait_gone(pids) == [], "hub, mpiexec or ranks left running after shutdown"


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    """A 4-rank kernel shared by the tests of a module that leave ranks healthy."""
    k = Kernel(tmp_path_factory.mktemp("kernel"), ranks=4)
    yield k
    _close(k)


@pytest.fixture
def fresh_kernel(tmp_path: Path) -> Iterator[Kernel]:
    """A kernel of its own, for tests that kill or wedge ranks. Its ranks get 5 s to obey
    an interrupt: on a loaded 2-core machine the default can be too short."""
    k = Kernel(tmp_path, ranks=4, extra=["--HubKernel.interrupt_grace=5"])
    yield k
    _close(k)
