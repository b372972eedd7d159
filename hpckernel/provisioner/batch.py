"""The hub's batch job: the script (from ``launcher/slurm-job.sh``), sbatch's options and
the job's environment."""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from string import Template

from ..resources import template_dir
from ..slurm.environment import job_environment

#: What the job's shell reads first (``export`` lines): the variables the kernelspec or
#: ``export_env`` name, and the notebook's path, which must reach the hub also when sbatch
#: runs on a login node with an environment of its own.
ENV_FILE = "job.env"


@dataclass
class JobRequest:
    """What to ask Slurm for; every field maps to one sbatch option."""

    nodes: int
    ntasks_per_node: int
    time: str
    partition: str = ""
    account: str = ""
    qos: str = ""
    constraint: str = ""
    job_name: str = "hpckernel"
    walltime_warning: int = 0  # seconds before the end to send USR1 to the batch shell
    overcommit: bool = False  # more ranks per node than it has CPUs
    extra: list[str] = field(default_factory=list)

    def sbatch_options(self, output: str) -> list[str]:
        # --no-requeue: a kernel's session dies with its job; a requeued job would only
        # burn an allocation nobody is connected to.
        # Slurm (22.05) refuses --ntasks-per-node beyond a node's CPUs even with
        # --overcommit, but spreads --ntasks evenly over --nodes; srun in the job inherits
        # SLURM_OVERCOMMIT.
        tasks = ([f"--ntasks={self.nodes * self.ntasks_per_node}", "--overcommit"]
                 if self.overcommit else [f"--ntasks-per-node={self.ntasks_per_node}"])
        options = [f"--job-name={self.job_name}", "--no-requeue", f"--nodes={self.nodes}",
                   *tasks, f"--time={self.time}", f"--output={output}"]
        for flag, value in (("partition", self.partition), ("account", self.account),
                            ("qos", self.qos), ("constraint", self.constraint)):
            if value:
                options.append(f"--{flag}={value}")
        if self.walltime_warning > 0:
            options.append(f"--signal=B:USR1@{self.walltime_warning}")
        return [*options, *self.extra]


def render_script(*, job_dir: str, python: str, hub_args: list[str], setup: str = "",
                  workdir: str = "", relaunch_timeout: int = 300) -> str:
    """The batch script; ``setup`` is shell code run first (``module load python``)."""
    template = Template((template_dir("launcher") / "slurm-job.sh").read_text())
    return template.substitute(
        job_dir=shlex.quote(job_dir), python=shlex.quote(python),
        hub_args=shlex.join(hub_args), setup=setup,
        workdir=shlex.quote(workdir) if workdir else '"$HOME"',
        relaunch_timeout=int(relaunch_timeout))


def job_env(kernel_env: Mapping[str, str] | None, asked: Iterable[str]
            ) -> tuple[dict[str, str], str]:
    """From the environment jupyter_client made for the kernel (the server's, the
    kernelspec's ``env``, ``JPY_SESSION_NAME``): the job's environment where sbatch runs
    here (the allow-list and the ``asked`` names), and the env file's text (the ``asked``
    names and ``JPY_SESSION_NAME``, which the job needs wherever sbatch runs)."""
    source = os.environ if kernel_env is None else kernel_env
    asked = [*asked, "JPY_SESSION_NAME"]
    env = job_environment(source, asked)
    lines = [f"export {name}={shlex.quote(source[name])}\n" for name in dict.fromkeys(asked)
             if name in source]
    return env, "".join(lines)
