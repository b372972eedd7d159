"""`Poller`: one look at Slurm per round for everyone in the process who follows jobs.

The job widgets (``%%sbatch``'s follower, ``%squeue``, ``%dashboard``), workflows (their
widget and `wait`), `wait_state`/`wait_gone` (`wait.py`) and the kernel provisioner's pending
start each register a `Watch`: job ids, and/or "my jobs". A round asks Slurm once for all of
them — one filtered `squeue` (`--jobs`, `--me`), plus one `sacct` for watched jobs squeue no
longer lists — and hands every watch the result, a `Snapshot`. Ended jobs are not asked for
again. Between rounds the pause starts at the watches' shortest `interval` and doubles while
no watched job changes, up to their `max_interval` (2 s -> 60 s by default); `poke()`, after
the user acts (submit, cancel, approve, a button), runs a round at once and starts the pauses
over. Changes among "my jobs" alone do not start them over: another session of the same user
submitting jobs must not make this one poll faster.

When Slurm is busy ("Socket timed out on send/recv operation", "Resource temporarily
unavailable", rate limiting) or failing, the next round follows on the same growing schedule
and the snapshot says so in `trouble` ("Slurm busy (...), retrying in 8 s"), for views to
show instead of a traceback.

The poller runs on the private loop of `hpckernel.slurm.sync` (a daemon thread): sync code
registers watches from any thread and gets its callbacks on that thread; async code on any
loop awaits `fetch`, `Watch.next` and `wait_for` without blocking its own loop. One poller per
process and command runner (`Poller.of(slurm)`: this machine's Slurm, or one SSH login
connection).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Coroutine, Hashable
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

from . import parse, sync
from .errors import SlurmBusyError, SlurmError, SlurmTimeoutError
from .jobs import Slurm
from .models import JobInfo

log = logging.getLogger(__name__)
T = TypeVar("T")
Callback = Callable[["Snapshot"], None]

#: ended jobs whose last state is kept (and never asked for again)
FINAL_KEPT = 1000
#: rounds `fetch` waits through while Slurm is busy before it raises `SlurmBusyError`
FETCH_ATTEMPTS = 3


@dataclass(frozen=True)
class Snapshot:
    """What the poller knows after a round, the same for every watch."""

    jobs: dict[str, JobInfo | None] = field(default_factory=dict)
    """Each watched job id that Slurm was asked about -> its state (None: Slurm knows no
    such job, neither squeue nor sacct)."""
    mine: tuple[JobInfo, ...] | None = None
    """This user's pending and running jobs, once a watch has asked for them."""
    trouble: str = ""
    """Why the last round failed and when the next comes ("Slurm busy (Socket timed out on
    send/recv operation), retrying in 8 s"); empty if it worked."""
    checked: float | None = None
    """`time.time()` of the last round that worked."""


def _seen(info: JobInfo | None) -> tuple[str, str | None, str] | None:
    """What counts as a change of a job: state, reason or nodes, not the time going by."""
    return None if info is None else (info.state, info.reason, info.nodelist)


async def _on_poller_loop(coro: Coroutine[object, None, T]) -> T:
    """Await `coro` on the poller's loop, from that loop or any other, without blocking."""
    loop = sync.loop()
    if asyncio.get_running_loop() is loop:
        return await coro
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))


