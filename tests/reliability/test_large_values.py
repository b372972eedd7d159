"""Large values: 1 GB arrays on the ranks either reach the hub or give a clear size error
(``HubKernel.max_reply_size``); the hub never takes in more than the limit, so it lives."""

from __future__ import annotations

from collections.abc import Iterator

import psutil
import pytest

from tests.kernel.harness import Kernel

GIB = 2**30


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    k = Kernel(tmp_path_factory.mktemp("large"), ranks=2)
    # 1 GiB of float64 on each rank, every element its rank number.
    k.ok("import numpy as np\nbig = np.full(2**27, float(rank))")
    yield k
    k.shutdown()


def _hub_rss(kernel: Kernel) -> int:
    return int(psutil.Process(kernel.hub_pid).memory_info().rss)


def test_a_pull_over_the_limit_is_a_size_error_and_the_hub_lives(kernel: Kernel) -> None:
    kernel.ok("%%local\n%config HubKernel.max_reply_size = '1.5GB'")
    before = _hub_rss(kernel)
    result = kernel.run("%%local\nboth = ranks.pull('big')")
    assert result.status == "error"
    evalue = result.content["evalue"]
    assert "ranks 0-1: ReplyTooLarge: the reply is 1.1 GB, more than the 750.0 MB" in evalue
    assert "HubKernel.max_reply_size = '1.5GB', shared by 2 ranks" in evalue
    assert _hub_rss(kernel) - before < 200 * 2**20, "the refused values reached the hub"
    # The hub still serves, and nothing was half assigned.
    kernel.ok("%%local\nassert 'both' not in dir()\nassert ranks.pull('rank') == [0, 1]")


def test_a_value_within_the_limit_arrives_whole(kernel: Kernel) -> None:
    kernel.ok("%%local\n%config HubKernel.max_reply_size = '1.5GB'")
    # One target has the whole limit: its 1 GiB fits.
    out = kernel.ok("%%local\none = ranks[1].pull('big')\n"
                    "print(one.nbytes, one.min(), one.max())\ndel one").text()
    assert out.split() == [str(GIB), "1.0", "1.0"]


def test_the_other_ways_into_the_hub_are_limited_too(kernel: Kernel) -> None:
    kernel.ok("%%local\n%config HubKernel.max_reply_size = '100MB'")
    for cell in ("%%local\nranks.apply(lambda: big)",     # a function's result
                 "%%px --out big\npass",                    # --out
                 "%pull big",                               # the magic
                 "%%local\nranks.peek('big')"):             # a look into the namespace
        result = kernel.run(cell, timeout=120)
        assert result.status == "error", cell
        text = result.content["evalue"] + result.text()
        assert "ReplyTooLarge" in text and "more than the 50.0 MB" in text, (cell, text)
    # Concatenating needs the parts and the whole in the hub at once: half the share.
    result = kernel.run("%pull big --concat")
    assert "more than the 25.0 MB this rank may send to the hub" in result.content["evalue"]
    assert "shared by 2 ranks, halved to concatenate" in result.content["evalue"]


def test_the_default_limit_is_a_share_of_the_hubs_memory(kernel: Kernel) -> None:
    kernel.ok("%%local\n%config HubKernel.max_reply_size = '1%'")
    result = kernel.run("%%local\nranks.pull('big')")
    assert result.status == "error"
    assert "HubKernel.max_reply_size = '1%' of the hub's available memory" in (
        result.content["evalue"])
    kernel.ok("%%local\n%config HubKernel.max_reply_size = '50%'")
    assert kernel.ok("%%local\nprint(len(ranks.pull('big')))").text().strip() == "2"


def test_a_limit_that_is_not_a_size_is_refused(kernel: Kernel) -> None:
    kernel.ok("%%local\n%config HubKernel.max_reply_size = '100MB'")
    # %config reports a bad value on stderr (IPython's way) and keeps the old one.
    err = kernel.ok("%%local\n%config HubKernel.max_reply_size = 'lots'").text("stderr")
    assert "max_reply_size 'lots' is not a size: use bytes with a unit" in err
    result = kernel.run("%%local\nranks.pull('big')")
    assert "more than the 50.0 MB" in result.content["evalue"]
