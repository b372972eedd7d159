"""Ranks keep nothing of what they print, display or raise (IPython 9's output history
records it even with history off), while ``In``, ``Out`` and ``_`` work as in IPython."""

from __future__ import annotations

from collections.abc import Iterator

import psutil
import pytest

from tests.kernel.conftest import _close
from tests.kernel.harness import Kernel

MB = 10**6
LINES = 80  # of 1 MB each, each a new string: 80 MB per rank, and as much again on stderr


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    # The hub keeps little of it: this test is about the ranks.
    k = Kernel(tmp_path_factory.mktemp("rankmem"), ranks=2,
               extra=["--HubKernel.output_memory=4MB", "--HubKernel.output_history=2"])
    yield k
    _close(k)


def _rss(pids: list[int]) -> list[int]:
    return [psutil.Process(p).memory_info().rss for p in pids]


def test_ranks_keep_nothing_of_what_they_print(kernel: Kernel) -> None:
    pids = kernel.rank_pids()
    flood = ("import sys\nfor i in range({n}):\n"
             "    sys.stdout.write(f'{{i:07d}}' + 'x' * 10**6 + '\\n')\n"
             "    sys.stderr.write(f'{{i:07d}}' + 'y' * 10**6 + '\\n')\n"
             "    display({{'text/plain': f'{{i:07d}}' + 'z' * 10**5}}, raw=True)\n"
             "1 / 0 if rank < 0 else 'x' * 10**6")
    kernel.ok(flood.format(n=4))  # IPython's and the plane's first-use costs paid
    before = _rss(pids)
    for _ in range(2):
        kernel.ok(flood.format(n=LINES // 2), timeout=180)
    grown = [a - b for a, b in zip(_rss(pids), before, strict=True)]
    # Kept, this was 2 x 80 MB of text and 8 MB of displays per rank; the cells' values
    # (Out, 1 MB each) are the only output a rank keeps.
    assert max(grown) < 25 * MB, f"ranks grew {[g // MB for g in grown]} MB"


def test_in_out_and_underscore_still_work_on_the_ranks(kernel: Kernel) -> None:
    count = int(kernel.ok("40 + rank").content["execution_count"])
    shown = kernel.ok(f"print(Out[{count}], _, _i)")
    assert shown.per_rank() == {r: [f"{40 + r} {40 + r} 40 + rank"] for r in range(2)}
    failed = kernel.run("print('before the error')\nraise KeyError('k')")
    assert failed.status == "error" and "KeyError" in failed.content["ename"]
    assert failed.text("stdout") == "[stdout:0-1] before the error\n"
