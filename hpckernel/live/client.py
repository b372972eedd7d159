"""The notebook's handle on a live batch job: ``job = hpckernel.attach(JOBID)``.

One background thread owns the connection to the job's endpoint (a DEALER, CurveZMQ with
the keys of the job's ``live.json``): it sends what the notebook asks, matches answers to
requests, pings the endpoint every second, pulls published values while a live plot is
open, and notices the job's end at once (the endpoint's word, or its connection closing),
then asks Slurm for the job's state. Every call of the handle blocks only its caller.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from concurrent.futures import Future
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from ..hub.live import LiveStore
from ..hub.requests import RemoteError
from ..plane import Message, pack, unpack
from ..slurm import ENDED_STATES, Slurm, SlurmError
from ..slurm import sync as slurm_sync
from ..targets import format_ranks, format_sorted, parse_targets
from .fanin import decode_reply
from .files import LiveInfo
from .reach import LoginRoute, find_local

#: Seconds between pings; an endpoint silent for ``SILENCE`` is checked with Slurm.
PING = 1.0
SILENCE = 6.0
#: Seconds ``attach`` waits for the ranks of a job that just started to connect.
START = 60.0
#: Seconds between pulls of published values while a live plot is open.
PULL = 0.5


#: The jobs attached in this process, by id (the magics' ``--job`` finds them here).
ATTACHED: dict[str, LiveJob] = {}


class JobEnded(RuntimeError):
    """The job (or its program) ended; ``state`` is Slurm's (``COMPLETED``, ``CANCELLED``,
    ``TIMEOUT``, ``FAILED`` …), or ``ENDED`` where there is no Slurm."""

    def __init__(self, job: str, state: str, detail: str = "") -> None:
        super().__init__(f"job {job} has ended: {state}{f' ({detail})' if detail else ''}")
        self.state = state


class LiveJob:
    """An attached live job (see ``hpckernel.attach``)."""

    def __init__(self, job: str, info: LiveInfo, url: str, route: LoginRoute | None) -> None:
        self.job = job
        self.info = info
        self.route = route
        self.ranks = info.size
        self.live = LiveStore()
        self.state = "RUNNING"
        self.ended = threading.Event()
        self.end_detail = ""
        self._listeners: list[Any] = []
        self._watched: set[str] = set()
        self._seen: dict[int, int] = {}
        self._futures: dict[str, Future[Message]] = {}
        self._outbox: list[list[Any]] = []
        self._lock = threading.Lock()
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.curve_serverkey = info.server_public.encode()
        self._sock.curve_publickey = info.client_public.encode()
        self._sock.curve_secretkey = info.client_secret.encode()
        self._monitor = self._sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self._sock.connect(url)
        self._wake_r, self._wake_w = os.pipe()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"hpckernel-live-{job}")
        self._thread.start()
        welcome = self._request("lhello", {}, timeout=30).header
        deadline = time.monotonic() + START
        while welcome.get("registered", 0) < self.ranks and time.monotonic() < deadline:
            time.sleep(0.1)  # a job that just started: its ranks are still connecting
            welcome = self._request("lhello", {}, timeout=30).header
        self.nodes: dict[str, str] = welcome.get("hosts", {})
        self._state(welcome)

    def __repr__(self) -> str:
        return (f"<live job {self.job}: {self.ranks} ranks on {self.info.nodes} nodes, "
                f"{self.state}>")

    # -- the notebook's calls -------------------------------------------------------------

    def where(self, targets: Any = None) -> dict[int, str]:
        """Each rank's Python stack now (innermost call last), as text."""
        _, values = self._ask("where", {}, targets)
        return {r: "\n".join(f"{f['file']}:{f['line']} in {f['function']}: {f['code']}"
                             for f in v["stack"]) for r, v in sorted(values.items())}

    def peek(self, name: str, targets: Any = None) -> dict[int, Any]:
        """A copy of ``name`` (``x`` or ``x.attr``: a variable of the program's
        ``__main__``, or of a function running on the main thread) on each rank, taken
        without stopping the program."""
        _, values = self._ask("peek", {"names": [name]}, targets)
        return {r: v[0] for r, v in sorted(values.items())}

    def execute(self, code: str, targets: Any = None, timeout: float | None = None,
                silent: bool = False) -> dict[int, dict[str, Any]]:
        """Run ``code`` on the targets at their next common ``safepoint()``; blocks until
        every target ran it. The output shows here merged as ``%%px`` shows it; an error
        raises ``RemoteError`` naming the ranks (the program goes on). An interrupt (or
        ``timeout``) stops the cell, never the program."""
        cell_id = uuid.uuid4().hex
        spec = format_sorted(self._targets(targets))
        future = self._send("lcell", {"code": code, "targets": spec}, cell_id)
        try:
            msg = self._wait(future, timeout)
        except (KeyboardInterrupt, TimeoutError):
            self._send("linterrupt", {"cell": cell_id}, uuid.uuid4().hex)
            try:
                self._wait(future, 10)
            except (TimeoutError, JobEnded):
                pass
            raise
        replies, _, lost = decode_reply(msg)
        if not silent:
            _show(replies)
        errors = {r: h for r, h in replies.items() if h.get("status") != "ok"}
        for rank in lost:
            errors[rank] = {"ename": "RankLost", "evalue": "the rank cannot be reached"}
        if errors:
            first = next(iter(errors.values()))
            raise RemoteError(f"{first.get('ename')} on ranks {format_ranks(errors)}: "
                              f"{first.get('evalue')}", errors, first.get("traceback"))
        return replies

    def liveplot(self, name: str) -> Any:
        """The live plot (``%liveplot``) of what the ranks ``publish`` as ``name``; values
        are pulled from the ranks while it is open, starting with their kept history."""
        from ..widgets.plot import LivePlot

        self._watched.add(name)
        self._pull()
        return LivePlot(self.live, name)

    def values(self, name: str) -> dict[int, list[Any]]:
        """``{rank: [values]}`` published as ``name`` so far (pulled now)."""
        self._watched.add(name)
        self._pull()
        return self.live[name]

    def summary(self) -> dict[str, Any]:
        """The job's nodes and each rank's CPU and memory (as the agents last said)."""
        return self._request("lsummary", {}, timeout=10).header

    def detach(self) -> None:
        """Leave the job (its queued cells of this notebook are dropped); idempotent."""
        if self._stop.is_set():
            return
        with self._lock:
            self._outbox.append(pack("ldetach", {}))
        self._wake()
        time.sleep(0.05)
        self._stop.set()
        self._wake()
        self._thread.join(5)
        if ATTACHED.get(self.job) is self:
            del ATTACHED[self.job]
        if self.route is not None:
            slurm_sync.run(self.route.close())

    def on_end(self, callback: Any) -> None:
        """Call ``callback(job)`` once the job has ended (at once if it has)."""
        self._listeners.append(callback)
        if self.ended.is_set():
            callback(self)

    # -- requests -----------------------------------------------------------------------

    def _targets(self, targets: Any) -> list[int]:
        return parse_targets(targets, self.ranks)

    def _ask(self, kind: str, header: dict[str, Any], targets: Any
             ) -> tuple[dict[int, dict[str, Any]], dict[int, Any]]:
        header = {**header, "targets": format_sorted(self._targets(targets))}
        replies, values, _ = decode_reply(self._request(kind, header, timeout=30))
        errors = {r: h for r, h in replies.items() if h.get("status") != "ok"}
        if errors and not values:
            first = next(iter(errors.values()))
            raise RemoteError(f"{first.get('ename')} on ranks {format_ranks(errors)}: "
                              f"{first.get('evalue')}", errors)
        return replies, values

    def _request(self, kind: str, header: dict[str, Any], timeout: float) -> Message:
        return self._wait(self._send(kind, header, uuid.uuid4().hex), timeout)

    def _send(self, kind: str, header: dict[str, Any], request_id: str) -> Future[Message]:
        if self.ended.is_set():
            raise JobEnded(self.job, self.state, self.end_detail)
        future: Future[Message] = Future()
        with self._lock:
            self._futures[request_id] = future
            self._outbox.append(pack(kind, {**header, "id": request_id}))
        self._wake()
        return future

    def _wait(self, future: Future[Message], timeout: float | None) -> Message:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:  # short waits: the notebook's interrupt lands between them
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"job {self.job} did not answer within {timeout:g} s")
            try:
                return future.result(0.2 if left is None else min(0.2, left))
            except TimeoutError:
                continue

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    # -- the background thread ------------------------------------------------------------

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        heard = last_ping = last_pull = time.monotonic()
        while not self._stop.is_set():
            events = dict(poller.poll(200))
            if self._wake_r in events:
                os.read(self._wake_r, 4096)
            with self._lock:
                out, self._outbox = self._outbox, []
            for frames in out:
                self._sock.send_multipart(frames)
            while self._sock.poll(0):
                heard = time.monotonic()
                self._receive(self._sock.recv_multipart(copy=False))
            if self._monitor in events:
                recv_monitor_message(self._monitor)
                self._check_end("the connection to the job closed")
            now = time.monotonic()
            if now - last_ping >= PING and not self.ended.is_set():
                last_ping = now
                self._sock.send_multipart(pack("lping", {}))
            if now - heard > SILENCE and not self.ended.is_set():
                heard = now
                self._check_end(f"no word from the job for {SILENCE:g} s")
            if self._watched and now - last_pull >= PULL and not self.ended.is_set():
                last_pull = now
                self._pull(wait=False)
        self._sock.close(0)
        self._monitor.close(0)
        self._ctx.term()

    def _receive(self, frames: list[zmq.Frame]) -> None:
        try:
            msg = unpack(frames, "")
        except ValueError:
            return
        if msg.msg_type == "lstate":
            self._state(msg.header)
            return
        if msg.msg_type == "lpong":
            self._state(msg.header)
        with self._lock:
            future = self._futures.pop(str(msg.header.get("id")), None)
        if future is not None and not future.done():
            future.set_result(msg)

    def _state(self, header: dict[str, Any]) -> None:
        if header.get("done"):
            self._check_end("every rank's program ended", program_done=True)

    def _check_end(self, why: str, program_done: bool = False) -> None:
        """The link broke or the program ended: ask Slurm (off this thread) how the job is."""
        if self.ended.is_set():
            return
        threading.Thread(target=self._ask_slurm, args=(why, program_done), daemon=True).start()

    def _ask_slurm(self, why: str, program_done: bool) -> None:
        slurm = self.route.access.slurm if self.route is not None else Slurm()
        state = "ENDED" if program_done else ""
        for _ in range(20):
            if self.job.startswith("local-"):
                break
            try:
                info = slurm_sync.run(slurm.job(self.job), timeout=30)
            except (SlurmError, TimeoutError, OSError):
                break
            if info is None:
                break
            if info.state in ENDED_STATES:
                state = info.state
                break
            if not program_done:
                return  # the job runs on: a cut link; the socket reconnects by itself
            time.sleep(0.5)  # the program ended; Slurm has not noticed yet
        self._end(state or "ENDED", why)

    def _end(self, state: str, detail: str) -> None:
        if self.ended.is_set():
            return
        self.state, self.end_detail = state, detail
        self.ended.set()
        with self._lock:
            futures, self._futures = self._futures, {}
        for future in futures.values():
            if not future.done():
                future.set_exception(JobEnded(self.job, state, detail))
        for callback in self._listeners:
            try:
                callback(self)
            except Exception:  # a broken listener must not stop the others
                pass

    # -- published values ---------------------------------------------------------------

    def _pull(self, wait: bool = True) -> None:
        groups: dict[int, list[int]] = {}
        for rank in range(self.ranks):
            groups.setdefault(self._seen.get(rank, 0), []).append(rank)
        since = [[format_ranks(ranks), seq] for seq, ranks in groups.items() if seq]
        future = self._send("lvals", {"since": since, "names": sorted(self._watched),
                                      "targets": f"0-{self.ranks - 1}"}, uuid.uuid4().hex)
        future.add_done_callback(self._pulled)
        if wait:
            self._wait(future, 30)

    def _pulled(self, future: Future[Message]) -> None:
        if future.exception() is not None:
            return
        _, values, _ = decode_reply(future.result())
        for rank, by_name in values.items():
            for name, entries in by_name.items():
                for seq, _t, value in entries:
                    self.live.add(name, rank, value)
                    self._seen[rank] = max(self._seen.get(rank, 0), seq)
        self.live.flush(float("inf"))


