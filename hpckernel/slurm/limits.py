"""Partition limits: whether a job could ever start where it asks to run.

Sites that do not set EnforcePartLimits accept a job beyond its partition's limits and
leave it pending forever (reason PartitionTimeLimit / PartitionNodeLimit). The kernel
provisioner, ``hpckernel submit`` and workflows therefore check each request first with
:func:`check_partition`, and fail at once with nothing queued.
"""

from __future__ import annotations

from datetime import timedelta

from .errors import SubmitError
from .jobs import Slurm
from .models import PartitionInfo
from .parse import format_duration, parse_duration


def check_request(
    partition: PartitionInfo, *, nodes: int | None = None, time_limit: timedelta | None = None
) -> None:
    """Raise `SubmitError` if `nodes`/`time_limit` (None: unlimited) cannot run in
    `partition`."""
    name = partition.name
    if partition.state != "UP":
        raise SubmitError(f"partition {name} is {partition.state}: jobs there do not start; "
                          "choose another partition (sinfo lists them)")
    if nodes is not None:
        if nodes > partition.total_nodes:
            raise SubmitError(f"partition {name} has {partition.total_nodes} nodes, "
                              f"{nodes} were requested: ask for fewer nodes")
        if partition.max_nodes is not None and nodes > partition.max_nodes:
            raise SubmitError(f"partition {name} allows at most {partition.max_nodes} nodes "
                              f"per job, {nodes} were requested")
        if nodes < partition.min_nodes:
            raise SubmitError(f"partition {name} needs at least {partition.min_nodes} nodes "
                              f"per job, {nodes} were requested")
    limit = partition.max_time
    if limit is not None and (time_limit is None or time_limit > limit):
        asked = "no time limit" if time_limit is None else format_duration(time_limit)
        raise SubmitError(f"partition {name} allows at most {format_duration(limit)} "
                          f"of walltime, {asked} was requested: "
                          f"use --time={format_duration(limit)} or less")


async def check_partition(slurm: Slurm, partition: str | None, *, nodes: int | None = None,
                          time: str | None = None,
                          known: dict[str | None, PartitionInfo] | None = None
                          ) -> PartitionInfo:
    """Ask Slurm for the limits of `partition` (None: the default partition) and raise
    `SubmitError` if a job of `nodes` nodes (None: not asked) and walltime `time` (a Slurm
    time string; None: not asked, the partition's default applies) could never start there.

    `known`: partitions asked for before, by name (filled here), so that a workflow asks
    once per partition. Raises `SlurmError` for an unknown partition, `ParseError` for a
    `time` that is not a Slurm time string."""
    known = {} if known is None else known
    if partition not in known:
        known[partition] = await slurm.partition(partition)
    info = known[partition]
    time_limit = (parse_duration(time) if time is not None
                  else info.default_time or info.max_time)
    check_request(info, nodes=nodes, time_limit=time_limit)
    return info
