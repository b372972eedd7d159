"""`Slurm`: submit, inspect, wait for and cancel batch jobs through the Slurm CLIs.

Used by the Slurm kernel provisioner (submit the hub's batch job, report why it is pending,
learn its nodes, scancel on shutdown), by the notebook magics (%squeue, %%sbatch, %scancel,
%sacct) and by the workflow module. Every command goes through a `CommandRunner`
(`LocalRunner` here; an SSH runner for a remote login node later) and every output through
`hpckernel.slurm.parse`. Options reach sbatch on its command line and the script on stdin:
a script's `#SBATCH` lines are never edited.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from datetime import timedelta

from . import parse
from .environment import job_environment
from .errors import SlurmError, SlurmTimeoutError, SubmitError
from .models import JobInfo, PartitionInfo
from .runner import CommandResult, CommandRunner, LocalRunner

log = logging.getLogger(__name__)


def check_request(
    partition: PartitionInfo, *, nodes: int | None = None, time_limit: timedelta | None = None
) -> None:
    """Raise `SubmitError` if `nodes`/`time_limit` cannot run in `partition`.

    Called before submitting, because sites that do not set EnforcePartLimits accept such a
    job and leave it pending forever (reason PartitionTimeLimit / PartitionNodeLimit).
    """
    name = partition.name
    if partition.state != "UP":
        raise SubmitError(f"partition {name} is {partition.state}: jobs there do not start; "
                          "choose another partition (sinfo lists them)")
    if nodes is not None:
        if nodes > partition.total_nodes:
            raise SubmitError(f"partition {name} has {partition.total_nodes} nodes, "
                              f"{nodes} were requested: ask for fewer nodes")
        if partition.max_nodes is not None and nodes > partition.max_nodes:
            raise SubmitError(f"partition {name} allows at most {partition.max_nodes} nodes "
                              f"per job, {nodes} were requested")
        if nodes < partition.min_nodes:
            raise SubmitError(f"partition {name} needs at least {partition.min_nodes} nodes "
                              f"per job, {nodes} were requested")
    limit = partition.max_time
    if limit is not None and (time_limit is None or time_limit > limit):
        asked = "no time limit" if time_limit is None else parse.format_duration(time_limit)
        raise SubmitError(f"partition {name} allows at most {parse.format_duration(limit)} "
                          f"of walltime, {asked} was requested: "
                          f"use --time={parse.format_duration(limit)} or less")


class Slurm:
    """Async access to one Slurm cluster.

    `command_timeout` bounds each command (seconds); `poll_interval` is the pause between
    polls in `wait_state`/`wait_gone`.
    """

    def __init__(
        self,
        runner: CommandRunner | None = None,
        *,
        command_timeout: float = 30.0,
        poll_interval: float = 1.0,
    ) -> None:
        self.runner = runner or LocalRunner()
        self.command_timeout = command_timeout
        self.poll_interval = poll_interval

    async def _run(self, *argv: str) -> CommandResult:
        """Run a command; raise `SlurmError` with Slurm's stderr if it fails."""
        res = await self.runner.run(argv, timeout=self.command_timeout)
        if not res.ok:
            raise SlurmError(f"`{argv[0]}` failed with exit status {res.returncode}",
                             argv, res.stderr or res.stdout)
        return res

    async def submit(
        self, script: str, options: Sequence[str] = (), workdir: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str:
        """Submit `script` (a whole batch script, "#!" first) and return the job id.

        `options` are sbatch options ("--nodes=3", "--time=10"); `workdir` becomes --chdir.
        `env` is the job's environment (default: the allow-listed part of this process's,
        `environment.job_environment`); never the whole environment, which may hold tokens.
        Raises `SubmitError` carrying sbatch's own message if Slurm refuses the job.
        """
        argv = ["sbatch", "--parsable", *options]
        if workdir is not None:
            argv.append(f"--chdir={workdir}")
        res = await self.runner.run(argv, input=script.encode(), timeout=self.command_timeout,
                                    env=job_environment(os.environ) if env is None else env)
        if not res.ok:
            raise SubmitError(f"sbatch refused the job: {parse.parse_sbatch_error(res.stderr)}",
                              argv, res.stderr)
        if res.stderr.strip():
            log.warning("sbatch: %s", res.stderr.strip())
        job_id = parse.parse_sbatch(res.stdout)
        log.info("submitted job %s", job_id)
        return job_id

    async def job(self, job_id: str) -> JobInfo | None:
        """The job's current state, or None if Slurm does not know it.

        Asks slurmctld (`scontrol show job`, which keeps ended jobs for MinJobAge, 5 min by
        default), then the accounting database (`sacct`) for older jobs. Not squeue: on
        Slurm 22.05 `squeue --json` ignores `--jobs` and returns every job in the system.
        """
        argv = ("scontrol", "show", "job", "-o", str(job_id))
        res = await self.runner.run(argv, timeout=self.command_timeout)
        if res.ok:
            found = parse.parse_scontrol_job(res.stdout)
            match = [j for j in found if j.job_id == str(job_id)] or found
            if match:
                return (await self._with_nodes([match[0]]))[0]
        elif "invalid job id" not in (res.stderr + res.stdout).lower():
            raise SlurmError("`scontrol show job` failed", argv, res.stderr or res.stdout)
        try:
            return await self.accounting(job_id)
        except SlurmError as err:
            if "disabled" in err.stderr.lower():  # no slurmdbd on this cluster
                return None
            raise

    async def jobs(self, user: str | None = None, *, include_ended: bool = False) -> list[JobInfo]:
        """Jobs in the queue (pending and running), of `user` or of everybody.

        Ended jobs still remembered by slurmctld are left out unless `include_ended`.
        """
        argv = ["squeue", "--json"]
        if user:
            argv.append(f"--user={user}")
        found = parse.parse_squeue_json((await self._run(*argv)).stdout)
        # Slurm 22.05 ignores --user with --json: filter here too.
        found = [j for j in found
                 if (not user or j.user == user) and (include_ended or not j.ended)]
        return await self._with_nodes(found)

    async def cancel(self, job_id: str, signal: str | None = None, *, full: bool = False) -> None:
        """scancel the job, or send it `signal` ("USR1", "INT"...) if given.

        With a signal, Slurm signals the job's steps; `full=True` also signals the batch
        script itself. Cancelling a job that already ended is not an error.
        """
        argv = ["scancel"]
        if signal:
            argv.append(f"--signal={signal}")
        if full:
            argv.append("--full")
        argv.append(str(job_id))
        res = await self._run(*argv)
        if res.stderr.strip():
            log.info("scancel %s: %s", job_id, res.stderr.strip())

    async def hold(self, job_id: str) -> None:
        """`scontrol hold`: keep a pending job from starting (reason JobHeldUser)."""
        await self._run("scontrol", "hold", str(job_id))

    async def release(self, job_id: str) -> None:
        """`scontrol release`: let a held job start once its dependencies are met.

        Raises `SlurmError` with Slurm's message ("Job has already finished") if the job
        ended; releasing a pending job that is not held is not an error to Slurm.
        """
        await self._run("scontrol", "release", str(job_id))

    async def jobs_by_id(self, job_ids: Collection[str]) -> dict[str, JobInfo | None]:
        """The state of several jobs (None for those Slurm does not know) in few commands.

        One `squeue --json` covers the jobs slurmctld still has (on 22.05 also those ended in
        the last MinJobAge); only the others are asked for one by one (`job`: scontrol, then
        sacct). Hosts are expanded for the requested jobs only.
        """
        wanted = {str(j) for j in job_ids}
        if not wanted:
            return {}
        listed = parse.parse_squeue_json((await self._run("squeue", "--json")).stdout)
        found: dict[str, JobInfo | None] = {
            j.job_id: j for j in await self._with_nodes([j for j in listed if j.job_id in wanted])}
        for job_id in sorted(wanted - set(found), key=int):
            found[job_id] = await self.job(job_id)
        return found

    async def accounting(self, job_id: str) -> JobInfo | None:
        """The job's record in the accounting database (sacct), or None if it has none yet.

        slurmdbd lags slurmctld by a moment, and for a job that ends quickly it may first hold
        a placeholder built from the batch step (name "allocation", no partition).
        """
        res = await self._run("sacct", "-X", "--parsable2", "--noheader",
                              f"--format={','.join(parse.SACCT_FIELDS)}", f"--jobs={job_id}")
        found = [j for j in parse.parse_sacct(res.stdout) if j.job_id == str(job_id)]
        # The newest record wins if job ids were reused after a controller reset.
        return (await self._with_nodes(found[-1:]))[0] if found else None

    async def wait_state(
        self,
        job_id: str,
        states: Collection[str],
        timeout: float,
        interval: float | None = None,
    ) -> JobInfo:
        """Poll until the job is in one of `states` (e.g. {"RUNNING"}) and return it.

        Raises `SlurmError` if the job ends in another state or is unknown, and
        `SlurmTimeoutError` (naming its last state and reason) after `timeout` seconds.
        """
        wanted = {s.upper() for s in states}
        deadline = time.monotonic() + timeout
        while True:
            info = await self.job(job_id)
            if info is None:
                raise SlurmError(f"job {job_id} is unknown to Slurm (not in scontrol or sacct)")
            if info.state in wanted:
                return info
            if info.ended:
                raise SlurmError(f"job {job_id} ended as {info.state} "
                                 f"(reason {info.reason}, exit code {info.exit_code}:"
                                 f"{info.signal}) while waiting for {'/'.join(sorted(wanted))}")
            if time.monotonic() >= deadline:
                raise SlurmTimeoutError(f"job {job_id} still {info.state} (reason {info.reason}) "
                                        f"after {timeout:g} s waiting for "
                                        f"{'/'.join(sorted(wanted))}")
            await asyncio.sleep(interval or self.poll_interval)

    async def wait_gone(
        self, job_id: str, timeout: float, interval: float | None = None
    ) -> JobInfo | None:
        """Poll until the job has ended (or is unknown) and return its last state.

        Raises `SlurmTimeoutError` if it is still pending, running or completing after
        `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            info = await self.job(job_id)
            if info is None or info.ended:
                return info
            if time.monotonic() >= deadline:
                raise SlurmTimeoutError(f"job {job_id} still {info.state} after {timeout:g} s")
            await asyncio.sleep(interval or self.poll_interval)

    async def partition(self, name: str | None = None) -> PartitionInfo:
        """Limits of partition `name`, or of the default partition if None."""
        argv = ["scontrol", "show", "partition", "-o"]
        if name:
            argv.append(name)
        res = await self.runner.run(argv, timeout=self.command_timeout)
        if not res.ok:
            said = res.stderr or res.stdout  # scontrol prints "Partition x not found" on stdout
            if "not found" in said:
                raise SlurmError(f"partition {name!r} does not exist: sinfo lists the partitions",
                                 argv, said)
            raise SlurmError("`scontrol show partition` failed", argv, said)
        parts = parse.parse_scontrol_partition(res.stdout)
        chosen = [p for p in parts if p.name == name or (name is None and p.default)]
        if not chosen:
            what = f"partition {name!r}" if name else "a default partition"
            raise SlurmError(f"Slurm does not report {what}: pass --partition explicitly", argv)
        return chosen[0]

    async def hostnames(self, nodelist: str) -> list[str]:
        """Expand a Slurm host list ("n[1-3]") with `scontrol show hostnames`."""
        if not nodelist:
            return []
        if "[" not in nodelist:  # a plain comma-separated list needs no Slurm
            return [n for n in nodelist.split(",") if n]
        res = await self._run("scontrol", "show", "hostnames", nodelist)
        return parse.parse_hostnames(res.stdout)

    async def _with_nodes(self, jobs: list[JobInfo]) -> list[JobInfo]:
        """Fill `JobInfo.nodes`, expanding each distinct host list once."""
        expanded: dict[str, tuple[str, ...]] = {}
        for nodelist in {j.nodelist for j in jobs if j.nodelist}:
            expanded[nodelist] = tuple(await self.hostnames(nodelist))
        return [replace(j, nodes=expanded[j.nodelist]) if j.nodelist else j for j in jobs]
