"""The hub's batch job: the script (from ``launcher/slurm-job.sh``), sbatch's options and
the job's environment."""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Mapping
from string import Template

from ..resources import template_dir
from ..slurm import ParseError, parse_duration
from ..slurm.environment import job_environment
from .settings import JobSettings

#: What the job's shell reads first (``export`` lines): the variables the kernelspec or
#: ``export_env`` name, and the notebook's path, which must reach the hub also when sbatch
#: runs on a login node with an environment of its own.
ENV_FILE = "job.env"


def walltime_warning(settings: JobSettings) -> int:
    """Seconds before the end of the walltime to warn the notebook; 0 when the walltime is
    not longer than that: Slurm would signal the batch shell as it starts, which tells the
    user nothing and could reach the shell before it traps the signal."""
    try:
        limit = parse_duration(settings.time)
    except ParseError:
        return 0
    if limit is None or limit.total_seconds() <= settings.walltime_warning:
        return 0
    return max(settings.walltime_warning, 0)


def sbatch_options(settings: JobSettings, *, job_name: str, output: str,
                   walltime_warning: int = 0) -> list[str]:
    """sbatch's options for the request in ``settings``; ``walltime_warning``: seconds
    before the end to send USR1 to the batch shell (0: none)."""
    # --no-requeue: a kernel's session dies with its job; a requeued job would only
    # burn an allocation nobody is connected to.
    # Slurm (22.05) refuses --ntasks-per-node beyond a node's CPUs even with
    # --overcommit, but spreads --ntasks evenly over --nodes; srun in the job inherits
    # SLURM_OVERCOMMIT.
    tasks = ([f"--ntasks={settings.ranks}", "--overcommit"] if settings.overcommit
             else [f"--ntasks-per-node={settings.ntasks_per_node}"])
    options = [f"--job-name={job_name}", "--no-requeue", f"--nodes={settings.nodes}",
               *tasks, f"--time={settings.time}", f"--output={output}"]
    for flag, value in (("partition", settings.partition), ("account", settings.account),
                        ("qos", settings.qos), ("constraint", settings.constraint)):
        if value:
            options.append(f"--{flag}={value}")
    if walltime_warning > 0:
        options.append(f"--signal=B:USR1@{walltime_warning}")
    return [*options, *settings.sbatch_args]


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
