"""Start real hub kernels through jupyter_client and talk to them like a notebook does."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import zmq
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from hpckernel.kernelspec import write_kernel_spec

OUTPUT_TYPES = ("stream", "execute_result", "display_data", "error", "clear_output",
                "update_display_data")


@dataclass
class Result:
    reply: dict[str, Any]
    outputs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> str:
        return str(self.reply["content"]["status"])

    @property
    def content(self) -> dict[str, Any]:
        return dict(self.reply["content"])

    def text(self, name: str | None = None) -> str:
        """All stream text (of one stream if ``name``) in arrival order."""
        return "".join(m["content"]["text"] for m in self.outputs
                       if m["msg_type"] == "stream"
                       and (name is None or m["content"]["name"] == name))

    def per_rank(self, name: str = "stdout") -> dict[int, list[str]]:
        """The stream's lines per rank, undoing the merge labels (``[stdout:0,2] x``)."""
        lines: dict[int, list[str]] = {}
        ranks: list[int] = []
        for line in self.text(name).splitlines():
            match = re.match(rf"\[{name}:([0-9,-]+)\] ?(.*)", line)
            if match:
                ranks = expand_ranks(match[1])
                line = match[2]
            for rank in ranks:
                lines.setdefault(rank, []).append(line)
        return lines

    def of_type(self, msg_type: str) -> list[dict[str, Any]]:
        return [m for m in self.outputs if m["msg_type"] == msg_type]

    def plain(self) -> list[str]:
        """text/plain of execute_result and display_data outputs."""
        return [m["content"]["data"].get("text/plain", "") for m in self.outputs
                if m["msg_type"] in ("execute_result", "display_data")]


def expand_ranks(text: str) -> list[int]:
    """``"0-2,5"`` → ``[0, 1, 2, 5]`` (the inverse of hpckernel.targets.format_ranks)."""
    ranks: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        ranks.extend(range(int(first), int(last or first) + 1))
    return ranks


