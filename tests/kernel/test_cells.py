"""Cells on real MPI ranks through jupyter_client: targeting, merged output, errors."""

from __future__ import annotations

import os
import uuid

import pytest

from .harness import Kernel


def test_mpi_works_across_ranks_and_namespaces_persist(kernel: Kernel) -> None:
    kernel.ok("from mpi4py import MPI\ncomm = MPI.COMM_WORLD\ntotal = comm.allreduce(rank)")
    result = kernel.ok("print(total, comm.size, comm.rank == rank)")
    assert result.text("stdout") == "[stdout:0-3] 6 4 True\n"


def test_differing_output_is_shown_per_rank_in_rank_order(kernel: Kernel) -> None:
    result = kernel.ok("print('rank', rank)")
    assert result.text() == "".join(f"[stdout:{r}] rank {r}\n" for r in range(4))
    assert len(result.of_type("stream")) == 1  # coalesced into one message


def test_output_carries_ranks_in_metadata(kernel: Kernel) -> None:
    result = kernel.ok("print('same')")
    (msg,) = result.of_type("stream")
    assert msg["metadata"]["hpckernel"]["ranks"] == [0, 1, 2, 3]


def test_stderr_is_labelled_separately(kernel: Kernel) -> None:
    result = kernel.ok("import sys\nprint('oops', file=sys.stderr)")
    assert result.text("stderr") == "[stderr:0-3] oops\n"
    assert result.text("stdout") == ""


def test_output_streams_while_the_cell_runs(kernel: Kernel) -> None:
    result = kernel.ok("import time\nfor i in range(3):\n    print('tick', i, flush=True)\n"
                       "    time.sleep(0.6)")
    assert len(result.of_type("stream")) >= 2, result.outputs
    assert result.text().count("tick") == 3
    assert "[stdout:0-3] tick 0" in result.text()


@pytest.mark.parametrize(("spec", "ranks"), [
    ("0", [0]), ("1,3", [1, 3]), ("0:2", [0, 1]), ("-1", [3]), ("all", [0, 1, 2, 3]),
    ("::2", [0, 2]),
])
def test_targets(kernel: Kernel, spec: str, ranks: list[int]) -> None:
    result = kernel.ok(f"%%px --targets {spec}\nprint(rank)")
    assert result.text() == "".join(f"[stdout:{r}] {r}\n" for r in ranks)


def test_pxconfig_changes_default_targets(kernel: Kernel) -> None:
    try:
        config = kernel.ok("%pxconfig --targets 1:3")
        assert "ranks 1-2" in config.text()
        assert kernel.ok("print(rank)").text() == "[stdout:1] 1\n[stdout:2] 2\n"
    finally:
        kernel.ok("%pxconfig --targets all")
    assert kernel.ok("print('x')").text() == "[stdout:0-3] x\n"


@pytest.mark.parametrize(("cell", "message"), [
    ("%%px --targets 9\nx", "rank 9 does not exist: this kernel has 4 ranks (0-3)"),
    ("%%px --targets x\nx", "bad targets 'x'"),
    ("%%px --targets 3:1\nx", "select no ranks"),
    ("%%px --bogus\nx", "unrecognized arguments: --bogus"),
    ("%pxconfig --targets 7", "rank 7 does not exist"),
])
def test_bad_input_gives_one_clear_error(kernel: Kernel, cell: str, message: str) -> None:
    result = kernel.run(cell)
    assert result.status == "error"
    assert message in result.content["evalue"]
    errors = result.of_type("error")
    assert len(errors) == 1 and message in errors[0]["content"]["evalue"]
    assert kernel.ok("print('still fine')").text() == "[stdout:0-3] still fine\n"


def test_execute_result_collapses_and_labels(kernel: Kernel) -> None:
    same = kernel.ok("6 * 7")
    assert same.plain() == ["[out:0-3] 42"]
    count = same.of_type("execute_result")[0]["content"]["execution_count"]
    assert count == same.content["execution_count"]
    assert kernel.ok("rank % 2").plain() == ["[out:0,2] 0", "[out:1,3] 1"]


