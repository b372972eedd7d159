"""How Slurm commands are run: the `CommandRunner` interface and its local implementation.

`hpckernel.slurm.jobs.Slurm` builds plain argv lists and hands them to a runner; it never
touches processes itself. `LocalRunner` runs them on this machine (a login node, or inside an
allocation); `hpckernel.provisioner.ssh.SSHRunner` runs them on a login node through the
kernel's SSH master connection (`ssh <host> -- <shlex.join(argv)>`), which is why argv stays a
list of plain strings and nothing here goes through a shell.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import time
from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

from .errors import SlurmError, SlurmNotFoundError, SlurmTimeoutError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CommandResult:
    """What a finished command returned; stdout and stderr decoded as UTF-8."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        """Whether the command exited with status 0."""
        return self.returncode == 0


class CommandRunner(ABC):
    """Runs one command to completion. Implementations: `LocalRunner` and
    `hpckernel.provisioner.ssh.SSHRunner`."""

    @property
    def key(self) -> Hashable:
        """Runners with equal keys reach the same Slurm the same way: the process has one
        `hpckernel.slurm.poller.Poller` per key. By default each runner is its own."""
        return self

    @abstractmethod
    async def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        """Run `argv` with `input` on stdin and return its result whatever the exit status.

        `env`: the command's whole environment, for commands run on this machine (sbatch
        passes it into the job); a command run elsewhere (a login node) has that machine's.

        Raises `SlurmNotFoundError` if the program does not exist and `SlurmTimeoutError`
        (after killing the process) if it runs longer than `timeout` seconds.
        """


class LocalRunner(CommandRunner):
    """Runs commands on this machine with `asyncio.create_subprocess_exec`.

    `env` entries are laid over this process's environment (e.g. the test bed's
    `SLURM_CONF`), or over the environment a call gives; by default the environment passes
    through unchanged.
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._overlay = dict(env or {})

    @property
    def key(self) -> Hashable:
        """This machine (and the overlaid environment): one `Poller` per key."""
        return ("local", tuple(sorted(self._overlay.items())))

    async def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        """Run ``argv`` here; `SlurmNotFoundError` if it is not installed."""
        if not argv:
            raise ValueError("empty command")
        argv = tuple(argv)
        full = None if env is None and not self._overlay else {
            **(os.environ if env is None else env), **self._overlay}
        began = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=full,
            )
        except FileNotFoundError:
            raise SlurmNotFoundError(
                f"{argv[0]} not found on PATH: is Slurm installed / is this a login node?", argv
            ) from None
        except PermissionError as exc:
            raise SlurmError(f"cannot run {argv[0]}: {exc}", argv) from exc
        try:
            out, err = await asyncio.wait_for(proc.communicate(input), timeout)
        except asyncio.TimeoutError:
            await _kill(proc)
            raise SlurmTimeoutError(
                f"`{shlex.join(argv)}` did not finish within {timeout:g} s "
                "(is slurmctld overloaded or unreachable?)",
                argv,
            ) from None
        except BaseException:
            # Cancelled by the caller: do not leave the command running behind us.
            await _kill(proc)
            raise
        assert proc.returncode is not None
        log.debug("%s -> %d in %.2f s", shlex.join(argv), proc.returncode,
                  time.monotonic() - began)
        return CommandResult(
            argv=argv,
            returncode=proc.returncode,
            stdout=out.decode("utf-8", errors="replace"),
            stderr=err.decode("utf-8", errors="replace"),
        )


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        try:
            proc.kill()
        except ProcessLookupError:
            pass
    # Shielded so that a second cancellation cannot leave a zombie behind.
    await asyncio.shield(proc.wait())
