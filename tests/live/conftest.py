"""A live job without Slurm: ``mpiexec -n 2 python -m hpckernel.live halo.py`` (the
simulation of ``halo.py``), and its result when nobody attaches."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

HALO = Path(__file__).with_name("halo.py")
THROTTLE = {"MPIR_CVAR_CH4_PROGRESS_THROTTLE": "true",
            "MPIR_CVAR_CH4_PROGRESS_THROTTLE_NO_PROGRESS_COUNT": "1",
            "MPIR_CVAR_POLLS_BEFORE_YIELD": "1"}
MPIEXEC = str(Path(sys.executable).with_name("mpiexec"))


@dataclass
class LiveRun:
    """One run of the simulation under ``python -m hpckernel.live``."""

    job: str
    root: Path
    proc: subprocess.Popen[str]
    steps: int

    def result(self, timeout: float = 120) -> str:
        out, _ = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, out
        match = re.search(r"RESULT (\S+)", out)
        assert match, out
        return match[1]


def start_live(root: Path, job: str, steps: int, pause: float) -> LiveRun:
    env = {**os.environ, **THROTTLE, "HPCKERNEL_JOB_ROOT": str(root),
           "HPCKERNEL_LIVE_ID": job}
    proc = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, "-m", "hpckernel.live",
                             str(HALO), str(steps), str(pause), "1000"],
                            stdout=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while not (root / f"live-{job}.0" / "live.json").exists():
        assert time.monotonic() < deadline and proc.poll() is None, "no live.json"
        time.sleep(0.1)
    return LiveRun(job, root, proc, steps)


@pytest.fixture
def live_run(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LiveRun]:
    """A run of ``steps`` steps (the test's ``live_steps`` marker, default 300) 0.05 s
    apart."""
    marker = request.node.get_closest_marker("live_steps")
    run = start_live(tmp_path / "jobs", f"t{os.getpid()}x{time.monotonic_ns() % 10**6}",
                     marker.args[0] if marker else 300, 0.05)
    yield run
    if run.proc.poll() is None:
        run.proc.kill()
    run.proc.communicate(timeout=30)


def plain_result(steps: int) -> str:
    """The simulation's result when nobody attaches (and not run live)."""
    out = subprocess.run([MPIEXEC, "-n", "2", sys.executable, str(HALO), str(steps), "0",
                          "1000"], capture_output=True, text=True,
                         env={**os.environ, **THROTTLE}, check=True, timeout=120).stdout
    match = re.search(r"RESULT (\S+)", out)
    assert match, out
    return match[1]
