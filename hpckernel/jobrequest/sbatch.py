"""A ``JobSettings`` request as sbatch's options (the kernel's batch job, ``hpckernel
submit``'s): the size, walltime and placement on sbatch's command line, never in a script's
``#SBATCH`` lines."""

from __future__ import annotations

from .settings import JobSettings


def walltime_warning(settings: JobSettings) -> int:
    """Seconds before the end of the walltime to warn the notebook; 0 when the walltime is
    not longer than that: Slurm would signal the batch shell as it starts, which tells the
    user nothing and could reach the shell before it traps the signal."""
    limit = settings.walltime()
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
    for option, value in (("partition", settings.partition), ("account", settings.account),
                          ("qos", settings.qos), ("constraint", settings.constraint)):
        if value:
            options.append(f"--{option}={value}")
    if walltime_warning > 0:
        options.append(f"--signal=B:USR1@{walltime_warning}")
    return [*options, *settings.sbatch_args]
