"""What a "Slurm MPI" kernel asks of Slurm and how it reaches the cluster, declared once.

The traits of :class:`JobSettings` are the declaration: each setting's type, default, help
and check are here and nowhere else. ``SlurmProvisioner`` inherits them, so that a
kernelspec's provisioner config or ``c.SlurmProvisioner.partition`` sets them; the argv
bridge, ``hpckernel install --slurm`` and ``hpckernel submit`` take them as command-line
options made from these traits (``options.py``); ``KernelJob`` and ``hpckernel submit``
read a ``JobSettings`` value. A value that cannot work raises :class:`SettingError`,
whichever way it came.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import timedelta

from traitlets import (
    Bool,
    Bunch,
    Float,
    HasTraits,
    Integer,
    List,
    TraitError,
    TraitType,
    Unicode,
    validate,
)

from ..slurm import ParseError, parse_duration
from ..slurm.environment import check_names


class SettingError(TraitError, ValueError):
    """A setting that cannot work; the message names it and the fix."""


class JobSettings(HasTraits):
    """Every setting of a Slurm kernel (``SlurmProvisioner`` inherits them as its traits).

    A trait's ``flag`` metadata names its command-line option where that is not
    ``--`` + its name (the repeatable ``--sbatch-arg``)."""

    partition = Unicode("", help="Slurm partition (default: the cluster's default)."
                        ).tag(config=True)
    nodes = Integer(1, help="Number of nodes.").tag(config=True)
    ntasks_per_node = Integer(1, help="MPI ranks per node.").tag(config=True)
    overcommit = Bool(False, help="Allow more ranks per node than it has CPUs (sbatch "
                      "--overcommit): ranks that mostly wait for cells, small test nodes."
                      ).tag(config=True)
    time = Unicode("01:00:00", help="Walltime, in any Slurm time format (minutes, HH:MM:SS, "
                   "D-HH:MM:SS).").tag(config=True)
    account = Unicode("", help="Slurm account to charge.").tag(config=True)
    qos = Unicode("", help="Slurm quality of service.").tag(config=True)
    constraint = Unicode("", help="Slurm node features (--constraint).").tag(config=True)
    sbatch_args = List(Unicode(), help="More sbatch options, e.g. ['--exclusive']."
                       ).tag(config=True, flag="--sbatch-arg")
    setup = Unicode("", help="Shell lines run in the job before the hub starts, e.g. "
                    "'module load python'.").tag(config=True)
    export_env = List(Unicode(), help="Names of more variables of the Jupyter server's "
                      "environment to pass into the job; it gets an allow-list (PATH, HOME, "
                      "the locale, Python, module-system, Slurm and MPI settings) and the "
                      "kernelspec's env, never the whole environment."
                      ).tag(config=True, flag="--export-env")
    python = Unicode(sys.executable, help="Python on the compute nodes that has hpckernel "
                     "installed (default: this one, on a shared file system)."
                     ).tag(config=True)
    job_root = Unicode("", help="Where job directories are made; the compute nodes must see "
                       "it (default: ~/.hpckernel/jobs where sbatch runs).").tag(config=True)
    jobid = Unicode("", help="Run in this existing allocation (e.g. from `salloc "
                    "--no-shell`) as a job step, instead of submitting a job; the allocation "
                    "is left running at shutdown.").tag(config=True)
    login = Unicode("", help="Reach the cluster through this login node: anything `ssh` "
                    "accepts (user@host, a Host alias of ~/.ssh/config).").tag(config=True)
    ssh_args = List(Unicode(), help="More options for ssh, e.g. ['-F', 'my_config']."
                    ).tag(config=True, flag="--ssh-arg")
    connect_timeout = Float(20.0, help="Seconds to wait for the login node to answer."
                            ).tag(config=True)
    login_timeout = Float(120.0, help="Seconds the login node may stay unreachable before "
                          "the kernel is reported dead.").tag(config=True)
    launch_timeout = Float(600.0, help="Seconds the job may stay pending before it is "
                           "cancelled and the start fails; 0: wait forever.").tag(config=True)
    walltime_warning = Integer(300, help="Warn in the notebook this many seconds before the "
                               "walltime ends (0: no warning).").tag(config=True)
    client_timeout = Float(600.0, help="The hub ends itself, releasing the allocation, after "
                           "this many seconds without a client (the Jupyter server died)."
                           ).tag(config=True)
    relaunch_timeout = Integer(300, help="Seconds the job waits for the next hub after a "
                               "restart before it ends.").tag(config=True)
    poll_interval = Float(5.0, help="Seconds between checks of the job with Slurm while the "
                          "kernel runs.").tag(config=True)
    hub_ip = Unicode("auto", help="Address the hub binds on its node ('auto': the address of "
                     "the node's name).").tag(config=True)
    encryption = Bool(True, help="Encrypt the kernel's channels with CurveZMQ."
                      ).tag(config=True)

    @validate("nodes", "ntasks_per_node")
    def _at_least_one(self, proposal: Bunch) -> int:
        value = int(proposal["value"])
        if value < 1:
            raise SettingError(f"{proposal['trait'].name} must be at least 1, not {value}")
        return value

    @validate("time")
    def _slurm_time(self, proposal: Bunch) -> str:
        value = str(proposal["value"])
        try:
            parse_duration(value)
        except ParseError as e:
            raise SettingError(f"bad walltime {value!r}: {e}; use e.g. 30, 01:00:00 or "
                               "1-00:00:00") from None
        return value

    @validate("login")
    def _login_host(self, proposal: Bunch) -> str:
        # ssh would read such a destination as an option (-oProxyCommand=…) and run a
        # command of its own instead of reaching a login node.
        value = str(proposal["value"])
        if value.startswith("-"):
            raise SettingError(f"login {value!r} starts with '-': give a host (user@host or "
                               "a Host alias of ~/.ssh/config); put ssh options in ssh_args")
        return value

    @validate("export_env")
    def _variable_names(self, proposal: Bunch) -> list[str]:
        try:
            return check_names(proposal["value"])
        except ValueError as e:
            raise SettingError(f"export_env: {e}") from None

    @property
    def ranks(self) -> int:
        """The number of MPI ranks the job runs."""
        return self.nodes * self.ntasks_per_node

    def walltime(self) -> timedelta | None:
        """The walltime asked for (None: unlimited)."""
        return parse_duration(self.time)

    def require_walltime(self) -> None:
        """Raise SettingError for an unlimited walltime: what a command writes down (a
        kernelspec, a run record) says how long it asks for."""
        if self.walltime() is None:
            raise SettingError(f"--time {self.time!r} is not a limit: use e.g. 00:30:00")

    def snapshot(self) -> JobSettings:
        """A ``JobSettings`` holding these settings (a provisioner's traits, as a value that
        later configuration does not change)."""
        return JobSettings(**{name: getattr(self, name) for name in SETTING_NAMES})

    def replace(self, **changes: object) -> JobSettings:
        """A copy with ``changes``; raises SettingError for an unknown or bad value."""
        return settings_from({**{name: getattr(self, name) for name in SETTING_NAMES},
                              **changes})


#: The settings in the order they are declared (help texts and listings follow it).
SETTING_NAMES: tuple[str, ...] = tuple(name for name, value in vars(JobSettings).items()
                                       if isinstance(value, TraitType))


def setting(name: str) -> TraitType[object, object]:
    """The trait that declares setting ``name``."""
    trait: TraitType[object, object] = JobSettings.class_traits()[name]
    return trait


def settings_from(config: Mapping[str, object]) -> JobSettings:
    """The settings in ``config`` (a kernelspec's provisioner config, a run record), the
    others at their defaults; raises SettingError for an unknown name or a bad value."""
    unknown = [name for name in config if name not in SETTING_NAMES]
    if unknown:
        raise SettingError(f"unknown Slurm kernel setting {unknown[0]!r}; the settings are: "
                           f"{', '.join(SETTING_NAMES)}")
    return JobSettings(**config)
