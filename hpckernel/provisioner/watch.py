"""Watching the kernel's job: the queue wait until the hub listens, then its liveness.

The job directory says what the hub did (``hub.ready``, ``connection.json``, ``hub.exit``);
Slurm says what happened to the job (pending reason, end state, exit code).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

from ..jobrequest import JobSettings
from ..jupyter_channels import ChannelAddress, channel_address
from ..slurm import JobInfo, Poller, Slurm, SlurmError, Watch, wait_gone
from .access import Log
from .errors import KernelStartError
from .jobdir import CONNECTION_FILE, JobDir


async def pending_state(watch: Watch, job_id: str, stopped: Callable[[], bool],
                        log: Log) -> JobInfo | None:
    """The job's state while the kernel waits for it (None: Slurm no longer knows it).

    The one place a starting kernel asks Slurm about its job: the process's Slurm poller
    follows it, in one squeue with every other kernel start of this process (a look at
    once, then pauses growing from 1 s); this reads what it last saw."""
    snapshot = await watch.snapshot()
    while job_id not in snapshot.jobs:  # Slurm has not answered yet
        if stopped():
            raise KernelStartError(f"Slurm job {job_id}: the start was cancelled")
        if snapshot.trouble:
            log.warning("Slurm job %s: %s", job_id, snapshot.trouble)
        snapshot = await watch.next()
    return snapshot.jobs[job_id]


async def job_state(slurm: Slurm, watch: Watch, job_id: str, job_dir: JobDir,
                    before: JobInfo | None, stopped: Callable[[], bool], log: Log) -> JobInfo:
    """The job's state, logged when it or its reason changed; raises if it ended."""
    info = await pending_state(watch, job_id, stopped, log)
    if info is None or info.ended:
        raise KernelStartError(await ended_message(slurm, job_id, job_dir, info))
    reason = info.reason_text or info.reason
    if before is None or (before.state, before.reason_text or before.reason) != (
            info.state, reason):
        log.info("Slurm job %s: %s%s", job_id, info.state, f" ({reason})" if reason else "")
    return info


async def wait_for_hub(slurm: Slurm, job_id: str, job_dir: JobDir, settings: JobSettings,
                       stopped: Callable[[], bool], log: Log) -> ChannelAddress:
    """Wait through the queue until the hub listens; its address and ports. Raises
    KernelStartError when the job ends, stays pending beyond ``launch_timeout``, or
    ``stopped()`` (a shutdown while pending)."""
    watch = Poller.of(slurm).watch([job_id], interval=1.0)
    try:
        return await _wait_for_hub(slurm, watch, job_id, job_dir, settings, stopped, log)
    finally:
        watch.close()


async def _wait_for_hub(slurm: Slurm, watch: Watch, job_id: str, job_dir: JobDir,
                        settings: JobSettings, stopped: Callable[[], bool], log: Log
                        ) -> ChannelAddress:
    started = time.monotonic()
    info: JobInfo | None = None
    while not stopped():
        # The poller's last snapshot: no Slurm call here, however often it is read.
        info = await job_state(slurm, watch, job_id, job_dir, info, stopped, log)
        if info.running:
            hub = await hub_connection(job_dir)
            if hub is not None:
                log.info("Slurm job %s: kernel ready on %s after %.1f s", job_id,
                         info.nodelist, time.monotonic() - started)
                return hub
        elif settings.launch_timeout and time.monotonic() - started > settings.launch_timeout:
            raise KernelStartError(
                f"Slurm job {job_id} did not start within {settings.launch_timeout:g} s "
                f"(still {info.state}: {info.reason_text or info.reason}); it was "
                "cancelled. Ask for fewer nodes or less time, or raise "
                "SlurmProvisioner.launch_timeout.")
        await asyncio.sleep(0.2 if info.running else 1.0)
    raise KernelStartError(f"Slurm job {job_id}: the start was cancelled")


async def hub_connection(job_dir: JobDir) -> ChannelAddress | None:
    """The hub's address and ports once it has bound them, else None."""
    if await job_dir.read("hub.ready") is None:
        return None  # the hub is not listening yet
    text = await job_dir.read(CONNECTION_FILE)
    try:
        written = json.loads(text or "")
        ip = written.get("ip")
        return channel_address(ip, written) if ip and isinstance(ip, str) else None
    except (ValueError, AttributeError):
        return None  # not written yet, or half written


