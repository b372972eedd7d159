from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kernel.harness import Kernel, wait_gone


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[Kernel]:
    """A 4-rank "MPI (local)" hub of its own (widgets keep state per kernel)."""
    k = Kernel(tmp_path, ranks=4)
    yield k
    pids = k.process_tree()
    k.shutdown()
    assert wait_gone(pids) == [], "hub or ranks left running after shutdown"
