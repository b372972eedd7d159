"""Live jobs without Slurm (``mpiexec -n 2 python -m hpckernel.live halo.py``), attached
from a plain IPython kernel (``%load_ext hpckernel.widgets``): the magics, output merged as
``%%px`` merges it, a cell interrupted from the notebook (the program goes on to its
result), the job's end told; MPI's files unlinked while it runs."""

from __future__ import annotations

import os
import re
import time
from typing import Any

import pytest
from jupyter_client.manager import start_new_kernel

import hpckernel

from .conftest import HALO, LiveRun, plain_result
from .shm import until_mpi_files_unlinked


def _run(kc: Any, code: str, timeout: float = 60) -> tuple[dict[str, Any], str]:
    out: list[str] = []

    def keep(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append(msg["content"]["ename"] + ": " + msg["content"]["evalue"])
        elif msg["msg_type"] in ("execute_result", "display_data"):
            out.append(msg["content"]["data"].get("text/plain", "") + "\n")

    reply = kc.execute_interactive(code, timeout=timeout, output_hook=keep)
    return reply["content"], "".join(out)


def test_magics_and_an_interrupted_cell_in_a_plain_kernel(live_run: LiveRun) -> None:
    job = live_run.job
    km, kc = start_new_kernel(kernel_name="python3",
                              env={**os.environ, "HPCKERNEL_JOB_ROOT": str(live_run.root)})
    try:
        content, text = _run(kc, f"%load_ext hpckernel.widgets\n%attach {job}")
        assert content["status"] == "ok", text
        # The ranks may still be importing (no ``step`` yet): wait for the loop.
        content, text = _run(kc, "import hpckernel, time\n"
                                 f"job = hpckernel.attach({job!r})\n"
                                 "for _ in range(300):\n"
                                 "    try:\n        job.peek('step'); break\n"
                                 "    except Exception:\n        time.sleep(0.1)")
        assert content["status"] == "ok", text
        content, text = _run(kc, f"%where --job {job}")
        assert text.startswith("[where:") and f"{HALO}, line" in text, text
        content, text = _run(kc, f"%peek --job {job} step")
        assert re.fullmatch(r"(\[peek:\d(-1)?\] step = \d+\n)+", text), text
        content, text = _run(kc, f"%%px --job {job}\nprint(comm.allreduce(rank + 1))\nrank")
        assert content["status"] == "ok", text
        assert text == "[stdout:0-1] 3\n[out:0] 0\n[out:1] 1\n", text
        content, text = _run(kc, f"%%px --job {job} --targets 1\n1/0")
        assert content["status"] == "error" and "ZeroDivisionError" in text, text
        assert "[1]" in text or "rank 1" in text or ":1]" in text, text
        # A cell that would never end, interrupted from the notebook: every rank holds it
        # at a line of Python, so it is stopped on both, and the program goes on.
        # stop_on_error=False: the next cell follows the reply at once, and ipykernel aborts
        # a request that comes while it still clears its queue after an error ('aborted').
        msg_id = kc.execute(f"%%px --job {job}\nprint('go', flush=True)\nwhile True:\n    pass",
                            stop_on_error=False)
        deadline = time.monotonic() + 60
        while True:  # the cell runs on the ranks once their 'go' comes
            msg = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream"
                    and "go" in msg["content"]["text"]):
                break
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=30)
        assert reply["parent_header"]["msg_id"] == msg_id
        assert reply["content"]["status"] == "error"
        content, text = _run(kc, f"%%px --job {job}\nprint('after', comm.allreduce(1))")
        assert content["status"] == "ok" and text == "[stdout:0-1] after 2\n", (content, text)
        assert live_run.result() == plain_result(live_run.steps)
        content, text = _run(kc, "assert job.pool.ended.wait(20)\nprint(job.state)")
        assert text == "ENDED\n", text
        content, text = _run(kc, f"%where --job {job}")
        assert content["status"] == "error" and "has ended" in text, text
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_mpis_files_are_unlinked_while_the_job_runs(live_run: LiveRun,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """MPICH makes its node's segment at the first exchange; the node's first rank unlinks it
    once Hydra's other rank maps it too: killed, the job leaves nothing in /dev/shm."""
    job = hpckernel.attach(live_run.job, job_root=str(live_run.root))
    try:
        until_mpi_files_unlinked(job, capsys, "0-1")
    finally:
        job.detach()
