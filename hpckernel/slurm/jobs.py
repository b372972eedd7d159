"""`Slurm`: submit, inspect, wait for and cancel batch jobs through the Slurm CLIs.

Used by the Slurm kernel provisioner (submit the hub's batch job, report why it is pending,
learn its nodes, scancel on shutdown), by the notebook magics (%squeue, %%sbatch, %scancel,
%sacct) and by the workflow module. Every command goes through a `CommandRunner`
(`LocalRunner` on this machine, `hpckernel.provisioner.ssh.SSHRunner` on a login node) and
every output through `hpckernel.slurm.parse`. Options reach sbatch on its command line and
the script on stdin: a script's `#SBATCH` lines are never edited.

Every query is filtered (`--jobs`, `--me`/`--user`): slurmctld packs only those jobs.
Whoever follows jobs over time does so through `hpckernel.slurm.poller`, which asks once for
everyone in the process and backs off while nothing changes (`wait.py` waits through it).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace

from . import parse
from .environment import job_environment
from .errors import SlurmBusyError, SlurmError, SubmitError
from .models import JobInfo, PartitionInfo
from .runner import CommandResult, CommandRunner, LocalRunner

log = logging.getLogger(__name__)

# Host lists already expanded ("n[1-3]" -> n1, n2, n3): they do not change, and each poll
# would otherwise cost a `scontrol show hostnames`.
_HOSTS: dict[str, tuple[str, ...]] = {}
_HOSTS_KEPT = 256


class Slurm:
    """Async access to one Slurm cluster.

    `command_timeout` bounds each command (seconds). `poll_interval` is the first pause
    between two looks at the jobs someone follows (`wait_state`, `wait_gone`, the widgets,
    workflows); while nothing changes the pause doubles up to `max_poll_interval` (default
    30 x `poll_interval`: 2 s -> 60 s). `retries` is how often a query or an idempotent
    action (not sbatch) is tried again, after 2 s, 4 s, ..., when Slurm says it is busy.
    """

    def __init__(
        self,
        runner: CommandRunner | None = None,
        *,
        command_timeout: float = 30.0,
        poll_interval: float = 2.0,
        max_poll_interval: float | None = None,
        retries: int = 2,
    ) -> None:
        if poll_interval <= 0 or command_timeout <= 0:
            raise ValueError("Slurm: poll_interval and command_timeout must be positive, not "
                             f"{poll_interval!r} and {command_timeout!r}")
        if max_poll_interval is not None and max_poll_interval < poll_interval:
            raise ValueError(f"Slurm: max_poll_interval ({max_poll_interval!r}) must be at "
                             f"least poll_interval ({poll_interval!r})")
        if retries < 0:
            raise ValueError(f"Slurm: retries must be 0 or more, not {retries!r}")
        self.runner = runner or LocalRunner()
        self.command_timeout = command_timeout
        self.poll_interval = poll_interval
        self.max_poll_interval = (30 * poll_interval if max_poll_interval is None
                                  else max_poll_interval)
        self.retries = retries

    async def _call(self, argv: Sequence[str], *, input: bytes | None = None,
                    retry: bool = True, env: Mapping[str, str] | None = None) -> CommandResult:
        """Run a command, trying again (`retries` times, after 2 s, 4 s, ...) while it fails
        because Slurm is busy; then `SlurmBusyError`. Other results come back as they are."""
        attempts = self.retries + 1 if retry else 1
        for attempt in range(attempts):
            res = await self.runner.run(argv, input=input, timeout=self.command_timeout,
                                        env=env)
            said = res.stderr or res.stdout
            if res.ok or not parse.is_transient(said):
                return res
            why = parse.transient_reason(said)
            if attempt + 1 < attempts:
                log.info("%s: Slurm busy (%s); trying again in %d s", argv[0], why,
                         2 ** (attempt + 1))
                await asyncio.sleep(2 ** (attempt + 1))
        raise SlurmBusyError(f"Slurm is busy and did not answer `{argv[0]}` ({why})"
                             + (f" in {attempts} tries" if attempts > 1 else "")
                             + ": try again in a minute", argv, said)

    async def _run(self, *argv: str, retry: bool = True) -> CommandResult:
        """Run a command; raise `SlurmError` with Slurm's stderr if it fails."""
        res = await self._call(argv, retry=retry)
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
        try:
            # Never tried twice: a lost answer may still have queued the job.
            res = await self._call(argv, input=script.encode(), retry=False,
                                   env=job_environment(os.environ) if env is None else env)
        except SlurmBusyError as err:
            raise SlurmBusyError(f"{err}; the job may have been queued all the same: look "
                                 "with %squeue (or squeue --me) before submitting again",
                                 argv, err.stderr) from None
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
        default), then the accounting database (`sacct`) for older jobs. For a job followed
        over time, use `hpckernel.slurm.poller` instead.
        """
        argv = ("scontrol", "show", "job", "-o", str(job_id))
        res = await self._call(argv)
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

    async def jobs(self, user: str | None = None, *, job_ids: Collection[str] = (),
                   include_ended: bool = False, nodes: bool = True,
                   retry: bool = True) -> list[JobInfo]:
        """Jobs in the queue (pending and running) of `user` (default: this user, `--me`),
        or, with `job_ids`, those of these jobs squeue still lists (of any user if there is
        one id, else of `user`/this user only: with one id slurmctld looks up that job alone,
        with several it would pack every job of every user).

        Jobs ended in the last MinJobAge are left out unless `include_ended`; `nodes=False`
        leaves `JobInfo.nodes` empty (no `scontrol show hostnames` for a new host list).
        """
        ids = sorted({str(j) for j in job_ids}, key=int)
        argv = ["squeue", "--noheader", f"--Format={parse.SQUEUE_FORMAT}"]
        if len(ids) != 1 or user:
            argv.append(f"--user={user}" if user else "--me")
        if ids:
            argv.append(f"--jobs={','.join(ids)}")
        if include_ended or ids:
            argv.append("--states=all")
        res = await self._call(argv, retry=retry)
        if not res.ok:
            if len(ids) == 1 and parse.squeue_unknown_job(res.stderr):
                return []
            raise SlurmError(f"`squeue` failed with exit status {res.returncode}", argv,
                             res.stderr or res.stdout)
        found = parse.parse_squeue(res.stdout)
        if not include_ended:
            found = [j for j in found if not j.ended]
        return await self._with_nodes(found) if nodes else found

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

    async def jobs_by_id(self, job_ids: Collection[str], *,
                         listed: Collection[JobInfo] | None = None,
                         retry: bool = True) -> dict[str, JobInfo | None]:
        """The state of several jobs (None for those Slurm does not know) in two commands
        at most: one squeue (`jobs`; or the `listed` jobs of a listing made already), then
        one sacct for the jobs squeue does not list (ended longer ago than MinJobAge, or
        another user's among several)."""
        wanted = {str(j) for j in job_ids}
        if not wanted:
            return {}
        if listed is None:
            listed = await self.jobs(job_ids=wanted, include_ended=True, nodes=False,
                                     retry=retry)
        found: dict[str, JobInfo | None] = {
            j.job_id: j for j in await self._with_nodes([j for j in listed if j.job_id in wanted])}
        missing = wanted - set(found)
        if missing:
            try:
                found.update(await self._accounting(missing, retry=retry))
            except SlurmError as err:
                if "disabled" not in err.stderr.lower():  # no slurmdbd on this cluster
                    raise
        return {job_id: found.get(job_id) for job_id in sorted(wanted, key=int)}

    async def accounting(self, job_id: str) -> JobInfo | None:
        """The job's record in the accounting database (sacct), or None if it has none yet.

        slurmdbd lags slurmctld by a moment, and for a job that ends quickly it may first hold
        a placeholder built from the batch step (name "allocation", no partition).
        """
        return (await self._accounting([str(job_id)])).get(str(job_id))

    async def _accounting(self, job_ids: Collection[str], *, retry: bool = True
                          ) -> dict[str, JobInfo]:
        res = await self._run("sacct", "-X", "--parsable2", "--noheader",
                              f"--format={','.join(parse.SACCT_FIELDS)}",
                              f"--jobs={','.join(sorted(job_ids, key=int))}", retry=retry)
        # The newest record wins if job ids were reused after a controller reset.
        newest = {j.job_id: j for j in parse.parse_sacct(res.stdout) if j.job_id in job_ids}
        return {j.job_id: j for j in await self._with_nodes(list(newest.values()))}

    async def partition(self, name: str | None = None) -> PartitionInfo:
        """Limits of partition `name`, or of the default partition if None."""
        argv = ["scontrol", "show", "partition", "-o"]
        if name:
            argv.append(name)
        res = await self._call(argv)
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
        """Fill `JobInfo.nodes`, expanding each distinct host list once per process."""
        for nodelist in {j.nodelist for j in jobs if j.nodelist} - set(_HOSTS):
            if len(_HOSTS) >= _HOSTS_KEPT:
                _HOSTS.pop(next(iter(_HOSTS)))
            _HOSTS[nodelist] = tuple(await self.hostnames(nodelist))
        return [replace(j, nodes=_HOSTS[j.nodelist]) if j.nodelist else j for j in jobs]
