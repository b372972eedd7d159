"""The three systems under one driver interface.

- ``ipykernel``: the venv's ``python3`` kernel (one process; N is always 1), driven by
  jupyter_client;
- ``hpckernel``: the "MPI (local)" hub with N ranks, driven by the same jupyter_client code;
- ``ipyparallel``: ``ipp.Cluster(engines="mpi", n=N)`` driven by ipyparallel's own client, a
  ``DirectView`` on all engines, each cell done the way ``%%px`` does it
  (``execute(silent=False, block=False)``, ``wait``, ``wait_for_output``, ``get``).

Every cell time is measured in this (driver) process with ``time.perf_counter``.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import signal
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

#: 16 MiB arrays for M4/M5 (2 Mi float64)
ARRAY_BYTES = 16 * 2**20
#: M3: each rank writes FLOOD_LINES lines of 100 bytes (10 MB); 92 of them are '@'
FLOOD_LINES = 100_000
FLOOD_AT_PER_LINE = 92
FLOOD_CODE = (
    "import sys\n"
    "_line = '%6d ' % rank + '@' * 92 + '\\n'\n"
    f"for _ in range({FLOOD_LINES}):\n"
    "    sys.stdout.write(_line)\n"
)
OUTPUT_TYPES = ("stream", "execute_result", "display_data", "error")
#: the kernels' own output (stderr), one file per system and N
LOGS = Path(__file__).parent / "results" / "logs"
#: a directory holding the hpckernel to measure (a snapshot of a commit), else the installed one
HPCKERNEL_ROOT: Path | None = None


@dataclass
class Cell:
    """One cell's timing as the client saw it."""

    seconds: float  # execute sent → reply and idle received
    last_output: float  # execute sent → last output message received
    text: str  # all stream text, in arrival order
    status: str  # ok / error


class System(ABC):
    """A kernel (or cluster) with ``n`` ranks, started and driven from this process."""

    name = ""

    def __init__(self, n: int) -> None:
        self.n = n

    @abstractmethod
    def start(self) -> dict[str, float]:
        """Start; seconds to ``ready`` (kernel_info / engines registered) and to the end
        of the ``first_cell`` (a no-op on all ranks)."""

    @abstractmethod
    def cell(self, code: str, timeout: float = 300) -> Cell:
        """Run ``code`` on all ranks and wait until its output is complete."""

    @abstractmethod
    def setup(self) -> None:
        """Define ``rank`` and numpy on the ranks (untimed)."""

    def push(self) -> tuple[float, float] | None:
        """(seconds in the client API, seconds round trip) to push one array to all ranks."""
        return None

    def pull(self) -> tuple[float, float] | None:
        """The same for pulling an array from each rank."""
        return None

    @abstractmethod
    def rank_pids(self) -> list[int]: ...

    def hub_pids(self) -> list[int]:
        """The process between the client and the ranks (hub, controller), if any."""
        return []

    @abstractmethod
    def interrupt_loop(self) -> float:
        """Seconds from the interrupt of ``while True: pass`` to the kernel being idle."""

    @abstractmethod
    def stop(self) -> None: ...

    def flood_check(self, text: str) -> dict[str, Any]:
        """Delivered payload of M3 and what the kernel said it dropped."""
        produced = self.n * FLOOD_LINES * 100
        delivered = text.count("@") * 100 // FLOOD_AT_PER_LINE
        notices = re.findall(r"\[hpckernel\] output truncated: ([\d.]+) (B|KB|MB|GB)", text)
        unit = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9}
        announced = int(sum(float(v) * unit[u] for v, u in notices))
        return {"produced": produced, "delivered": delivered, "announced_dropped": announced,
                "notice": bool(notices),
                "unannounced_lost": max(0, produced - delivered - announced)}

    def print_complete(self, text: str) -> bool:
        """Whether the output of ``print(rank)`` names every rank."""
        found = {int(m) for m in re.findall(r"^(?:\[stdout:\d+\] )?(\d+)$", text, re.M)}
        return found == set(range(self.n))


def _descendants() -> list[psutil.Process]:
    return psutil.Process().children(recursive=True)


def end_processes(procs: list[psutil.Process], timeout: float = 10) -> list[int]:
    """Wait for ``procs`` (started by this driver) to end, kill those that do not; the
    pids that had to be killed."""
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    return [p.pid for p in alive]


# -- jupyter_client kernels ----------------------------------------------------------------