class Watch:
    """One follower's interest: `job_ids` and/or (`mine`) this user's jobs.

    Made by `Poller.watch`. After each round `callback(snapshot)` runs on the poller's
    thread (it must not block), `last` is the newest snapshot and `next()` returns it.
    `close()` ends the watch.
    """

    def __init__(self, poller: Poller, job_ids: Collection[str], mine: bool,
                 callback: Callback | None, interval: float, max_interval: float) -> None:
        self.poller = poller
        self.job_ids = frozenset(str(j) for j in job_ids)
        self.mine = mine
        self.callback = callback
        self.interval = interval
        self.max_interval = max(interval, max_interval)
        self.last: Snapshot | None = None
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Snapshot]]] = []

    def update(self, job_ids: Collection[str]) -> None:
        """Follow these jobs from now on (from any thread); new ones are asked for at once."""
        self.poller._later(self.poller._update, self, frozenset(str(j) for j in job_ids))

    def close(self) -> None:
        """Stop following (from any thread)."""
        self.poller._later(self.poller._remove, self)

    def info(self, job_id: str) -> JobInfo | None:
        """The job's state as of the last round (None if unknown or not asked yet)."""
        return self.last.jobs.get(str(job_id)) if self.last is not None else None

    async def next(self, timeout: float | None = None) -> Snapshot:
        """The snapshot of the next round (from any loop); `TimeoutError` after `timeout`."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Snapshot] = loop.create_future()
        if loop is sync.loop():
            self._waiters.append((loop, future))
        else:
            self.poller._later(self._waiters.append, (loop, future))
        return await asyncio.wait_for(future, timeout)

    async def snapshot(self) -> Snapshot:
        """The newest snapshot, waiting for the first round if there was none yet."""
        # Looked at on the poller's loop, after `Poller._add` (queued before this) has
        # handed a new watch the last snapshot: else a watch of jobs already known would
        # miss it and wait for the next round, a whole pause later.
        return await _on_poller_loop(self._newest())

    async def _newest(self) -> Snapshot:
        if self.last is not None:
            return self.last
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Snapshot] = loop.create_future()
        self._waiters.append((loop, future))
        return await future

    def _deliver(self, snapshot: Snapshot) -> None:
        """On the poller's loop, after a round."""
        self.last = snapshot
        if self.callback is not None:
            try:
                self.callback(snapshot)
            except Exception:  # one broken view must not stop the others' updates
                log.exception("Slurm poller: a watch's callback failed")
        waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            loop.call_soon_threadsafe(_resolve, future, snapshot)


def _resolve(future: asyncio.Future[T], value: T) -> None:
    if not future.done():
        future.set_result(value)