def _show(replies: dict[int, dict[str, Any]]) -> None:
    """Print a cell's output as ``%%px`` shows it: identical output of several ranks once,
    labelled with their ranks."""
    from ..hub.merge import group_equal

    for field, label in (("stdout", "stdout"), ("stderr", "stderr"), ("out", "out")):
        texts = {r: h[field] for r, h in replies.items() if h.get(field)}
        for text, ranks in group_equal(texts):
            end = "" if text.endswith("\n") else "\n"
            print(f"[{label}:{format_ranks(ranks)}] {text}{end}", end="")
    errors = {r: "".join(h.get("traceback") or []) or f"{h.get('ename')}: {h.get('evalue')}"
              for r, h in replies.items() if h.get("status") != "ok"}
    for text, ranks in group_equal(errors):
        print(f"[error:{format_ranks(ranks)}] {text}")


def attach(job: str | int, login: str | None = None, job_root: str | None = None,
           ssh_args: list[str] | None = None) -> LiveJob:
    """Attach to the running live job ``job`` (a Slurm job id; a program started with
    ``srun python -m hpckernel.live``), here or through the login node ``login`` (as the
    Slurm kernel's ``login``, with its ``ssh_args``). Only the job's owner can: its keys
    are in a 0600 file."""
    job = str(job)
    if login:
        route = LoginRoute(login, ssh_args or [])
        info = slurm_sync.run(route.find(job, job_root))
        url = slurm_sync.run(route.tunnel(info.url))
    else:
        route = None
        info = slurm_sync.run(find_local(job, job_root))
        url = info.url
    handle = ATTACHED[job] = LiveJob(job, info, url, route)
    return handle
