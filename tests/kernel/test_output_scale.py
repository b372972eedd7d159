"""Output at scale: beyond HubKernel.output_groups the notebook gets the first groups and one
line; every rank's whole output stays readable (%pxoutput, _px), also beyond the memory cap."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import _close
from .harness import Kernel, Result


@pytest.fixture(scope="module")
def kernel8(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    """8 ranks, at most 3 groups of differing output shown per cell."""
    k = Kernel(tmp_path_factory.mktemp("scale"), ranks=8,
               extra=["--HubKernel.output_groups=3"])
    yield k
    _close(k)


def _hidden_lines(result: Result) -> list[str]:
    return [m["content"]["text"] for m in result.of_type("stream")
            if m["metadata"].get("hpckernel", {}).get("hidden")]


def _count(result: Result) -> int:
    return int(result.content["execution_count"])


def test_differing_output_beyond_the_limit_is_one_line_and_stays_readable(
        kernel8: Kernel) -> None:
    cell = kernel8.ok("print('rank', rank)\nrank * 10")
    count = _count(cell)
    assert cell.per_rank("stdout") == {r: [f"rank {r}"] for r in range(3)}
    assert [p.split("]")[0] for p in cell.plain()] == ["[out:0", "[out:1", "[out:2"]
    (line,) = _hidden_lines(cell)  # one line for the hidden text and results together
    assert re.search(r"10 more output groups from 5 ranks \(3-7\) not shown", line), line
    assert f"%pxoutput 3:8 --cell {count}" in line, line

    shown = kernel8.ok(f"%pxoutput 3:8 --cell {count}")
    assert shown.per_rank("stdout") == {r: [f"rank {r}"] for r in range(3, 8)}
    assert shown.plain() == [f"[out:{r}] {r * 10}" for r in range(3, 8)]
    assert kernel8.ok("%%local\nprint(_px.stdout[5], _px.output(6)[-1]['data'])").text() == (
        "rank 5\n {'text/plain': '60'}\n")
    # identical output still collapses to one group, whatever the limit
    same = kernel8.ok("print('same')")
    assert same.text() == "[stdout:0-7] same\n" and not _hidden_lines(same)


def test_the_same_ranks_stay_shown_when_output_arrives_in_several_flushes(
        kernel8: Kernel) -> None:
    # the odd ranks print 1.5 s later, after the merger flushed the even ranks' lines
    cell = kernel8.ok("import time\nif rank % 2:\n    time.sleep(1.5)\nprint('rank', rank)")
    assert cell.per_rank("stdout") == {r: [f"rank {r}"] for r in (0, 2, 4)}
    assert all(m["content"]["text"] for m in cell.of_type("stream"))  # no empty messages
    (line,) = _hidden_lines(cell)
    assert "5 more output groups from 5 ranks (1,3,5-7) not shown" in line, line


def test_errors_that_differ_by_rank_show_the_first_kinds_and_a_count(kernel8: Kernel
                                                                     ) -> None:
    failed = kernel8.run("print('before')\nraise ValueError(f'bad {rank}')")
    assert failed.status == "error"
    count = _count(failed)
    (error,) = failed.of_type("error")
    headers = [t for t in error["content"]["traceback"] if t.startswith("[error:")]
    assert headers == [f"[error:{r}] ValueError: bad {r}" for r in range(3)]
    assert (f"[hpckernel] 5 more kinds of error on 5 ranks (3-7) not shown; to see them: "
            f"%pxoutput 3:8 --cell {count}") in error["content"]["traceback"]
    assert failed.text("stdout") == "[stdout:0-7] before\n"

    shown = kernel8.ok(f"%pxoutput 6 --cell {count}")
    (rank6,) = shown.of_type("error")
    assert rank6["content"]["traceback"][0] == "[error:6] ValueError: bad 6"
    assert shown.text("stdout") == "[stdout:6] before\n"


def test_output_beyond_the_memory_cap_is_kept_in_the_job_directory(kernel8: Kernel) -> None:
    kernel8.ok("%%local\n%config HubKernel.output_memory = '2KB'")
    try:
        cell = kernel8.ok("for i in range(40):\n    print(f'{rank}:{i}:' + 'x' * 50)")
        assert len(_hidden_lines(cell)) == 1
        shown = kernel8.ok(f"%pxoutput --cell {_count(cell)}")
        assert shown.per_rank("stdout") == {r: [f"{r}:{i}:" + "x" * 50 for i in range(40)]
                                            for r in range(8)}
        assert len(shown.of_type("stream")) == 1  # every rank's text in one message
        spilled = kernel8.ok("%%local\nimport os\n"
                             "print(os.path.getsize(_px.request.outputs.path))")
        assert int(spilled.text()) > 8 * 40 * 50 - 2000  # nearly all of it is in the file
    finally:
        kernel8.ok("%%local\n%config HubKernel.output_memory = '256MB'")


def test_output_a_stalled_job_directory_cannot_take_is_named_not_queued(kernel8: Kernel
                                                                        ) -> None:
    """Beyond the memory cap output goes to the job directory's disk; while that stalls,
    what waits for it is bounded (OutputStore.backlog) and what is over is named."""
    store = "get_ipython().kernel.outputs"
    kernel8.ok(f"%%local\n%config HubKernel.output_memory = '2KB'\nimport threading\n"
               f"stall = threading.Event()\n{store}.backlog = 3000\n"
               f"{store}._writer.submit(stall.wait)  # the disk stops answering")
    try:
        cell = kernel8.ok("for i in range(40):\n    print(f'{rank}:{i}:' + 'x' * 50)")
        assert kernel8.ok(f"%%local\nprint({store}.pending <= 3000)").text() == "True\n"
        kernel8.ok("%%local\nstall.set()")
        shown = kernel8.ok(f"%pxoutput --cell {_count(cell)}")
        lines = shown.per_rank("stdout")
        for rank in range(8):  # in order, from the start, up to what was not kept
            full = [f"{rank}:{i}:" + "x" * 50 for i in range(40)]
            assert lines.get(rank, []) == full[:len(lines.get(rank, []))]
        told = re.findall(r"more output of rank (\d+) was not kept: the job directory",
                          shown.text("stderr"))
        assert told and all(len(lines.get(int(r), [])) < 40 for r in told)
        assert sum(len(v) for v in lines.values()) + len(told) >= 8  # the rest was kept
    finally:
        kernel8.ok(f"%%local\nstall.set()\n{store}.backlog = 64 * 10**6\n"
                   "%config HubKernel.output_memory = '256MB'")


def test_bad_pxoutput_requests_are_clear(kernel8: Kernel, tmp_path: Path) -> None:
    kernel8.ok("pass")
    missing = kernel8.run("%pxoutput --cell 100000")
    assert missing.status == "error" and "did not run on the ranks" in missing.text(
        "stderr") + missing.content.get("evalue", "")
    outside = kernel8.run("%%px --targets 0:2\nprint(rank)")
    assert outside.status == "ok"
    wrong = kernel8.run(f"%pxoutput 5 --cell {_count(outside)}")
    assert wrong.status == "error" and "not on 5" in wrong.content["evalue"]
    for spec, words in (("::0", "bad slice ::0: its step cannot be 0"),
                        ("0-3", "as targets write 0:4"), ("x", "bad targets 'x'")):
        bad = kernel8.run(f"%pxoutput {spec}")
        assert bad.status == "error" and bad.content["ename"] == "TargetError", bad.content
        assert words in bad.content["evalue"]
        assert bad.content["traceback"] == [f"TargetError: {bad.content['evalue']}"]


def test_the_px_magic_in_hub_code_takes_the_cells_path(kernel8: Kernel) -> None:
    line = kernel8.ok("%px print('via magic', rank % 2)")
    assert line.text("stdout") == ("[stdout:0,2,4,6] via magic 0\n"
                                   "[stdout:1,3,5,7] via magic 1\n")
    failed = kernel8.run("%%local\nget_ipython().run_cell_magic('px', '--targets 1:3', "
                         "'1 / rank if rank == 2 else 1 / 0')")
    assert failed.status == "error" and failed.content["ename"] == "CellError"
    assert "[error:1] ZeroDivisionError: division by zero" in failed.content["traceback"]
    assert kernel8.ok("%%local\nprint(_px.targets, _px.ready())").text() == "[1, 2] True\n"


def test_bad_output_settings_are_refused_with_the_reason(kernel8: Kernel) -> None:
    for setting, words in (("output_memory = 'lots'", "'lots' is not a size"),
                           ("output_groups = -1", "output_groups must be 0 or more")):
        refused = kernel8.run(f"%%local\n%config HubKernel.{setting}")
        assert words in refused.text("stderr") + refused.content.get("evalue", ""), (
            refused.content, refused.text())
    assert kernel8.ok("%%local\nprint(get_ipython().kernel.output_groups)").text() == "3\n"
