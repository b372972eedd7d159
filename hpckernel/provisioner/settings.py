"""What a "Slurm MPI" kernel asks of Slurm and how it reaches the cluster, as one value.

``SlurmProvisioner`` fills a ``JobSettings`` from its traits; the argv launcher
(``python -m hpckernel.bridge``) from its command line, which :func:`to_argv` writes from a
kernelspec's provisioner config and :func:`add_arguments` reads back. Both then hand it to
the same ``KernelJob``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from ..slurm import ParseError, parse_duration
from ..slurm.environment import check_names


class SettingError(ValueError):
    """A setting that cannot work; the message names it and the fix."""


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1 (nodes, ranks)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


@dataclass
class JobSettings:
    """Every setting of a Slurm kernel; each is also a ``SlurmProvisioner`` trait."""

    partition: str = _opt("", "Slurm partition (default: the cluster's default).")
    nodes: int = _opt(1, "Number of nodes.")
    ntasks_per_node: int = _opt(1, "MPI ranks per node.")
    overcommit: bool = _opt(False, "Allow more ranks per node than it has CPUs (sbatch "
                            "--overcommit): ranks that mostly wait for cells, small test "
                            "nodes.")
    time: str = _opt("01:00:00", "Walltime, in any Slurm time format (minutes, HH:MM:SS, "
                     "D-HH:MM:SS).")
    account: str = _opt("", "Slurm account to charge.")
    qos: str = _opt("", "Slurm quality of service.")
    constraint: str = _opt("", "Slurm node features (--constraint).")
    sbatch_args: list[str] = field(default_factory=list, metadata={
        "help": "More sbatch options, e.g. ['--exclusive'].", "flag": "--sbatch-arg"})
    setup: str = _opt("", "Shell lines run in the job before the hub starts, e.g. "
                      "'module load python'.")
    export_env: list[str] = field(default_factory=list, metadata={
        "help": "Names of more variables of the Jupyter server's environment to pass into "
                "the job; it gets an allow-list (PATH, HOME, the locale, Python, "
                "module-system, Slurm and MPI settings) and the kernelspec's env, never the "
                "whole environment.", "flag": "--export-env"})
    python: str = _opt(sys.executable, "Python on the compute nodes that has hpckernel "
                       "installed (default: this one, on a shared file system).")
    job_root: str = _opt("", "Where job directories are made; the compute nodes must see it "
                         "(default: ~/.hpckernel/jobs where sbatch runs).")
    jobid: str = _opt("", "Run in this existing allocation (e.g. from `salloc --no-shell`) "
                      "as a job step, instead of submitting a job; the allocation is left "
                      "running at shutdown.")
    login: str = _opt("", "Reach the cluster through this login node: anything `ssh` "
                      "accepts (user@host, a Host alias of ~/.ssh/config).")
    ssh_args: list[str] = field(default_factory=list, metadata={
        "help": "More options for ssh, e.g. ['-F', 'my_config'].", "flag": "--ssh-arg"})
    connect_timeout: float = _opt(20.0, "Seconds to wait for the login node to answer.")
    login_timeout: float = _opt(120.0, "Seconds the login node may stay unreachable before "
                                "the kernel is reported dead.")
    launch_timeout: float = _opt(600.0, "Seconds the job may stay pending before it is "
                                 "cancelled and the start fails; 0: wait forever.")
    walltime_warning: int = _opt(300, "Warn in the notebook this many seconds before the "
                                 "walltime ends (0: no warning).")
    client_timeout: float = _opt(600.0, "The hub ends itself, releasing the allocation, "
                                 "after this many seconds without a client (the Jupyter "
                                 "server died).")
    relaunch_timeout: int = _opt(300, "Seconds the job waits for the next hub after a "
                                 "restart before it ends.")
    poll_interval: float = _opt(5.0, "Seconds between checks of the job with Slurm while "
                                "the kernel runs.")
    hub_ip: str = _opt("auto", "Address the hub binds on its node ('auto': the address of "
                       "the node's name).")
    encryption: bool = _opt(True, "Encrypt the kernel's channels with CurveZMQ.")

    @property
    def ranks(self) -> int:
        return self.nodes * self.ntasks_per_node

    def check(self) -> None:
        """Raise SettingError for a value that cannot work."""
        for name in ("nodes", "ntasks_per_node"):
            check_positive(name, getattr(self, name))
        check_time(self.time)
        check_login(self.login)
        check_export_env(self.export_env)


def check_positive(name: str, value: int) -> int:
    if value < 1:
        raise SettingError(f"{name} must be at least 1, not {value}")
    return int(value)


def check_time(value: str) -> str:
    try:
        parse_duration(value)
    except ParseError as e:
        raise SettingError(f"bad walltime {value!r}: {e}; use e.g. 30, 01:00:00 or "
                           "1-00:00:00") from None
    return value


def check_export_env(names: list[str]) -> list[str]:
    try:
        return check_names(names)
    except ValueError as e:
        raise SettingError(f"export_env: {e}") from None


def check_login(value: str) -> str:
    """A login destination that ssh would read as an option (``-oProxyCommand=…``) is
    refused: it would run a command of its own instead of reaching a login node."""
    if value.startswith("-"):
        raise SettingError(f"login {value!r} starts with '-': give a host (user@host or a "
                           "Host alias of ~/.ssh/config); put ssh options in ssh_args")
    return value


SETTING_NAMES = tuple(f.name for f in fields(JobSettings))
_FIELDS = {f.name: f for f in fields(JobSettings)}
# Settings that are counts: at least 1 on every command line.
_COUNTS = ("nodes", "ntasks_per_node")


def _flag(name: str) -> str:
    return str(_FIELDS[name].metadata.get("flag") or "--" + name.replace("_", "-"))


def describe(name: str) -> tuple[Any, str]:
    """A setting's default and help text."""
    f = _FIELDS[name]
    return ([] if f.default is MISSING else f.default), str(f.metadata["help"])