def test_display_data_from_ranks(kernel: Kernel) -> None:
    result = kernel.ok("from IPython.display import display, HTML\n"
                       "display(HTML(f'<b>{rank // 2}</b>'))")
    html = [m for m in result.of_type("display_data")]
    assert sorted(m["content"]["data"]["text/html"] for m in html) == ["<b>0</b>", "<b>1</b>"]
    assert sorted(m["metadata"]["hpckernel"]["ranks"] for m in html) == [[0, 1], [2, 3]]


def test_error_on_some_ranks_is_one_error_naming_them(kernel: Kernel) -> None:
    result = kernel.run("print('before', rank)\nif rank in (1, 3):\n    1 / 0\nprint('after')")
    assert result.status == "error"
    errors = result.of_type("error")
    assert len(errors) == 1
    content = errors[0]["content"]
    assert content["ename"] == "ZeroDivisionError"
    assert content["evalue"] == "ranks 1,3: ZeroDivisionError: division by zero"
    assert content["traceback"][0] == "[error:1,3] ZeroDivisionError: division by zero"
    assert "(ranks 0,2 succeeded)" in content["traceback"]
    # Every rank's output is there and labelled (how it is grouped depends on timing).
    assert result.per_rank() == {0: ["before 0", "after"], 1: ["before 1"],
                                 2: ["before 2", "after"], 3: ["before 3"]}
    assert kernel.ok("print('next')").text() == "[stdout:0-3] next\n"


def test_ipython_syntax_and_top_level_await_run_on_the_ranks(kernel: Kernel) -> None:
    # The ranks skip IPython's transforms and its async check for plain Python
    # (worker/shell.py): what is not plain must still reach them.
    listed = kernel.ok("files = !echo rank$((1 + 1))\nx = %who_ls\nprint(files, 'files' in x)")
    assert listed.text() == "[stdout:0-3] ['rank2'] True\n"
    waited = kernel.ok("import asyncio\nawait asyncio.sleep(0)\nasync def f():\n"
                       "    return rank\nprint(await f())")
    assert waited.text() == "".join(f"[stdout:{r}] {r}\n" for r in range(4))
    assert "Return the number of items in a container." in kernel.ok("len?").text()
    bad = kernel.run("if 1:\n        x = 1\n    y = 2")
    assert bad.status == "error" and bad.content["ename"] == "IndentationError"
    assert "unindent does not match any outer indentation level" in bad.content["evalue"]


def test_local_runs_in_the_hub(kernel: Kernel) -> None:
    kernel.ok("%%local\nimport os\nhub_value = 41")
    result = kernel.ok("%%local\nprint(os.getpid(), hub_value + 1)")
    pid, value = result.text().split()
    assert int(pid) == kernel.hub_pid and value == "42"
    assert "[stdout" not in result.text()
    missing = kernel.run("hub_value")  # not defined on the ranks
    assert missing.status == "error" and missing.content["ename"] == "NameError"


def test_hub_output_written_without_newline_comes_with_its_cell(kernel: Kernel) -> None:
    # The hub's streams skip ipykernel's flush only when nothing waits (hub/outstream.py):
    # text still buffered at the cell's end (no newline, no flush) must come before idle,
    # not with ipykernel's timed flush 0.2 s later.
    for n in range(3):
        result = kernel.ok(f"%%local\nimport sys\n_ = sys.stdout.write('out{n}')\n"
                           f"_ = sys.stderr.write('err{n}')")
        assert (result.text("stdout"), result.text("stderr")) == (f"out{n}", f"err{n}")
        # and a cell on the ranks right after (nothing buffered in the hub) loses nothing
        assert kernel.ok("print(rank)").per_rank() == {r: [str(r)] for r in range(4)}


