"""The notebook's handle on a live batch job: ``job = hpckernel.attach(JOBID)``.

The handle runs the hub's own cell machinery (``PxController``) over the job's ranks
(``attached.py``), so ``job.execute`` and ``%%px --job`` show their output in the current
cell merged as ``%%px`` shows the kernel's ranks' output, and ``%peek --job``/``%where
--job`` read as theirs do. It works in an hpckernel kernel and in a plain IPython kernel
alike (output goes to the kernel's IOPub under the current cell), and outside any kernel
(output printed).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING

from ..hub.allocation import Allocation
from ..hub.inflight import Publish
from ..hub.merge import OutputBudget
from ..hub.outputs import OutputStore
from ..hub.px_controller import PxController
from ..hub.requests import RemoteError
from ..plane import make_job_dir
from ..slurm import JobInfo, Slurm
from ..slurm import sync as slurm_sync
from ..targets import TargetSpec
from .attached import AttachedRanks
from .errors import JobEnded, NotLiveError
from .files import LiveInfo
from .reach import LoginRoute, find_local

if TYPE_CHECKING:
    from ..widgets.plot import LivePlot

#: Seconds ``attach`` waits for the ranks of a job that just started to connect.
START = 60.0

#: The jobs attached in this process, by id (``--job`` finds them here; an ended one stays
#: until ``detach``, to say how it ended).
ATTACHED: dict[str, LiveJob] = {}


def kernel_io() -> tuple[Publish, Callable[[], dict[str, object] | None], OutputBudget | None]:
    """(publish, the current cell's parent, the kernel's output budget) of the kernel this
    process runs (an hpckernel hub or any ipykernel kernel); outside one, output is
    printed."""
    from ipykernel.kernelbase import Kernel

    if not Kernel.initialized():
        return _print, lambda: None, None
    kernel = Kernel.instance()
    session = kernel.session
    assert session is not None  # a running kernel has its session

    def publish(msg_type: str, content: dict[str, object], metadata: dict[str, object],
                parent: dict[str, object] | None) -> None:
        # Thread-safe: ipykernel's IOPub socket is its IOPub thread's.
        session.send(kernel.iopub_socket, msg_type, content, parent=parent or {},
                            metadata=metadata, ident=kernel._topic(msg_type))

    pool = getattr(kernel, "pool", None)  # an hpckernel hub: one budget for all its cells
    return publish, lambda: kernel.get_parent("shell"), getattr(pool, "budget", None)


def _print(msg_type: str, content: dict[str, object], metadata: dict[str, object],
           parent: dict[str, object] | None) -> None:
    if msg_type == "stream":
        print(content["text"], end="", file=sys.stderr if content["name"] == "stderr"
              else sys.stdout)
    elif msg_type in ("display_data", "execute_result", "update_display_data"):
        data = content.get("data", {})
        print(data.get("text/plain", "") if isinstance(data, dict) else "")
    elif msg_type == "error":
        traceback = content.get("traceback") or []
        print("\n".join(traceback if isinstance(traceback, list) else []), file=sys.stderr)


class LiveJob:
    """An attached live job (see ``hpckernel.attach``)."""

    def __init__(self, job: str, ranks: AttachedRanks, route: LoginRoute | None,
                 parent: Callable[[], dict[str, object] | None]) -> None:
        self.job = job
        self.pool = ranks
        self.route = route
        self.px = PxController(ranks, parent, ranks.inflight.publish,
                               OutputStore(ranks.job_dir))
        self.ranks = ranks.size

    @property
    def nodes(self) -> dict[str, str]:
        """The job's nodes: node key -> host."""
        fanin = self.pool.fanin
        return {key: node.host for key, node in getattr(fanin, "nodes", {}).items()}

    @property
    def state(self) -> str:
        """``RUNNING``, or Slurm's state once the job ended (``ENDED`` where Slurm does
        not know it)."""
        return self.pool.state

    @property
    def ended(self) -> bool:
        """Whether the job has ended (the attached ranks learnt it)."""
        return self.pool.ended.is_set()

    def __repr__(self) -> str:
        return (f"<live job {self.job}: {self.ranks} ranks on {self.pool.info.nodes} nodes, "
                f"{self.state}>")

    # -- the notebook's calls -------------------------------------------------------------

    def where(self, targets: TargetSpec = None) -> dict[int, str]:
        """Each rank's Python stack now (innermost call last), as text."""
        request = self.px.ask("where", self._targets(targets), {})
        request.raise_for_errors()
        return {r: "\n".join(f"{f['file']}:{f['line']} in {f['function']}: {f['code']}"
                             for f in v["stack"]) for r, v in sorted(request.values.items())}

    def peek(self, name: str, targets: TargetSpec = None, timeout: float = 10.0
             ) -> dict[int, object]:
        """A copy of ``name`` (``x`` or ``x.attr``: a variable of the program's
        ``__main__``, or of a function running on the main thread) on each rank, taken
        without stopping the program."""
        request = self.px.ask("peek", self._targets(targets), {"names": [name]}, timeout)
        request.raise_for_errors()
        return {r: v[0] for r, v in sorted(request.values.items())}

    def execute(self, code: str, targets: TargetSpec = None, timeout: float | None = None) -> None:
        """Run ``code`` on the targets at their next common ``safepoint()``; blocks until
        every target ran it. The output shows in the current cell merged as ``%%px`` shows
        it; an error raises ``RemoteError`` naming the ranks (the program goes on). An
        interrupt (or ``timeout``) stops the cell where every target can stop it alike,
        never the program."""
        handle = self.px.submit("execute", self._targets(targets), {"code": code},
                                label=f"job {self.job}")
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not handle.wait(0.2):  # short waits: the notebook's interrupt lands here
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"the cell did not end within {timeout:g} s")
        except (KeyboardInterrupt, TimeoutError):
            self.pool.interrupt()
            handle.wait(self.pool.settings.interrupt_grace + 5)
            raise
        handle.request.raise_for_errors()

    @property
    def live(self) -> dict[str, dict[int, list[object]]]:
        """``{NAME: {rank: [values]}}`` the ranks published so far (pulled now)."""
        self.pool.pull([]).result(30)
        return {name: self.pool.live[name] for name in self.pool.live}

    def values(self, name: str) -> dict[int, list[object]]:
        """``{rank: [values]}`` published as ``name`` so far (pulled now)."""
        self.pool.pull([name]).result(30)
        return self.pool.live[name]

    def liveplot(self, name: str) -> LivePlot:
        """The live plot (``%liveplot``) of what the ranks ``publish`` as ``name``: pulled
        from the ranks while it shows, starting with the history they kept."""
        from ..widgets.plot import LivePlot

        return LivePlot(self.pool.live, name)

    def detach(self) -> None:
        """Leave the job (its cells of this notebook that have not run are dropped);
        idempotent."""
        if ATTACHED.get(self.job) is self:
            del ATTACHED[self.job]
        self.pool.detach()
        self.px.outputs.close()
        if self.route is not None:
            slurm_sync.run(self.route.close())

    def on_end(self, callback: Callable[[LiveJob], None]) -> None:
        """Call ``callback(job)`` once the job has ended (at once if it has)."""
        self.pool.on_end(lambda _: callback(self))

    def _targets(self, targets: TargetSpec) -> list[int]:
        if self.ended:
            raise JobEnded(self.job, self.state, self.pool.detail)
        return self.px.resolve(targets)


