"""Starting and stopping the rank processes: ``mpiexec`` locally, ``srun`` in an allocation.

Each rank runs under ``launcher/rank.sh``, which writes ``exit.<rank>`` in the job directory
when the rank ends; the launcher's own output (with rank prefixes) goes to ``ranks.log``.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sys
from pathlib import Path
from typing import BinaryIO

from traitlets import Dict, Float, Integer, TraitError, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from ..plane.identity import LAUNCH_ENV
from ..resources import template_dir
from .errors import HubError

# Make oversubscribed MPICH ranks yield the CPU while they wait in MPI (TESTBED.md).
MPICH_YIELD = {
    "MPIR_CVAR_CH4_PROGRESS_THROTTLE": "true",
    "MPIR_CVAR_CH4_PROGRESS_THROTTLE_NO_PROGRESS_COUNT": "1",
    "MPIR_CVAR_POLLS_BEFORE_YIELD": "1",
}
LOG_NAME = "ranks.log"


class LaunchError(HubError, RuntimeError):
    """The ranks could not be started; the message says what to do."""


class RankLauncher(LoggingConfigurable):
    """Base of the launchers: one process tree running all ranks."""

    ranks = Integer(4, help="Number of MPI ranks.").tag(config=True)
    env = Dict(help="Extra environment variables for the ranks.").tag(config=True)
    stop_timeout = Float(5.0, help="Seconds between the signals that stop the ranks.").tag(
        config=True)

    @validate("ranks")
    def _check_ranks(self, proposal: dict[str, int]) -> int:
        if proposal["value"] < 1:
            raise TraitError(f"ranks must be at least 1, not {proposal['value']}")
        return proposal["value"]

    nodes = Integer(0, help="Pretend the ranks are on this many nodes, in blocks of "
                    "consecutive ranks (0: where they really are). For trying node agents "
                    "(HubKernel.fanin) on one machine; default from $HPCKERNEL_NODES."
                    ).tag(config=True)

    @default("nodes")
    def _default_nodes(self) -> int:
        try:
            return max(0, int(os.environ.get("HPCKERNEL_NODES") or 0))
        except ValueError:
            raise TraitError("HPCKERNEL_NODES must be a number of nodes") from None

    proc: asyncio.subprocess.Process | None = None
    #: How the launcher is asked to end the ranks (and is told that the hub died), then
    #: made to, ``stop_timeout`` apart.
    stop_signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGKILL)
    #: The ranks talk to node agents (set by the hub's rank pool before each start), which
    #: form a tree above this many nodes (HubKernel.fanout).
    agents = False
    fanout = 64

    def node_count(self) -> int:
        """How many nodes the ranks span (the pretended number, if set)."""
        return min(self.nodes, self.ranks) if self.nodes else 1

    def command(self, job_dir: Path, plane_file: Path) -> list[str]:
        raise NotImplementedError

    def worker_command(self, job_dir: Path, plane_file: Path) -> list[str]:
        rank_sh = str(template_dir("launcher") / "rank.sh")
        return ["bash", rank_sh, str(job_dir), sys.executable, "-m", "hpckernel.worker",
                str(plane_file)]

    async def start(self, job_dir: Path, plane_file: Path, launch: int = 0) -> None:
        """Start the ranks (called by the hub's rank pool at start and on restart, ``launch``
        counting them: the ranks' identities and exit codes carry it)."""
        argv = self.command(job_dir, plane_file)
        self.log.info("starting ranks: %s", " ".join(argv))
        env = {**self.environment(), **MPICH_YIELD, **self.env, LAUNCH_ENV: str(launch)}
        for name in ("HPCKERNEL_FANIN", "HPCKERNEL_NODES", "HPCKERNEL_AGENT_NODES",
                     "HPCKERNEL_FANOUT"):
            env.pop(name, None)
        if self.agents:  # rank.sh starts one agent per node (launcher/rank.sh)
            env["HPCKERNEL_FANIN"] = "agents"
            env["HPCKERNEL_AGENT_NODES"] = str(self.node_count())  # agent/tree.py
            env["HPCKERNEL_FANOUT"] = str(self.fanout)
            if self.nodes:
                env["HPCKERNEL_NODES"] = str(self.node_count())
        with _fresh_start(job_dir) as log:
            try:
                # A session of its own: the hub's interrupts must not reach mpiexec, and
                # stop() can end the whole tree. setpriv ends it if the hub dies.
                self.proc = await asyncio.create_subprocess_exec(
                    *_die_with_parent(argv, self.stop_signals[0]),
                    stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                    start_new_session=True)
            except FileNotFoundError as e:
                raise LaunchError(f"cannot start the ranks: {e.filename} not found") from e

    def environment(self) -> dict[str, str]:
        """The environment the launcher command starts from."""
        return dict(os.environ)

    async def wait(self) -> int:
        """Wait until the launcher process ends; its exit code."""
        assert self.proc is not None
        return await self.proc.wait()

    async def stop(self) -> None:
        """End every rank: ``stop_signals`` to the process group, ``stop_timeout`` apart."""
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        for sig in self.stop_signals:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                await asyncio.wait_for(proc.wait(), self.stop_timeout)
                return
            except asyncio.TimeoutError:
                self.log.warning("ranks did not stop after %s; killing them", sig.name)


class LocalLauncher(RankLauncher):
    """Ranks on this machine, started by ``mpiexec`` (the "MPI (local)" kernel)."""

    mpiexec = Unicode(help="The mpiexec to use; default: the one beside this Python, "
                      "else the first on PATH.").tag(config=True)

    @default("mpiexec")
    def _default_mpiexec(self) -> str:
        beside = Path(sys.executable).parent / "mpiexec"
        return str(beside) if beside.exists() else (shutil.which("mpiexec") or "")

    def command(self, job_dir: Path, plane_file: Path) -> list[str]:
        if not self.mpiexec or not shutil.which(self.mpiexec):
            raise LaunchError(
                "mpiexec not found: install an MPI (pip install 'hpckernel[mpich]', or your "
                "system's MPICH/Open MPI) or set --LocalLauncher.mpiexec=/path/to/mpiexec")
        return [self.mpiexec, "-n", str(self.ranks), "-prepend-rank",
                *self.worker_command(job_dir, plane_file)]


class SrunLauncher(RankLauncher):
    """Ranks across a Slurm allocation, started by ``srun`` from inside the batch job."""

    # srun answers SIGTERM by SIGKILLing the ranks, and rank.sh with them, which then cannot
    # record how its rank ended; it passes USR2 on as it is (rank.sh survives it).
    stop_signals = (signal.SIGUSR2, signal.SIGTERM, signal.SIGKILL)

    srun = Unicode("srun", help="The srun command.").tag(config=True)
    mpi = Unicode("pmi2", help="srun --mpi= plugin that matches the MPI library.").tag(
        config=True)

    def command(self, job_dir: Path, plane_file: Path) -> list[str]:
        placement = []
        if _in_step():
            # The hub runs as a job step of an existing allocation (SlurmProvisioner.jobid):
            # the ranks' step is a sibling in the whole allocation, sharing the hub's CPU.
            placement = [f"--jobid={os.environ['SLURM_JOB_ID']}", "--overlap"]
        return [self.srun, f"--mpi={self.mpi}", "--label", "--kill-on-bad-exit=1",
                *placement, "-n", str(self.ranks), *self.worker_command(job_dir, plane_file)]

    def node_count(self) -> int:
        if self.nodes:
            return super().node_count()
        nodes = os.environ.get("SLURM_JOB_NUM_NODES") or os.environ.get("SLURM_NNODES") or "1"
        try:
            return min(int(nodes), self.ranks)
        except ValueError:
            return 1

    def environment(self) -> dict[str, str]:
        env = super().environment()
        if _in_step():
            # A step's SLURM_* variables would confine srun to that step's one task.
            env = {k: v for k, v in env.items() if not k.startswith("SLURM_")
                   or k in ("SLURM_CONF", "SLURM_JOB_ID")}
        return env


def _in_step() -> bool:
    return "SLURM_STEP_ID" in os.environ and os.environ.get("SLURM_STEP_ID") != "batch"


def _fresh_start(job_dir: Path) -> BinaryIO:
    """Forget the exit codes of earlier ranks and the addresses of earlier node agents (new
    ranks must wait for their new agent); open the launcher log for appending."""
    for old in [*job_dir.glob("exit.*"), *job_dir.glob("agent-*.json")]:
        old.unlink()
    return open(job_dir / LOG_NAME, "ab")


def _die_with_parent(argv: list[str], sig: signal.Signals) -> list[str]:
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", sig.name[3:], "--", *argv] if setpriv else argv


def exit_codes(job_dir: Path, launch: int) -> dict[int, int]:
    """Exit codes of the ranks of ``launch`` that have ended, as written by ``rank.sh``
    (``exit.<launch>.<rank>``: a rank of an earlier launch that ends late is not taken for
    the new rank of its number)."""
    codes: dict[int, int] = {}
    for path in job_dir.glob(f"exit.{launch}.*"):
        match = re.fullmatch(rf"exit\.{launch}\.(\d+)", path.name)
        if match:
            try:
                codes[int(match[1])] = int(path.read_text().strip())
            except ValueError:
                continue  # being written
    return codes


def describe_exit(code: int) -> str:
    """``139`` → ``killed by SIGSEGV (signal 11)``; ``3`` → ``exited with code 3``."""
    if code > 128:
        try:
            name = signal.Signals(code - 128).name
        except ValueError:
            name = f"signal {code - 128}"
        return f"killed by {name} (signal {code - 128})"
    return f"exited with code {code}"


def log_tail(job_dir: Path, rank: int | None = None, lines: int = 15) -> str:
    """The last lines of the launcher log, only those of ``rank`` if given."""
    path = job_dir / LOG_NAME
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    rows = text.splitlines()
    if rank is not None:
        # mpiexec -prepend-rank writes "[3] ...", srun --label "3: ..."
        rows = [r for r in rows if re.match(rf"\s*(\[{rank}\]|{rank}:)\s", r)]
    return "\n".join(rows[-lines:])