def test_ranks_api_push_pull_apply(kernel: Kernel) -> None:
    result = kernel.ok(
        "%%local\nimport numpy as np\n"
        "big = np.arange(2_000_000, dtype=np.float64)\n"
        "ranks.push({'big': big, 'k': 3})\n"
        "back = ranks.pull('big')\n"
        "print(len(back), all(np.array_equal(b, big) for b in back))\n"
        "print(ranks[1:3].apply(lambda a: a * k + rank, 1))\n"
        "print(ranks[2].pull('k'), ranks.pull(['k', 'rank'])[3])\n"
        "print(ranks)")
    assert result.text() == "4 True\n[4, 5]\n3 [3, 3]\n<ranks 0-3 of 4>\n"


def test_ranks_api_errors_name_the_rank(kernel: Kernel) -> None:
    result = kernel.run("%%local\nranks.pull('never_defined')")
    assert result.status == "error"
    assert result.content["ename"] == "RemoteError"
    assert "name 'never_defined' is not defined on rank 0" in result.content["evalue"]
    bad = kernel.run("%%local\nranks[7]")
    assert bad.status == "error" and "rank 7 does not exist" in bad.content["evalue"]


def test_noblock_and_pxresult_while_local_cells_run(kernel: Kernel) -> None:
    started = kernel.ok("%%px --noblock\nimport time\ntime.sleep(1.5)\nprint('done', rank)")
    assert "running" in started.plain()[0]
    local = kernel.ok("%%local\nprint(_px.ready())")
    assert local.text() == "False\n"
    result = kernel.ok("%pxresult")
    assert "".join(f"[stdout:{r}] done {r}\n" for r in range(4)) in result.text()
    assert kernel.ok("%%local\nprint(_px.ready(), _px.result())").text() == (
        "True [None, None, None, None]\n")


def test_ranks_magic_shows_each_rank(kernel: Kernel) -> None:
    text = kernel.ok("%ranks").text()
    mpi, *lines = text.strip().splitlines()
    # the library the ranks run on, and what started them
    library = kernel.ok("%%px --targets 0\nfrom mpi4py import MPI\n"
                        "print(MPI.Get_library_version().split(',')[0])").per_rank()
    # "Open MPI v5.0.11", "MPICH Version:      4.2.0"
    assert mpi == f"MPI: {' '.join(library[0][0].split())} (ranks started by mpiexec)"
    assert lines[0].split()[:3] == ["rank", "state", "pid"]
    assert [line.split()[1] for line in lines[1:]] == ["idle"] * 4
    pids = kernel.rank_pids()
    assert all(str(pid) in text for pid in pids)
    assert os.getpid() not in pids


def test_complete_and_inspect_answer_from_rank_0(kernel: Kernel) -> None:
    kernel.ok("only_on_ranks_value = 1")
    reply = kernel.kc.complete("only_on_ranks_v", 15, reply=True, timeout=10)
    assert reply["content"]["matches"] == ["only_on_ranks_value"]
    reply = kernel.kc.inspect("only_on_ranks_value", 19, reply=True, timeout=10)
    assert reply["content"]["found"] is True
    assert "int" in reply["content"]["data"]["text/plain"]


def test_history_records_px_cells(kernel: Kernel) -> None:
    kernel.ok("history_marker = 'px cell'")
    reply = kernel.kc.history(hist_access_type="tail", n=5, reply=True, timeout=10)
    assert "history_marker = 'px cell'" in [h[2] for h in reply["content"]["history"]]


def test_history_written_in_batches_is_found_by_search_and_in_the_file(kernel: Kernel) -> None:
    # The hub writes its history file every 10 cells (hub/app.py); a search writes it out
    # first, and so does %history -g (both read the file, shared with earlier sessions).
    marker = f"history_marker_{uuid.uuid4().hex}"
    kernel.ok(f"{marker} = 'searched'")
    reply = kernel.kc.history(hist_access_type="search", pattern=f"{marker}*",
                              reply=True, timeout=10)
    assert [h[2] for h in reply["content"]["history"]] == [f"{marker} = 'searched'"]
    assert f"{marker} = 'searched'" in kernel.ok(f"%%local\n%history -g {marker}").text()
    size = kernel.ok("%%local\nprint(get_ipython().history_manager.db_cache_size)").text()
    assert size.strip() == "10"