class JupyterKernel(System):
    """A kernel started by jupyter_client's KernelManager, driven by a blocking client."""

    cwd: str | None = None  # the kernel's working directory (python -m imports from it)

    def _manager(self) -> Any:
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        return dict(os.environ)

    def start(self) -> dict[str, float]:
        LOGS.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        self.km = self._manager()
        with open(LOGS / f"{self.name}-{self.n}.log", "ab") as log:
            self.km.start_kernel(env=self._env(), stdout=log, stderr=log, cwd=self.cwd)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=300)
        ready = time.perf_counter() - t0
        first = self.cell("pass", timeout=300)
        if first.status != "ok":
            raise RuntimeError(f"{self.name} did not run its first cell: {first.text}")
        self.tree = self._tree()
        return {"ready": ready, "first_cell": time.perf_counter() - t0}

    def _tree(self) -> list[psutil.Process]:
        try:
            kernel = psutil.Process(self.kernel_pid)
            return [kernel, *kernel.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    @property
    def kernel_pid(self) -> int:
        return int(self.km.provisioner.pid)

    def _submit(self, code: str) -> str:
        return str(self.kc.execute(code))

    def _collect(self, msg_id: str, t0: float, timeout: float) -> Cell:
        deadline = t0 + timeout
        parts: list[str] = []
        last = idle = 0.0
        status = "ok"
        while not idle:
            try:
                msg = self.kc.get_iopub_msg(timeout=max(0.01, deadline - time.perf_counter()))
            except queue.Empty:
                raise TimeoutError(f"{self.name}: no idle within {timeout} s") from None
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind in OUTPUT_TYPES:
                last = time.perf_counter()
                if kind == "stream":
                    parts.append(msg["content"]["text"])
                elif kind == "error":
                    status = "error"
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                idle = time.perf_counter()
        while True:
            reply = self.kc.get_shell_msg(timeout=max(0.01, deadline - time.perf_counter()))
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        if reply["content"]["status"] != "ok":
            status = "error"
        end = time.perf_counter()
        return Cell(end - t0, (last or idle) - t0, "".join(parts), status)

    def cell(self, code: str, timeout: float = 300) -> Cell:
        t0 = time.perf_counter()
        return self._collect(self._submit(code), t0, timeout)

    def interrupt_loop(self) -> float:
        t_sent = time.perf_counter()
        msg_id = self._submit("while True: pass")
        time.sleep(0.5)  # let every rank get into the loop
        t0 = time.perf_counter()
        self.km.interrupt_kernel()
        cell = self._collect(msg_id, t_sent, 60)
        if cell.status != "error":
            raise RuntimeError(f"{self.name}: the loop ended without an interrupt")
        return t_sent + cell.seconds - t0

    def stop(self) -> None:
        tree = getattr(self, "tree", [])
        if hasattr(self, "kc"):
            self.kc.stop_channels()
        if hasattr(self, "km") and self.km.has_kernel:
            self.km.shutdown_kernel(now=False)
        end_processes(tree)


class IPyKernel(JupyterKernel):
    name = "ipykernel"

    def _manager(self) -> Any:
        from jupyter_client.manager import KernelManager

        return KernelManager(kernel_name="python3")

    def setup(self) -> None:
        self.cell("rank = 0")

    def rank_pids(self) -> list[int]:
        return [self.kernel_pid]


class HpcKernel(JupyterKernel):
    name = "hpckernel"

    def print_complete(self, text: str) -> bool:
        """Every rank's line shown, or (beyond ``HubKernel.output_groups``) named in the one
        line on the groups not shown (``… from 32 ranks (32-63) not shown``)."""
        hidden = re.search(r"ranks? \(([\d,-]+)\) not shown", text)
        if hidden is None:
            return super().print_complete(text)
        found = {int(m) for m in re.findall(r"^(?:\[stdout:\d+\] )?(\d+)$", text, re.M)}
        for part in hidden[1].split(","):
            first, _, last = part.partition("-")
            found.update(range(int(first), int(last or first) + 1))
        return found == set(range(self.n))

    def __init__(self, n: int, extra: list[str] | None = None,
                 env: dict[str, str] | None = None, cwd: str | None = None,
                 python: str | None = None) -> None:
        super().__init__(n)
        self.python = python  # the hub's and ranks' (default: this one)
        self.extra = extra or []
        self.extra_env = env or {}
        if HPCKERNEL_ROOT is not None:  # python -m imports from the working directory first
            self.cwd = cwd or str(HPCKERNEL_ROOT)
            path = self.extra_env.get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
            self.extra_env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(HPCKERNEL_ROOT), path) if p)
        else:
            self.cwd = cwd
        self.spec_dir = Path(tempfile.mkdtemp(prefix="hpckernel-bench-"))

    def _manager(self) -> Any:
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import KernelManager

        from hpckernel.kernelspec import write_kernel_spec

        write_kernel_spec(self.spec_dir / "kernels" / "bench", ranks=self.n, extra=self.extra,
                          python=self.python)
        return KernelManager(kernel_name="bench", kernel_spec_manager=KernelSpecManager(
            kernel_dirs=[str(self.spec_dir / "kernels")]))

    def _env(self) -> dict[str, str]:
        return {**os.environ, **self.extra_env}

    def setup(self) -> None:
        self._ok(f"import numpy as np\nb = np.ones({ARRAY_BYTES // 8})")
        self._ok(f"%%local\nimport os, time\nimport numpy as np\n"
                 f"_bench_array = np.ones({ARRAY_BYTES // 8})")

    def _ok(self, code: str) -> Cell:
        cell = self.cell(code)
        if cell.status != "ok":
            raise RuntimeError(f"hpckernel cell failed: {code!r}: {cell.text}")
        return cell

    def _timed_local(self, body: str) -> tuple[float, float]:
        cell = self._ok("%%local\n_t0 = time.perf_counter()\n" + body
                        + "\nprint('T=%r' % (time.perf_counter() - _t0))")
        match = re.search(r"T=([\d.e-]+)", cell.text)
        if not match:
            raise RuntimeError(f"no timing in {cell.text!r}")
        return float(match[1]), cell.seconds

    def push(self) -> tuple[float, float]:
        return self._timed_local("ranks.push({'a': _bench_array})")

    def pull(self) -> tuple[float, float]:
        times = self._timed_local(
            "_bench_pulled = ranks.pull('b')\n"
            f"assert [x.nbytes for x in _bench_pulled] == [{ARRAY_BYTES}] * len(ranks)\n"
            "del _bench_pulled")
        return times

    def rank_pids(self) -> list[int]:
        text = self._ok("%%local\nprint(ranks.apply(os.getpid))").text
        return [int(p) for p in re.findall(r"\d+", text)]

    def hub_pids(self) -> list[int]:
        return [self.kernel_pid]

    def stop(self) -> None:
        super().stop()
        import shutil

        shutil.rmtree(self.spec_dir, ignore_errors=True)


