"""An attached live batch job's ranks, as the cell machinery sees them: a ``RankPlane``
(``hub/rank_plane.py``: the plane thread, rank table, requests in flight, published values)
whose fan-in is ``LiveJobFanin`` over one link to the job's endpoint. ``PxController`` runs
``%%px --job`` cells, ``%peek --job`` and ``%where --job`` on it exactly as on the kernel's
own ranks.

The notebook is a guest: it never starts, restarts or ends the job's ranks. It learns of
the job's end at once — the endpoint's word that every program ended, or the connection
dropping — and then asks Slurm for the job's state through the process's one poller
(``slurm/poller.py``), as it does when the endpoint falls silent (a cut network: the link
reconnects by itself if the job runs on).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

from ..hub.fanin import FaninContext, FaninSettings
from ..hub.inflight import Publish
from ..hub.merge import OutputBudget
from ..hub.rank_plane import PoolSettings, RankPlane
from ..hub.ranktable import RankInfo
from ..plane.headers import PlaneHeader
from ..slurm import Poller, Slurm, SlurmError, SlurmTimeoutError
from ..targets import format_ranks
from .errors import JobEnded
from .fanin import LiveJobFanin
from .files import LiveInfo
from .link import EndpointLink
from .reach import is_slurm_id

log = logging.getLogger(__name__)

#: Seconds the job's endpoint has to welcome a notebook.
WELCOME = 15.0
#: Seconds Slurm has to say the job ended once its programs have.
PROGRAM_END = 15.0
#: Published values are pulled this often (seconds) while a live plot shows them.
PULL = 1.0


class AttachedRanks(RankPlane):
    """The ranks of the live job ``job`` (see the module docstring)."""

    def __init__(self, job: str, info: LiveInfo, url: str, job_dir: Path, publish: Publish,
                 slurm: Slurm, budget: OutputBudget | None = None) -> None:
        settings = PoolSettings(heartbeat_interval=1.0, interrupt_grace=5.0)
        super().__init__(info.size, job_dir, publish, settings, budget)
        self.job = job
        self.info = info
        self.slurm = slurm
        self.state = "RUNNING"  # Slurm's, once it ended
        self.detail = ""
        self.ended = threading.Event()
        self.programs: PlaneHeader = {}  # the endpoint's last lstate
        self.welcomed: Future[PlaneHeader] = Future()
        self._listeners: list[Callable[[AttachedRanks], None]] = []
        self._asking = False
        self._pulled: dict[int, int] = {}  # rank -> the last value's sequence number had
        self.inflight.stuck_hint = (
            "The notebook stopped waiting for it; the cell goes on in the job (it is inside "
            "a call where it cannot be stopped alike on every rank).")
        self._steps.append(("published values pulled", self._tick_pull))
        self._last_pull = 0.0
        self._url = url

    # -- thread-safe API ----------------------------------------------------------------

    def start(self) -> None:
        """Connect, and wait for the endpoint's welcome; ``ready`` resolves once every rank
        has registered (a job that just started: its ranks are still connecting)."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        try:
            self.welcomed.result(WELCOME)
        except TimeoutError:
            self.detach()
            raise JobEnded(self.job, "NOT ANSWERING", f"its endpoint at {self._url} did not "
                           f"answer within {WELCOME:g} s") from None

    def describe(self) -> str:
        """The ranks in a few words, for ``%ranks`` and errors."""
        return f"live job {self.job}: its ranks reached through its endpoint on {self.info.host}"

    def on_end(self, callback: Callable[[AttachedRanks], None]) -> None:
        """Call ``callback(self)`` once the job has ended (at once if it has)."""
        self._listeners.append(callback)
        if self.ended.is_set():
            callback(self)

    def detach(self) -> None:
        """Leave the job (the cells of this notebook not run yet are dropped); idempotent."""
        if not self._thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._close(), self.loop).result(10)
        except Exception:
            log.exception("detaching from job %s failed", self.job)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        shutil.rmtree(self.job_dir, ignore_errors=True)

    # -- the plane thread ---------------------------------------------------------------

    async def _start(self) -> None:
        link = self.link = EndpointLink(self.info, self._url)
        link.start(self.loop)
        fanin = self.fanin = LiveJobFanin(FaninContext(
            size=self.size, launch=0, table=self.table, inflight=self.inflight,
            live=self.live, transport=link, settings=FaninSettings(),
            register=self.register, unreachable=self.unreachable,
            ranks_lost=self._lose, end_ranks=self._lose,
            dap_event=lambda rank, event: None), self._state, self._silent)
        link.on_message = fanin.handle
        link.on_connection = self._connection
        self.inflight.reinterrupt = fanin.interrupt
        self._spawn(link.receive())
        self._spawn(self._tick())
        fanin.hello()

    async def _close(self) -> None:
        if self.fanin is not None:
            self.fanin.shutdown()
        await asyncio.sleep(0.05)  # the detach goes out (the socket does not linger)
        for task in list(self._tasks):
            task.cancel()
        self.link.close()

    def register(self, info: RankInfo, header: PlaneHeader) -> None:
        """A rank of the job, passed on by the endpoint from its agent."""
        info.pid, info.host = header.get("pid"), header.get("host", "")
        if info.state == "starting":  # idle: its program runs, no cell of this notebook
            self.table.set_state(info, "idle", "its program runs")
        if self.table.starting == 0 and not self.ready.done():
            self.ready.set_result(None)

    def unreachable(self, rank: int) -> None:
        """A rank the endpoint cannot reach (the fan-in's): lost to this notebook, not ended."""
        self._lose([rank], "cannot be reached: the agent of its node is gone")

    def _lose(self, ranks: list[int], reason: str) -> None:
        for rank in ranks:
            if self.table[rank].state != "dead":
                self.inflight.fail_rank(rank, self.table.mark_dead(rank, reason, tail=False))

    def _state(self, header: PlaneHeader) -> None:
        """The endpoint's word: the welcome, or the programs' state (``lstate``)."""
        self.programs = header
        if not self.welcomed.done():
            self.welcomed.set_result(header)
        if header.get("done"):
            self._check("every rank's program ended", program_done=True)

    def _silent(self, seconds: float) -> None:
        self._check(f"no word from the job for {seconds:.0f} s")

    def _connection(self, up: bool) -> None:
        if not up:
            self._check("the connection to the job closed")

    def _check(self, why: str, program_done: bool = False) -> None:
        if not self._asking and not self.ended.is_set():
            self._asking = True
            self._spawn(self._ask_slurm(why, program_done))

    async def _ask_slurm(self, why: str, program_done: bool) -> None:
        """How the job is, through the process's one Slurm poller."""
        poller = Poller.of(self.slurm)
        state = "ENDED"
        try:
            if not is_slurm_id(self.job):
                raise SlurmError(f"{self.job} is not a Slurm job")
            info = (await poller.fetch([self.job])).jobs.get(self.job)
            if info is not None and not info.ended and program_done:
                # The programs ended; Slurm notices the job's end a moment later (or the
                # batch script goes on without them: then "ENDED" is all there is to say).
                info = await poller.wait_for(
                    self.job, lambda i: i is None or i.ended, PROGRAM_END,
                    lambda i: "", interval=0.5, max_interval=2.0)
            if info is not None and not info.ended and not program_done:
                return  # it runs on: a cut link, which ZMQ connects again by itself
            if info is not None and info.ended:
                state = info.state
        except SlurmTimeoutError:
            pass
        except (SlurmError, OSError) as e:  # no Slurm here (an mpiexec run), or it failed
            log.debug("job %s: Slurm does not say (%s)", self.job, e)
            if not program_done and is_slurm_id(self.job):
                return  # unknown: a cut network (the login node's too) is not the job's end
        finally:
            self._asking = False
        self._end(state, why)

    def _end(self, state: str, detail: str) -> None:
        if self.ended.is_set():
            return
        failed = (self.programs.get("failed") or {}) if isinstance(self.programs, dict) else {}
        if failed:
            detail += "; failed: " + "; ".join(f"rank {r}: {e}" for r, e in failed.items())
        self.state, self.detail = state, detail
        self.ended.set()
        error = JobEnded(self.job, state, detail)
        self.inflight.fail_all({"status": "error", "ename": "JobEnded", "evalue": str(error)})
        self._lose([i.rank for i in self.table], f"the job ended ({state})")
        if not self.ready.done():
            self.ready.set_exception(error)
        if not self.welcomed.done():
            self.welcomed.set_exception(error)
        for callback in self._listeners:
            try:
                callback(self)
            except Exception:  # a broken listener must not stop the others
                log.exception("a listener of job %s's end failed", self.job)

    # -- published values -----------------------------------------------------------------

    def _tick_pull(self, now: float) -> None:
        """While a live plot shows values of the job, ask the ranks for new ones."""
        names = self.live.watched()
        if names and now - self._last_pull >= PULL and self.ready.done() \
                and not self.ended.is_set():
            self._last_pull = now
            self.pull(names)

    def pull(self, names: list[str]) -> Future[None]:
        """Ask every rank for the values published as ``names`` since the last pull; they
        go into ``live`` (a future that resolves once they are there)."""
        groups: dict[int, list[int]] = {}
        for rank in range(self.size):
            groups.setdefault(self._pulled.get(rank, 0), []).append(rank)
        since = [[format_ranks(ranks), seq] for seq, ranks in groups.items() if seq]
        request = self.submit("lvals", list(range(self.size)),
                              {"since": since, "names": names}, output="none", label="lvals")
        done: Future[None] = Future()

        def pulled(_: object) -> None:
            for rank, by_name in request.values.items():
                for name, entries in (by_name or {}).items():
                    for seq, _t, value in entries:
                        self.live.add(name, rank, value)
                        self._pulled[rank] = max(self._pulled.get(rank, 0), seq)
            self.live.flush(float("inf"))
            done.set_result(None)
        request.future.add_done_callback(pulled)
        return done