class Kernel:
    """A hub kernel with ``ranks`` local ranks, driven through a blocking client."""

    def __init__(self, tmp: Path, ranks: int = 4, extra: list[str] | None = None,
                 env: dict[str, str] | None = None, wait_ranks: bool = True,
                 slurm: dict[str, Any] | None = None, cwd: Path | None = None,
                 log: Path | None = None, encrypted: bool = False) -> None:
        """A local MPI kernel, or with ``slurm`` (SlurmProvisioner settings) a Slurm one;
        ``cwd``: the hub's working directory (a notebook's directory; default ``tmp``, where
        its provenance log goes); ``log``: a file for the hub's stderr (its log); ``encrypted``:
        CurveZMQ on the channels (as the Slurm kernels and ``hpckernel submit`` have)."""
        name = "hpckernel-test"
        if slurm is None:
            write_kernel_spec(tmp / "kernels" / name, ranks=ranks, extra=extra)
        else:
            write_kernel_spec(tmp / "kernels" / name, slurm=slurm)
        self.km = KernelManager(kernel_name=name, kernel_spec_manager=KernelSpecManager(
            kernel_dirs=[str(tmp / "kernels")]),
            transport_encryption="auto" if encrypted else "disabled")
        # ipykernel captures descriptor 2 into cells unless it runs under pytest: the hub
        # must not think it does, or what reaches its descriptor 2 would never be seen.
        hub_env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
        for attempt in (1, 2):
            stderr = open(log, "ab") if log else None  # the hub gets a descriptor of its own
            try:
                self.km.start_kernel(env={**hub_env, **(env or {})},
                                     cwd=str(cwd or tmp), stderr=stderr)
            finally:
                if stderr is not None:
                    stderr.close()
            self.kc = self.km.client()
            self.kc.start_channels()
            try:
                self.kc.wait_for_ready(timeout=60)
                break
            except RuntimeError:  # "Kernel died before replying to kernel_info"
                # jupyter_client picks free ports, then the hub binds them: a process of a
                # test running beside this one can take one in between ("Address already
                # in use"). A second start picks new ports; a kernel that cannot start at
                # all fails again.
                if attempt == 2 or slurm is not None or self.km.is_alive():
                    raise
                self.kc.stop_channels()
                self.km.cleanup_resources()
                # cleanup_resources closes the manager's ZMQ context and keeps the ports
                # it picked: a fresh context, and new ports at the next start.
                self.km.context = zmq.Context()
                for port in ("shell_port", "iopub_port", "stdin_port", "control_port",
                             "hb_port"):
                    setattr(self.km, port, 0)
        self.ranks = ranks
        self._pending: dict[str, list[dict[str, Any]]] = {}
        self._iopub_stash: dict[str | None, list[dict[str, Any]]] = {}
        self._replies: dict[str | None, dict[str, Any]] = {}
        if wait_ranks:  # so that no test sees the "[hpckernel] waiting for ... ranks" line
            self.ok("pass")

    def run(self, code: str, timeout: float = 60, **kwargs: Any) -> Result:
        outputs: list[dict[str, Any]] = []

        def keep(msg: dict[str, Any]) -> None:
            if msg["msg_type"] in OUTPUT_TYPES:
                outputs.append(msg)

        reply = self.kc.execute_interactive(code, output_hook=keep, timeout=timeout, **kwargs)
        return Result(reply, outputs)

    def submit(self, code: str, subshell: str | None = None,
               metadata: dict[str, Any] | None = None) -> str:
        """Send a cell without waiting (to a subshell, if given; with request ``metadata``
        such as JupyterLab's ``cellId``); collect it with :meth:`collect`. Several cells
        may be in flight: :meth:`collect` sorts the messages by the cell they belong to."""
        if subshell is None and metadata is None:
            return str(self.kc.execute(code))
        msg = self.kc.session.msg("execute_request", {
            "code": code, "silent": False, "store_history": True, "user_expressions": {},
            "allow_stdin": False, "stop_on_error": True}, metadata=metadata)
        if subshell is not None:
            msg["header"]["subshell_id"] = subshell
        self.kc.shell_channel.send(msg)
        return str(msg["header"]["msg_id"])

    def subshell(self) -> str:
        """A new subshell (ipykernel 7): its cells run while the main shell is busy."""
        msg = self.kc.session.msg("create_subshell_request", {})
        self.kc.control_channel.send(msg)
        while True:
            reply = self.kc.get_control_msg(timeout=30)
            if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
                assert reply["content"]["status"] == "ok", reply["content"]
                return str(reply["content"]["subshell_id"])

    def _iopub(self, msg_id: str, deadline: float) -> dict[str, Any]:
        """The next IOPub message of cell ``msg_id``; others are kept for their cells."""
        while True:
            stashed = self._iopub_stash.get(msg_id)
            if stashed:
                return stashed.pop(0)
            msg = self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            self._iopub_stash.setdefault(msg["parent_header"].get("msg_id"), []).append(msg)

    def _reply(self, msg_id: str, deadline: float) -> dict[str, Any]:
        while msg_id not in self._replies:
            msg = self.kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
            self._replies[msg["parent_header"].get("msg_id")] = msg
        return self._replies.pop(msg_id)

    def collect(self, msg_id: str, timeout: float = 60, until: str | None = None
                ) -> Result | None:
        """Gather the cell's output until its reply — or, with ``until``, only until a
        stream containing that text arrives (then None; call again for the rest)."""
        outputs = self._pending.setdefault(msg_id, [])
        deadline = time.monotonic() + timeout
        while True:
            msg = self._iopub(msg_id, deadline)
            if msg["msg_type"] in OUTPUT_TYPES:
                outputs.append(msg)
                if until and msg["msg_type"] == "stream" and until in msg["content"]["text"]:
                    return None
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                reply = self._reply(msg_id, deadline)
                return Result(reply, self._pending.pop(msg_id))

    def ok(self, code: str, timeout: float = 60) -> Result:
        result = self.run(code, timeout)
        assert result.status == "ok", (result.content, result.text())
        return result

    def rank_pids(self) -> list[int]:
        text = self.ok("%%local\nprint(ranks.apply(__import__('os').getpid))").text()
        return [int(p) for p in text.strip().strip("[]").split(",")]

    @property
    def hub_pid(self) -> int:
        return int(self.km.provisioner.pid)  # type: ignore[union-attr]

    def process_tree(self) -> list[int]:
        """The hub and everything it started (mpiexec, proxies, ranks)."""
        try:
            hub = psutil.Process(self.hub_pid)
            return [hub.pid, *(p.pid for p in hub.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []

    def shutdown(self) -> None:
        self.kc.stop_channels()
        if self.km.has_kernel:
            self.km.shutdown_kernel(now=False)


def read_provenance_log(path: Path) -> list[dict[str, Any]]:
    """The records in a provenance log now (none before its first)."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def provenance_log(path: Path, ids: list[str], timeout: float = 30) -> list[dict[str, Any]]:
    """The records of a provenance log once it holds those of ``ids``: the hub's writer
    thread appends a cell's record a moment after its reply (``hub/recorder.py``)."""
    deadline = time.monotonic() + timeout
    while True:
        records = read_provenance_log(path)
        missing = set(ids) - {r["id"] for r in records}
        if not missing:
            return records
        assert time.monotonic() < deadline, f"not in {path} after {timeout} s: {missing}"
        time.sleep(0.05)


def ended(process: psutil.Process | int) -> bool:
    """Exited: gone, or a zombie whose parent has not reaped it yet. Safe against a process
    that ends while it is looked at."""
    try:
        proc = process if isinstance(process, psutil.Process) else psutil.Process(process)
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pids: list[int], timeout: float = 15) -> list[int]:
    """Wait for processes to end (ranks, hubs); the pids still alive after ``timeout``."""
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return [p.pid for p in alive if not ended(p)]


#: MPI's shared-memory files in /dev/shm: MPICH's, Open MPI's (btl/sm)
SHM_FILE = r"/dev/shm/(?:mpich_shm_|sm_segment\.)[\w.-]+"
MPI_FILES = ("import re\nprint(*sorted({line.split(None, 5)[5].strip() for line in "
             f"open('/proc/self/maps') if re.search({SHM_FILE!r}, line)}}))")


def mpi_files(kernel: Kernel) -> list[str]:
    """MPI's shared-memory files the ranks map: unlinked once all have mapped them."""
    text = kernel.ok(MPI_FILES).text()
    names = sorted(set(re.findall(SHM_FILE, text)))
    assert names and text.count("(deleted)") >= len(names), text
    return names


def session_dirs(base: Path | None = None) -> set[Path]:
    """Open MPI's session directories (``ompi.<pid of mpirun>``) in ``base`` (default: the
    temporary directory; the local kernel keeps them in its job directory)."""
    return set((base or Path(os.environ.get("TMPDIR") or "/tmp")).glob("ompi.*"))


def orphaned_session_dirs(base: Path | None = None) -> list[Path]:
    """Session directories whose mpirun is gone: left behind."""
    return [d for d in session_dirs(base)
            if not d.name.partition(".")[2].isdigit() or not psutil.pid_exists(
                int(d.name.partition(".")[2]))]


def job_dir(kernel: Kernel) -> Path:
    """The hub's job directory (ranks.log, exit codes, Open MPI's session directory)."""
    return Path(kernel.ok("%%local\nprint(get_ipython().kernel.job_dir)").text().strip())
class PeakRss:
    """A process's largest RSS while the block runs, sampled every 10 ms (``grown``: above
    what it was when the block began)."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.before = self.proc.memory_info().rss
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def grown(self) -> int:
        return self.peak - self.before

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
