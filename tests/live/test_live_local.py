"""Live jobs without Slurm: ``mpiexec -n 2 python -m hpckernel.live halo.py`` attached from
a plain IPython kernel (``%load_ext hpckernel.widgets``): the magics, a cell interrupted
from the notebook (the program goes on to its result), the job's end told."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.manager import start_new_kernel

HALO = Path(__file__).with_name("halo.py")
THROTTLE = {"MPIR_CVAR_CH4_PROGRESS_THROTTLE": "true",
            "MPIR_CVAR_CH4_PROGRESS_THROTTLE_NO_PROGRESS_COUNT": "1",
            "MPIR_CVAR_POLLS_BEFORE_YIELD": "1"}


@pytest.fixture
def live_run(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[str]]]:
    root = tmp_path / "jobs"
    job = f"t{os.getpid()}"
    env = {**os.environ, **THROTTLE, "HPCKERNEL_JOB_ROOT": str(root),
           "HPCKERNEL_LIVE_ID": job}
    mpiexec = str(Path(sys.executable).with_name("mpiexec"))
    proc = subprocess.Popen([mpiexec, "-n", "2", sys.executable, "-m", "hpckernel.live",
                             str(HALO), "300", "0.05", "1000"], stdout=subprocess.PIPE,
                            text=True, env=env)
    deadline = time.monotonic() + 60
    while not (root / f"live-{job}.0" / "live.json").exists():
        assert time.monotonic() < deadline and proc.poll() is None, "no live.json"
        time.sleep(0.1)
    yield job, root, proc
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=30)


def plain_result() -> str:
    mpiexec = str(Path(sys.executable).with_name("mpiexec"))
    out = subprocess.run([mpiexec, "-n", "2", sys.executable, str(HALO), "300", "0", "1000"],
                         capture_output=True, text=True, env={**os.environ, **THROTTLE},
                         check=True, timeout=120).stdout
    match = re.search(r"RESULT (\S+)", out)
    assert match, out
    return match[1]


def _run(kc, code: str) -> tuple[dict, str]:  # type: ignore[no-untyped-def]
    out: list[str] = []

    def keep(msg: dict) -> None:  # type: ignore[type-arg]
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append(msg["content"]["ename"] + ": " + msg["content"]["evalue"])

    reply = kc.execute_interactive(code, timeout=60, output_hook=keep)
    return reply["content"], "".join(out)


def test_magics_and_an_interrupted_cell_in_a_plain_kernel(
        live_run: tuple[str, Path, subprocess.Popen[str]]) -> None:
    job, root, proc = live_run
    km, kc = start_new_kernel(kernel_name="python3",
                              env={**os.environ, "HPCKERNEL_JOB_ROOT": str(root)})
    try:
        content, text = _run(kc, f"%load_ext hpckernel.widgets\n%attach {job}")
        assert content["status"] == "ok", text
        # The ranks may still be importing (no ``step`` yet): wait for the loop.
        content, text = _run(kc, "import hpckernel.live.client as c, time\n"
                                 f"job = c.ATTACHED[{job!r}]\n"
                                 "for _ in range(300):\n"
                                 "    try:\n        job.peek('step'); break\n"
                                 "    except Exception:\n        time.sleep(0.1)")
        assert content["status"] == "ok", text
        content, text = _run(kc, f"%where --job {job}")
        assert text.startswith("[where:0-1]") and f"{HALO}:" in text, text
        content, text = _run(kc, f"%peek --job {job} step")
        assert re.fullmatch(r"(\[peek:\d(-1)?\] step = \d+\n)+", text), text
        content, text = _run(kc, f"%%px --job {job}\nprint(comm.allreduce(rank + 1))")
        assert content["status"] == "ok" and text == "[stdout:0-1] 3\n", text
        # A cell that would never end, interrupted from the notebook: the cell stops with
        # KeyboardInterrupt on both ranks, the program goes on.
        msg_id = kc.execute(f"%%px --job {job}\nwhile True:\n    pass")
        time.sleep(3)
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=30)
        assert reply["parent_header"]["msg_id"] == msg_id
        assert reply["content"]["status"] == "error"
        content, text = _run(kc, f"%%px --job {job}\nprint('after', comm.allreduce(1))")
        assert text == "[stdout:0-1] after 2\n", text
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        assert re.search(r"RESULT (\S+)", out)[1] == plain_result()  # type: ignore[index]
        content, text = _run(kc, "assert job.ended.wait(20)\nprint(job.state)")
        assert text == "ENDED\n", text
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
