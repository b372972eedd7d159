"""Submitting a workflow's steps, all or nothing: the order, the checks, the sbatch calls.

`Engine.submit`/`resubmit` call these under the engine's lock: :func:`plan` orders the steps
and finds the running jobs they wait for, :func:`check_partitions` asks Slurm whether each
request could ever start, and only then :func:`submit_steps` runs one ``sbatch`` per step
(dependents held by Slurm dependencies). If Slurm refuses a step, the steps queued before
it in the same call are cancelled again.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
from collections.abc import Iterable, Mapping, Sequence

from ..slurm import (
    ParseError,
    PartitionInfo,
    Slurm,
    SlurmError,
    SubmitError,
    check_partition,
)
from ..timestamps import now
from . import graph, jobscript
from .errors import DefinitionError, StepStateError, SubmitFailed
from .fileformat import Document
from .provenance import Run
from .spec import check_step, normalise_options
from .states import ACTIVE, COMPLETED, StepStatus

log = logging.getLogger(__name__)

#: Each step to submit, in order, with the job ids of the steps outside the submission it
#: must wait for.
Plan = list[tuple[str, list[str]]]


def plan(doc: Document, statuses: Mapping[str, StepStatus], targets: Sequence[str]) -> Plan:
    """Submission order of `targets`, each with the job ids of the steps outside
    `targets` it must wait for; raises before anything is submitted if it cannot run."""
    steps = doc.steps
    ordered = [n for n in graph.order(steps) if n in targets]
    result: Plan = []
    for name in ordered:
        check_step(steps[name], list(steps), doc.layout.base)
        external = []
        for up in steps[name].after:
            st = statuses[up]
            if up in targets or st.state == COMPLETED:
                continue
            if st.state in ACTIVE:
                assert st.job_id is not None
                external.append(st.job_id)
            else:
                raise StepStateError(
                    f"step {name!r} comes after {up!r}, which is {st.state}: "
                    f"wf.resubmit({up!r}) re-runs both")
        result.append((name, external))
    return result


async def check_partitions(slurm: Slurm, doc: Document, targets: Iterable[str]) -> None:
    """Each step's request against its partition's limits, before anything is submitted
    (`check_partition`); DefinitionError naming the step that could never start."""
    known: dict[str | None, PartitionInfo] = {}
    for name in targets:
        step = doc.steps[name]
        options = normalise_options(step.options, name)
        wanted = options.get("partition")
        partition = str(wanted) if wanted is not None else None
        if (partition and "," in partition) or any(
                a == "-p" or a.startswith(("--partition", "-p")) for a in step.sbatch_args):
            continue  # several partitions (Slurm picks one), or chosen in sbatch_args
        limit = jobscript.GATE_TIME if step.kind == "gate" else options.get("time")
        nodes = str(options.get("nodes"))
        try:
            await check_partition(slurm, partition, known=known,
                                  nodes=int(nodes) if nodes.isdigit() else None,
                                  time=str(limit) if limit is not None else None)
        except (SubmitError, ParseError) as err:
            raise DefinitionError(f"step {name!r}: {err}") from None
        except SlurmError as err:
            if "does not exist" in str(err):
                raise DefinitionError(f"step {name!r}: {err}") from None
            raise


async def submit_steps(slurm: Slurm, doc: Document, order: Plan) -> dict[str, Run]:
    """``sbatch`` each step of `order`; the new runs by step. If one fails, the jobs
    submitted before it are cancelled and `SubmitFailed` says so."""
    layout = doc.layout
    new: dict[str, str] = {}
    runs: dict[str, Run] = {}
    await asyncio.to_thread(layout.runs.mkdir, parents=True, exist_ok=True)
    name = ""
    try:
        for name, external in order:
            step = doc.steps[name]
            depends = [new[up] for up in step.after if up in new] + external
            request = await asyncio.to_thread(jobscript.build, step, layout, doc.python,
                                              depends)
            job_id = await slurm.submit(request.script, request.options)
            new[name] = job_id
            runs[name] = Run(
                job_id=job_id, attempt=len(doc.runs.get(name, [])) + 1,
                submitted=now(), script=request.script,
                command=shlex.join(["sbatch", "--parsable", *request.options]))
            log.info("workflow %s: step %s is job %s", doc.name, name, job_id)
    except BaseException as err:
        await asyncio.shield(cancel_jobs(slurm, list(new.values())))
        if isinstance(err, SlurmError):
            undone = (f"; the {len(new)} step(s) queued before it were cancelled (jobs "
                      f"{', '.join(new.values())})" if new else "")
            raise SubmitFailed(f"step {name!r} of workflow {doc.name!r} was not "
                               f"submitted: {err}{undone}") from err
        raise
    return runs


async def cancel_jobs(slurm: Slurm, job_ids: Sequence[str]) -> None:
    """scancel every job at once; a failure is logged, the others go on."""
    results = await asyncio.gather(*(slurm.cancel(j) for j in job_ids),
                                   return_exceptions=True)
    for job_id, result in zip(job_ids, results, strict=True):
        if isinstance(result, BaseException):
            log.error("could not cancel job %s: %s", job_id, result)