def attach(job: str | int, login: str | None = None, job_root: str | None = None,
           ssh_args: list[str] | None = None, wait: float = 0.0) -> LiveJob:
    """Attach to the running live job ``job`` (a Slurm job id; a program started with
    ``srun python -m hpckernel.live``), here or through the login node ``login`` (as the
    Slurm kernel's ``login``, with its ``ssh_args``); the handle of this process's earlier
    attach if it is still attached. Only the job's owner can: its keys are in a 0600 file.
    ``wait``: seconds to wait for a job that is still pending, or not live yet (just
    submitted). Raises ``NotLiveError``, ``NotYoursError`` or ``JobEnded`` saying why not."""
    job = str(job)
    known = ATTACHED.get(job)
    if known is not None and not known.ended:
        return known
    route = LoginRoute(login, ssh_args or []) if login else None
    try:
        try:
            info, found, url, slurm = _locate(job, job_root, route, wait)
        except NotLiveError:
            if known is not None:  # it was attached, and has ended: say how
                raise JobEnded(job, known.state, known.pool.detail) from None
            raise
        publish, parent, budget = kernel_io()
        ranks = AttachedRanks(job, info, url, make_job_dir(), publish, slurm, budget)
    except BaseException:
        if route is not None:
            slurm_sync.run(route.close())
        raise
    handle = LiveJob(job, ranks, route, parent)
    if found is not None:
        handle.px.allocation = Allocation.of(found, slurm)
    try:
        ranks.start()
        ranks.ready.result(START)
    except FutureTimeout:
        handle.detach()
        raise NotLiveError(f"job {job}: only {ranks.size - ranks.table.starting} of its "
                           f"{ranks.size} ranks connected within {START:g} s") from None
    except BaseException:
        handle.detach()
        raise
    if known is not None:
        known.detach()  # its job ended; this is a new run of the id (an mpiexec live id)
    alloc = handle.px.allocation
    handle.px.context = {"kind": "live", "size": ranks.size,
                         "hosts": sorted({i.host for i in ranks.snapshot() if i.host}),
                         "job": {"id": job, "live": True,
                                 "nodes": alloc.nodelist if alloc else "",
                                 "partition": alloc.partition if alloc else ""}}
    ATTACHED[job] = handle
    return handle


def _locate(job: str, root: str | None, route: LoginRoute | None, wait: float
            ) -> tuple[LiveInfo, JobInfo | None, str, Slurm]:
    """The job's live.json, Slurm's word on it, the endpoint's URL from here (through the
    login node's tunnel), and the Slurm to ask about it."""
    if route is None:
        info, found = slurm_sync.run(find_local(job, root, wait))
        return info, found, info.url, Slurm()
    info, found = slurm_sync.run(route.find(job, root, wait))
    return info, found, slurm_sync.run(route.tunnel(info.url)), route.access.slurm


def job(job_id: str, login: str | None = None) -> LiveJob:
    """The attached job ``job_id`` (attached now if it is not, or if it ended): what
    ``--job JOBID`` names."""
    return attach(job_id, login)


__all__ = ["ATTACHED", "JobEnded", "LiveJob", "RemoteError", "attach", "job"]