# -- ipyparallel -----------------------------------------------------------------------------


class IPyParallel(System):
    name = "ipyparallel"

    def start(self) -> dict[str, float]:
        import ipyparallel as ipp

        before = {p.pid for p in _descendants()}
        t0 = time.perf_counter()
        # engine_timeout: ipyparallel gives up after 60 s by default, which 64 engines on 2
        # busy cores can exceed; measure the start rather than fail it.
        self.cluster = ipp.Cluster(engines="mpi", n=self.n, log_level=logging.WARNING,
                                   engine_timeout=600)
        self.rc = self.cluster.start_and_connect_sync()
        ready = time.perf_counter() - t0
        self.view = self.rc[:]
        first = self.cell("pass")
        if first.status != "ok":
            raise RuntimeError("ipyparallel did not run its first cell")
        self.tree = [p for p in _descendants() if p.pid not in before]
        return {"ready": ready, "first_cell": time.perf_counter() - t0}

    def setup(self) -> None:
        self.view.execute(f"from mpi4py import MPI\nrank = MPI.COMM_WORLD.rank\n"
                          f"import numpy as np\nb = np.ones({ARRAY_BYTES // 8})", block=True)
        import numpy as np

        self.array = np.ones(ARRAY_BYTES // 8)

    def cell(self, code: str, timeout: float = 300) -> Cell:
        from ipyparallel.error import CompositeError

        t0 = time.perf_counter()
        ar = self.view.execute(code, silent=False, block=False)  # what %%px does
        status = "ok"
        try:
            ar.wait(timeout)
            ar.wait_for_output(timeout)
            ar.get(timeout)
        except CompositeError:
            status = "error"
        end = time.perf_counter()
        return Cell(end - t0, end - t0, "".join(ar.stdout), status)

    def push(self) -> tuple[float, float]:
        t0 = time.perf_counter()
        self.view.push({"a": self.array}, block=True)
        t = time.perf_counter() - t0
        return t, t

    def pull(self) -> tuple[float, float]:
        t0 = time.perf_counter()
        values = self.view.pull("b", block=True)
        t = time.perf_counter() - t0
        assert [v.nbytes for v in values] == [ARRAY_BYTES] * self.n
        return t, t

    def rank_pids(self) -> list[int]:
        return [int(p) for p in self.view.apply_sync(os.getpid)]

    def hub_pids(self) -> list[int]:
        process = getattr(self.cluster.controller, "process", None)
        return [process.pid] if process is not None else []

    def interrupt_loop(self) -> float:
        from ipyparallel.error import CompositeError

        ar = self.view.execute("while True: pass", block=False)
        time.sleep(0.5)
        t0 = time.perf_counter()
        self.rc.send_signal(signal.SIGINT, targets=self.view.targets, block=True)
        try:
            ar.get(60)
        except CompositeError:
            pass
        return time.perf_counter() - t0

    def stop(self) -> None:
        if hasattr(self, "rc"):
            self.rc.close()
        if hasattr(self, "cluster"):
            self.cluster.stop_cluster_sync()
        end_processes(getattr(self, "tree", []))


SYSTEMS: dict[str, type[System]] = {
    "hpckernel": HpcKernel, "ipykernel": IPyKernel, "ipyparallel": IPyParallel}


def mpich_env() -> None:
    """Put the venv's mpiexec first on PATH (ipyparallel runs ``mpiexec``) and make
    oversubscribed MPICH ranks yield, as hpckernel's launcher does for its own."""
    from hpckernel.hub.rank_launchers import MPICH_YIELD

    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    for key, value in MPICH_YIELD.items():
        os.environ.setdefault(key, value)
