"""The Slurm side of ``hpckernel submit``: the job script and sbatch's options.

Requests are checked against the partition's limits first (``check_partition``, as the
kernel provisioner does), so a job that could never start fails now, with nothing queued.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from string import Template

from ..jobrequest.sbatch import sbatch_options as batch_options
from ..resources import template_dir
from ..slurm import JobInfo, Slurm, check_partition, wait_gone
from .spec import RunSpec


def render_script(spec: RunSpec) -> str:
    """The job script (``launcher/notebook-job.sh``): ``spec`` as JSON on the stdin of
    ``python -m hpckernel.submit.execute``, after the ``setup`` lines."""
    template = Template((template_dir("launcher") / "notebook-job.sh").read_text())
    return template.substitute(setup=spec.job.setup, python=shlex.quote(spec.job.python),
                               workdir=shlex.quote(str(Path(spec.notebook).parent)),
                               spec=spec.to_json())


def sbatch_options(spec: RunSpec) -> list[str]:
    """sbatch's options: the request, a job name and a log beside the notebook."""
    nb = Path(spec.notebook)
    return batch_options(spec.job, job_name=f"hpckernel-run-{nb.stem}"[:60],
                         output=str(nb.with_name(f"{nb.stem}.run-%j.log")))


async def submit(spec: RunSpec, slurm: Slurm | None = None) -> str:
    """Check the request, submit the job; its id. Raises SlurmError/SubmitError."""
    slurm = slurm or Slurm()
    await check_partition(slurm, spec.job.partition or None, nodes=spec.job.nodes,
                          time=spec.job.time)
    return await slurm.submit(render_script(spec), sbatch_options(spec),
                              workdir=str(Path(spec.notebook).parent))


async def wait(job_id: str, slurm: Slurm | None = None, poll: float = 2.0) -> JobInfo | None:
    """Wait until the job has ended; its last state (None if Slurm forgot it)."""
    slurm = slurm or Slurm(poll_interval=poll)
    return await wait_gone(slurm, job_id, timeout=float("inf"))