class Poller:
    """Asks Slurm about every watched job of the process in one round; see the module."""

    _shared: ClassVar[dict[Hashable, Poller]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def of(cls, slurm: Slurm | None = None) -> Poller:
        """The process's poller for the Slurm that `slurm`'s runner reaches (made on first
        use with `slurm`'s settings: command timeout, default intervals)."""
        slurm = slurm or Slurm()
        key = slurm.runner.key
        with cls._shared_lock:
            poller = cls._shared.get(key)
            if poller is None:
                poller = cls._shared[key] = cls(slurm, key)
            return poller

    def __init__(self, slurm: Slurm, key: Hashable = None) -> None:
        # Its own Slurm without retries: a busy round is tried again on the poller's
        # schedule, and the views say so meanwhile.
        self.slurm = Slurm(slurm.runner, command_timeout=slurm.command_timeout,
                           poll_interval=slurm.poll_interval,
                           max_poll_interval=slurm.max_poll_interval, retries=0)
        self._key = key
        self.rounds = 0
        """Rounds run so far (each one squeue, plus sacct when squeue missed a job)."""
        # Everything below is read and written on the poller's loop only.
        self._watches: set[Watch] = set()
        self._known: dict[str, JobInfo | None] = {}
        self._final: dict[str, JobInfo] = {}
        self._mine: tuple[JobInfo, ...] | None = None
        self._trouble = ""
        self._checked: float | None = None
        self._pause: float | None = None  # None: start over from the shortest pause
        self._failures = 0
        self._started = 0  # rounds started
        self._round_waiters: list[tuple[int, asyncio.Future[BaseException | None]]] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- from any thread

    def watch(self, job_ids: Collection[str] = (), *, mine: bool = False,
              callback: Callback | None = None, interval: float | None = None,
              max_interval: float | None = None) -> Watch:
        """Follow `job_ids` and (`mine`) this user's jobs until `Watch.close()`.

        `interval`/`max_interval`: the shortest and longest pause this follower accepts
        (default: those of the `Slurm` the poller was made with). Jobs Slurm was not asked
        about yet are asked for at once; otherwise the last snapshot comes at once.
        """
        watch = Watch(self, job_ids, mine, callback,
                      interval if interval is not None else self.slurm.poll_interval,
                      max_interval if max_interval is not None
                      else self.slurm.max_poll_interval)
        self._later(self._add, watch)
        return watch

    def poke(self) -> None:
        """Look at once, and start the pauses over (the user did something)."""
        self._later(self._poke)

    async def fetch(self, job_ids: Collection[str] = (), *, mine: bool = False) -> Snapshot:
        """A snapshot from a round that starts after this call (from any loop), with these
        jobs in it. While Slurm is busy, waits through up to `FETCH_ATTEMPTS` rounds on the
        poller's schedule, then raises `SlurmBusyError`; other failures raise at once."""
        return await _on_poller_loop(self._fetch(frozenset(str(j) for j in job_ids), mine))

    async def wait_for(self, job_id: str, done: Callable[[JobInfo | None], bool],
                       timeout: float, late: Callable[[JobInfo | None], str], *,
                       interval: float | None = None, max_interval: float | None = None
                       ) -> JobInfo | None:
        """Follow one job until `done(info)` (a fresh look first); its info then.
        Raises `SlurmTimeoutError(late(info))` after `timeout` s (may be `inf`)."""
        return await _on_poller_loop(self._wait_for(
            str(job_id), done, timeout, late, interval or self.slurm.poll_interval,
            max_interval or self.slurm.max_poll_interval))

    def _later(self, fn: Callable[..., None], *args: object) -> None:
        sync.loop().call_soon_threadsafe(fn, *args)

    # ---------------------------------------------------------------- on the poller's loop

    def _add(self, watch: Watch) -> None:
        self._watches.add(watch)
        if self._news(watch):
            self._poke()
        else:
            self._ensure_task()
            if self._checked is not None:
                watch._deliver(self._snapshot())

    def _update(self, watch: Watch, job_ids: frozenset[str]) -> None:
        watch.job_ids = job_ids
        if watch in self._watches and self._news(watch):
            self._poke()

    def _remove(self, watch: Watch) -> None:
        self._watches.discard(watch)

    def _news(self, watch: Watch) -> bool:
        """Whether the watch asks about something no round has answered yet."""
        return bool(watch.job_ids - set(self._known) - set(self._final)) or (
            watch.mine and self._mine is None)

    def _poke(self) -> None:
        self._pause = None
        self._ensure_task()
        assert self._wake is not None
        self._wake.set()

    def _ensure_task(self) -> None:
        if self._wake is None:
            self._wake = asyncio.Event()
        if self._task is None or self._task.done():
            self._wake.set()  # a new task starts with a round
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _next_round(self) -> BaseException | None:
        """Wait for the end of the next round to start; its failure, or None."""
        future: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self._round_waiters.append((self._started + 1, future))
        self._ensure_task()
        return await future

    async def _fetch(self, job_ids: frozenset[str], mine: bool) -> Snapshot:
        watch = Watch(self, job_ids, mine, None, self.slurm.poll_interval,
                      self.slurm.max_poll_interval)
        self._watches.add(watch)
        try:
            self._poke()
            for attempt in range(FETCH_ATTEMPTS):
                error = await self._next_round()
                if error is None:
                    return self._snapshot()
                if not isinstance(error, SlurmBusyError | SlurmTimeoutError) or (
                        attempt + 1 == FETCH_ATTEMPTS):
                    raise error
            raise AssertionError("unreachable")
        finally:
            self._watches.discard(watch)

    async def _wait_for(self, job_id: str, done: Callable[[JobInfo | None], bool],
                        timeout: float, late: Callable[[JobInfo | None], str],
                        interval: float, max_interval: float) -> JobInfo | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        info = (await self._fetch(frozenset({job_id}), False)).jobs.get(job_id)
        if done(info):
            return info
        watch = Watch(self, {job_id}, False, None, interval, max_interval)
        self._watches.add(watch)
        self._ensure_task()
        try:
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    raise SlurmTimeoutError(late(info))
                try:
                    snapshot = await watch.next(None if math.isinf(left) else left)
                except asyncio.TimeoutError:
                    raise SlurmTimeoutError(late(info)) from None
                if job_id in snapshot.jobs:
                    info = snapshot.jobs[job_id]
                    if done(info):
                        return info
        finally:
            self._watches.discard(watch)

    def _snapshot(self) -> Snapshot:
        jobs: dict[str, JobInfo | None] = {}
        for watch in self._watches:
            for job_id in watch.job_ids:
                if job_id in self._final:
                    jobs[job_id] = self._final[job_id]
                elif job_id in self._known:
                    jobs[job_id] = self._known[job_id]
        return Snapshot(jobs, self._mine, self._trouble, self._checked)

    async def _run(self) -> None:
        assert self._wake is not None
        try:
            while self._watches or self._round_waiters:
                self._wake.clear()
                self._started += 1
                started = self._started
                error, changed = await self._round()
                pause = self._next_pause(error, changed)
                self._trouble = "" if error is None else _trouble(error, pause)
                snapshot = self._snapshot()
                for watch in list(self._watches):
                    watch._deliver(snapshot)
                waiting, self._round_waiters = self._round_waiters, []
                for need, future in waiting:
                    if need > started:
                        self._round_waiters.append((need, future))
                    elif not future.done():
                        future.set_result(error)
                if not self._watches and not self._round_waiters:
                    break
                try:
                    await asyncio.wait_for(self._wake.wait(), pause)
                except asyncio.TimeoutError:
                    pass
        finally:
            self._task = None
            if not self._watches and not isinstance(self._key, tuple):
                # A poller of its own runner (an SSH connection): gone with its last watch.
                with self._shared_lock:
                    if self._shared.get(self._key) is self:
                        del self._shared[self._key]

    def _next_pause(self, error: BaseException | None, changed: bool) -> float:
        shortest = min((w.interval for w in self._watches), default=self.slurm.poll_interval)
        longest = min((w.max_interval for w in self._watches),
                      default=self.slurm.max_poll_interval)
        longest = max(longest, shortest)
        if error is not None:
            self._failures += 1
            return min(longest, shortest * 2 ** (self._failures - 1))
        self._failures = 0
        if changed or self._pause is None:
            self._pause = shortest
        else:
            self._pause = min(longest, max(shortest, self._pause * 2))
        return self._pause

    async def _round(self) -> tuple[BaseException | None, bool]:
        """One look at Slurm; (its failure or None, whether a watched job changed)."""
        self.rounds += 1
        watched = set().union(*(w.job_ids for w in self._watches))
        ask = watched - set(self._final)
        mine = any(w.mine for w in self._watches)
        try:
            listed = (await self.slurm.jobs(include_ended=True, nodes=False, retry=False)
                      if mine else None)
            found = await self.slurm.jobs_by_id(ask, listed=listed, retry=False)
        except Exception as err:  # the poller must outlive any failure: its watches wait on it
            log.log(logging.INFO if isinstance(err, SlurmError | OSError) else logging.ERROR,
                    "Slurm poller: round failed: %s", err,
                    exc_info=not isinstance(err, SlurmError | OSError))
            return err, False
        changed = False
        known = {j: i for j, i in self._known.items() if j in watched}
        for job_id, info in found.items():
            if job_id not in known or _seen(known[job_id]) != _seen(info):
                changed = True
            known[job_id] = info
            if info is not None and info.ended:
                self._final[job_id] = info
                if len(self._final) > FINAL_KEPT:
                    self._final.pop(next(iter(self._final)))
        self._known = known
        if listed is not None:
            self._mine = tuple(j for j in listed if not j.ended)
        self._checked = time.time()
        return None, changed


def _trouble(error: BaseException, pause: float) -> str:
    """One line for the views: what went wrong and when the next try comes."""
    retry = f"retrying in {pause:.0f} s"
    if isinstance(error, SlurmBusyError):
        return f"Slurm busy ({parse.transient_reason(error.stderr)}), {retry}"
    if isinstance(error, SlurmTimeoutError):
        return f"Slurm busy ({error.command.split()[0]} did not answer in time), {retry}"
    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    return f"cannot ask Slurm: {first}; {retry}"