def to_argv(config: dict[str, Any]) -> list[str]:
    """Command-line options for the settings in ``config`` (a kernelspec's provisioner
    config); :func:`add_arguments` reads them back."""
    argv: list[str] = []
    for name, value in config.items():
        if name not in _FIELDS:
            raise SettingError(f"unknown Slurm kernel setting {name!r}; the settings are: "
                               f"{', '.join(SETTING_NAMES)}")
        if isinstance(value, list):
            argv.extend(f"{_flag(name)}={item}" for item in value)
        elif isinstance(value, bool):
            argv.append(_flag(name) if value else f"--no-{name.replace('_', '-')}")
        else:
            argv.append(f"{_flag(name)}={value}")
    return argv


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup,
                  names: tuple[str, ...] = SETTING_NAMES, given_only: bool = False) -> None:
    """One option per setting in ``names``, named like the setting (``--ntasks-per-node``;
    ``--sbatch-arg``, ``--ssh-arg`` repeatable), with the setting's help. ``given_only``:
    options not on the command line are None (so that callers keep their own defaults)."""
    for name in names:
        f = _FIELDS[name]
        default = [] if f.default is MISSING else f.default
        kind = type(default)
        value = None if given_only else default
        helptext = f.metadata["help"]
        if given_only and default not in ("", [], False) and name != "python":
            helptext += f" (default {default})"
        if kind is bool:
            parser.add_argument(_flag(name), dest=name, default=value,
                                action=argparse.BooleanOptionalAction, help=helptext)
        elif kind is list:
            parser.add_argument(_flag(name), dest=name, action="append", default=value,
                                metavar="ARG", help=helptext + " (repeatable)")
        else:
            parser.add_argument(_flag(name), dest=name, default=value, help=helptext,
                                type=positive_int if name in _COUNTS else kind)


def from_args(args: argparse.Namespace) -> JobSettings:
    """The settings :func:`add_arguments` parsed; raises SettingError for a bad value."""
    settings = JobSettings(**{name: getattr(args, name) for name in SETTING_NAMES})
    settings.check()
    return settings
