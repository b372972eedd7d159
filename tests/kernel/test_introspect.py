"""Looking inside running cells: %peek, %where, the --noblock handle, subshells."""

from __future__ import annotations

import re
import time
from pathlib import Path

from .harness import Kernel, Result

# A cell that counts until a file appears, so that tests decide when it ends.
LOOP = ("import os, time\ncounter = 0\nwhile not os.path.exists({flag!r}):\n"
        "    counter += 1\n    time.sleep(0.01)\nprint('stopped', flush=True)")


def _expand(label: str) -> list[int]:
    """``0-2,5`` → ``[0, 1, 2, 5]``."""
    ranks = []
    for part in label.split(","):
        first, _, last = part.partition("-")
        ranks.extend(range(int(first), int(last or first) + 1))
    return ranks


def _peeked(result: Result, name: str = "counter") -> dict[int, int]:
    """{rank: value} from %peek's output lines like ``[peek:0,2] counter = 41``."""
    return {rank: int(value)
            for label, value in re.findall(rf"\[peek:([\d,-]+)\] {name} = (\d+)",
                                           result.text())
            for rank in _expand(label)}


def _wait_for(predicate: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_peek_and_where_look_into_a_running_noblock_cell(kernel: Kernel, tmp_path: Path
                                                          ) -> None:
    flag = tmp_path / "stop"
    started = kernel.ok("%%px --noblock\n" + LOOP.format(flag=str(flag)))
    assert "running" in started.plain()[0]
    first: dict[int, int] = {}

    def all_counting() -> bool:
        first.update(_peeked(kernel.ok("%peek counter")))
        return len(first) == 4

    _wait_for(all_counting, "every rank to define counter")
    # The ranks keep counting between two peeks: peeking does not stop them.
    _wait_for(lambda: _peeked(kernel.ok("%peek counter"))[0] > first[0], "counter to grow")
    values = kernel.ok("%%local\nprint(ranks.peek('counter'), ranks[2].peek(['counter']))")
    listed, single = re.fullmatch(r"(\[.*\]) (\[\d+\])\n", values.text()).groups()
    assert len(eval(listed)) == 4 and len(eval(single)) == 1

    where = kernel.ok("%where").text()
    # Ranks on the same line share a block; each shows the loop of the cell, nothing more.
    labels = re.findall(r"^\[where:([\d,-]+)\] busy for [\d.]+ s, in:$", where, re.M)
    assert sorted(r for label in labels for r in _expand(label)) == [0, 1, 2, 3], where
    assert where.count(", in <module>") == len(labels) and "hpckernel" not in where, where
    stack = kernel.ok("%%local\ninfo = ranks[0].where()\nframe = info['stack'][-1]\n"
                      "print(info['state'], frame['file'][:3], frame['function'], "
                      "frame['line'] in (4, 5, 6))").text()
    assert stack == "busy In[ <module> True\n"
    assert kernel.ok("%%local\nprint(_px.ready())").text() == "False\n"

    flag.touch()
    done = kernel.ok("%%local\nprint(_px.wait(60), _px.result())")
    assert done.text() == "True [None, None, None, None]\n"
    assert kernel.ok("%where").text() == "[where:0-3] idle\n"
    final = _peeked(kernel.ok("%peek counter --targets 1"))
    assert list(final) == [1] and final[1] >= first[1]


def test_where_shows_a_rank_blocked_in_an_mpi_receive(kernel: Kernel, tmp_path: Path
                                                      ) -> None:
    flag = tmp_path / "send"
    kernel.ok("%%px --noblock\nimport os, time\nfrom mpi4py import MPI\n"
              "def exchange():\n    if rank == 0:\n"
              "        return MPI.COMM_WORLD.recv(source=1)\n"
              f"    while not os.path.exists({str(flag)!r}):\n        time.sleep(0.02)\n"
              "    if rank == 1:\n        MPI.COMM_WORLD.send('hi', dest=0)\nexchange()")
    try:
        innermost = ("%%local\nprint([w['stack'][-1]['function'] if w['stack'] else None "
                     "for w in ranks.where()])")
        _wait_for(lambda: kernel.ok(innermost).text() == f"{['exchange'] * 4}\n",
                  "every rank to be inside exchange()")
        text = kernel.ok("%where --targets 0").text()
        assert text.startswith("[where:0] busy for "), text
        assert text.rstrip().endswith("in exchange\n    return MPI.COMM_WORLD.recv(source=1)"), (
            text)
    finally:
        flag.touch()
    assert kernel.ok("%%local\nprint(_px.wait(60))").text() == "True\n"


def test_peek_of_an_array_being_rewritten_is_a_consistent_snapshot(kernel: Kernel,
                                                                   tmp_path: Path) -> None:
    flag = tmp_path / "stop"
    # 1 MB rewritten whole by memcpy under the GIL (a memoryview copy), again and again
    kernel.ok("%%px --targets 0 --noblock\nimport os\nimport numpy as np\n"
              "a = np.zeros(2**17)\nfills = [np.full(2**17, float(v)).tobytes() "
              "for v in range(2)]\nview = memoryview(a).cast('B')\ni = 0\n"
              f"while not os.path.exists({str(flag)!r}):\n    i += 1\n"
              "    view[:] = fills[i % 2]")
    try:
        seen = kernel.ok("%%local\nimport time\nsnaps = []\ndeadline = time.time() + 60\n"
                         "while len(snaps) < 20 and time.time() < deadline:\n"
                         "    try:\n        snaps.append(ranks[0].peek('a'))\n"
                         "    except Exception:\n        time.sleep(0.05)  # a not yet set\n"
                         "print(all(len(set(s.tolist())) == 1 for s in snaps),\n"
                         "      len({s[0] for s in snaps}) > 1)").text()
        # every snapshot is whole (one value throughout), and they are not all the same
        assert seen == "True True\n"
    finally:
        flag.touch()
    assert kernel.ok("%%local\nprint(_px.wait(60))").text() == "True\n"


def test_peek_and_where_from_a_subshell_while_a_blocking_cell_runs(kernel: Kernel,
                                                                    tmp_path: Path) -> None:
    flag = tmp_path / "stop"
    subshell = kernel.subshell()
    main = kernel.submit("print('started', flush=True)\n" + LOOP.format(flag=str(flag)))
    assert kernel.collect(main, until="[stdout:0-3] started") is None
    seen = []
    for _ in range(2):
        peek = kernel.collect(kernel.submit("%peek counter", subshell=subshell))
        assert peek is not None and peek.status == "ok", peek and peek.content
        seen.append(_peeked(peek)[3])
        time.sleep(0.3)  # not synchronisation: only a gap for the counter to move
    where = kernel.collect(kernel.submit("%where -t 0", subshell=subshell))
    assert where is not None and "[where:0] busy for" in where.text()
    assert ", line " in where.text() and "in <module>" in where.text()
    flag.touch()
    result = kernel.collect(main)
    assert result is not None and result.status == "ok"
    assert "[stdout:0-3] stopped" in result.text()
    assert seen[1] >= seen[0] > 0


def test_peek_bad_input_gives_clear_messages(kernel: Kernel) -> None:
    kernel.ok("import threading\nlock = threading.Lock()\nobj = type('O', (), {'a': rank})()")
    missing = kernel.ok("%peek no_such_name").text()
    assert missing == "[peek:0-3] NameError: name 'no_such_name' is not defined\n"
    unpicklable = kernel.ok("%peek lock").text()
    assert unpicklable.count("PeekError: lock is a lock that cannot be sent to the hub") == 4
    assert "its repr: <unlocked _thread.lock object" in unpicklable
    assert kernel.ok("%peek obj.a").text() == "".join(
        f"[peek:{r}] obj.a = {r}\n" for r in range(4))
    bad = kernel.run("%peek 1x")
    assert bad.status == "error" and "'1x' is not a variable name" in bad.content["evalue"]
    api = kernel.run("%%local\nranks.peek('no_such_name')")
    assert api.status == "error" and api.content["ename"] == "RemoteError"
    assert "ranks 0-3: NameError: name 'no_such_name' is not defined" in api.content["evalue"]
    assert kernel.ok("print('still fine')").text() == "[stdout:0-3] still fine\n"


def test_noblock_handle_while_local_cells_run(kernel: Kernel, tmp_path: Path) -> None:
    flag = tmp_path / "stop"
    kernel.ok("%%px --noblock\nprint('working', rank, flush=True)\n"
              + LOOP.format(flag=str(flag)) + "\nrank * 10")
    # The notebook carries on in the hub meanwhile.
    kernel.ok("%%local\nsteps = []\nfor i in range(3):\n    steps.append(_px.ready())")
    assert kernel.ok("%%local\nprint(steps, _px.wait(0.05))").text() == (
        "[False, False, False] False\n")
    _wait_for(lambda: "working" in kernel.ok("%%local\nprint(_px.outputs)").text(),
              "the handle to hold the ranks' first output")
    flag.touch()
    awaited = kernel.ok("%%local\nvalues = await _px\nprint(values, _px.ready())")
    assert awaited.text() == "[None, None, None, None] True\n"
    outputs = kernel.ok("%%local\nprint(sorted({(kind, r) for kind, _, meta in _px.outputs"
                        " for r in meta['hpckernel']['ranks']}))").text()
    assert outputs == f"{[(k, r) for k in ('execute_result', 'stream') for r in range(4)]}\n"
    shown = kernel.ok("%pxresult")
    assert "[stdout:2] working 2" in shown.text() and "[out:3] 30" in shown.plain()


def test_peek_of_a_dead_rank_says_so_and_the_kernel_recovers(fresh_kernel: Kernel) -> None:
    fresh_kernel.ok("x = rank + 100")
    died = fresh_kernel.run("%%px --targets 2\nimport os\nos._exit(3)")
    assert died.status == "error" and died.content["ename"] == "RankDied"
    # mpiexec may end the other ranks of the MPI job too: each is either read or named.
    text = fresh_kernel.ok("%peek x").text()
    assert "rank 2 is dead (exited with code 3)" in text, text
    for rank in (0, 1, 3):
        assert f"x = {rank + 100}" in text or re.search(rf"\brank {rank} is dead", text) \
            or re.search(r"\[peek:[\d,-]*\] RankDied", text), text
    api = fresh_kernel.run("%%local\nranks.peek('x')")
    assert api.status == "error" and api.content["ename"] == "RanksUnavailable"
    assert re.search(r"ranks? [\d,-]* (is|are) dead", api.content["evalue"])
    assert "%restart_ranks" in api.content["evalue"]
    fresh_kernel.ok("%restart_ranks")
    fresh_kernel.ok("x = rank + 200")
    assert _peeked(fresh_kernel.ok("%peek x"), "x") == {r: r + 200 for r in range(4)}