async def ended_message(slurm: Slurm, job_id: str, job_dir: JobDir,
                        info: JobInfo | None) -> str:
    """Slurm's account of an ended job (state, reason, exit code) and its output's tail."""
    if info is None:
        info = await slurm.accounting(job_id)
    what = "is gone" if info is None else (
        f"ended: {info.state}" + (f" ({info.reason_text or info.reason})"
                                  if info.reason_text or info.reason else "")
        + (f", exit code {info.exit_code}:{info.signal}" if info.exit_code is not None
           else ""))
    out = await job_dir.read(f"slurm-{job_id}.out") or ""
    tail = "\n".join(out.strip().splitlines()[-15:])
    return f"Slurm job {job_id} {what}" + (f"\njob output:\n{tail}" if tail else "")


#: Longest pause between two looks at a running kernel's job while nothing changes. The
#: hub's exit marker reports most ends at once; Slurm is asked for the rest (a lost node).
LIVENESS_MAX_INTERVAL = 30.0


class Liveness:
    """Whether a started hub still runs: its exit marker first (cheap), then Slurm's view of
    the job as the process's Slurm poller last saw it (one squeue for every kernel of this
    process, at most every ``poll_interval`` seconds, less often while nothing changes)."""

    def __init__(self, slurm: Callable[[], Slurm], job_id: str, job_dir: JobDir,
                 poll_interval: float, log: Log) -> None:
        self.slurm = slurm  # the current one: a rebuilt SSH master gives a new Slurm
        self.job_id = job_id
        self.job_dir = job_dir
        self.poll_interval = poll_interval
        self.log = log
        self.reason = ""  # why the kernel ended, once it has
        self.final: JobInfo | None = None  # Slurm's last word on the ended job
        self._watch: Watch | None = None
        self._trouble = ""  # Slurm's last complaint, as logged

    async def check(self, expected: bool) -> int | None:
        """None while the hub runs, else its exit code; ``expected``: a shutdown or
        restart was asked for (then an exiting hub is not reported as a death)."""
        hub_exit = await self.job_dir.read("hub.exit")
        if hub_exit is not None:
            code = int(hub_exit.strip() or 1)
            if not expected:
                await self.report_death(f"the kernel's hub exited with code {code}")
            return code
        snapshot = self._follow().last
        trouble = snapshot.trouble if snapshot is not None else ""
        if trouble != self._trouble:  # said once, not at every check while it lasts
            self._trouble = trouble
            if trouble:
                self.log.warning("Slurm job %s: cannot check it: %s", self.job_id,
                                 trouble)
        if snapshot is None or self.job_id not in snapshot.jobs:
            return None  # no answer from Slurm yet (or it is busy: the poller retries)
        info = snapshot.jobs[self.job_id]
        if info is not None and not info.ended:
            return None
        self.close()
        self.final = info
        self.reason = await ended_message(self.slurm(), self.job_id, self.job_dir, info)
        self.log.warning("%s", self.reason)
        return (info.exit_code or 1) if info is not None else 1

    def _follow(self) -> Watch:
        """The watch on the job, with the poller of the current Slurm (a rebuilt SSH master
        brings a new one)."""
        poller = Poller.of(self.slurm())
        if self._watch is None or self._watch.poller is not poller:
            self.close()
            self._watch = poller.watch([self.job_id], interval=self.poll_interval,
                                       max_interval=max(self.poll_interval,
                                                        LIVENESS_MAX_INTERVAL))
        return self._watch

    def close(self) -> None:
        """Stop following the job."""
        if self._watch is not None:
            self._watch.close()
            self._watch = None

    async def report_death(self, what: str) -> None:
        """Log why a hub ended that nobody asked to end: Slurm's account of the job
        (cancelled, out of time, node failure), once it has ended."""
        slurm = self.slurm()
        try:
            info = await wait_gone(slurm, self.job_id, timeout=15)
        except (SlurmError, TimeoutError):
            info = await slurm.job(self.job_id)
        self.final = info
        self.reason = f"{what}; {await ended_message(slurm, self.job_id, self.job_dir, info)}"
        # A hub that ended cleanly with its job (a front end's shutdown) is no news.
        clean = info is not None and info.state == "COMPLETED"
        self.log.log(logging.INFO if clean else logging.WARNING, "%s", self.reason)
