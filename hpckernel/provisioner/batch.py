"""The hub's batch job: the script (from ``launcher/slurm-job.sh``) and the job's
environment; sbatch's options come from ``hpckernel.jobrequest.sbatch``."""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Mapping
from string import Template

from ..resources import template_dir
from ..slurm.environment import job_environment

#: What the job's shell reads first (``export`` lines): the variables the kernelspec or
#: ``export_env`` name, and the notebook's path, which must reach the hub also when sbatch
#: runs on a login node with an environment of its own.
ENV_FILE = "job.env"


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
