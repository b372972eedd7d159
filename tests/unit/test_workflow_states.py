"""Step states of hpckernel.workflow from Slurm output recorded on the virtual cluster.

Jobs 466-469 (tests/unit/data/slurm/README.md): 466 fails with exit 3; 467 waits for it with
--kill-on-invalid-dep=yes, 468 is the same but held (a gate), 469 waits with
--kill-on-invalid-dep=no. The squeue recordings are of the same four as jobs 125-128. Each
recording goes through `hpckernel.slurm.parse`, the one place that reads Slurm output, and
then through `classify`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hpckernel.slurm import parse as p
from hpckernel.slurm.models import JobInfo
from hpckernel.workflow.provenance import Run
from hpckernel.workflow.states import (
    CANCELLED,
    FAILED,
    HELD,
    NEVER_RUN,
    PENDING,
    RUNNING,
    UNKNOWN,
    WAITING,
    classify,
    describe,
)

DATA = Path(__file__).parent / "data" / "slurm"


def scontrol(name: str) -> JobInfo:
    [job] = p.parse_scontrol_job((DATA / name).read_text())
    return job


def by_id(jobs: list[JobInfo]) -> dict[str, JobInfo]:
    return {j.job_id: j for j in jobs}


def test_waiting_and_held_from_squeue() -> None:
    jobs = by_id(p.parse_squeue((DATA / "squeue_workflow_waiting.txt").read_text()))
    assert {i: classify(j) for i, j in jobs.items()} == {
        "125": RUNNING, "126": WAITING, "127": HELD, "128": WAITING}
    assert describe(HELD, jobs["127"], note="look at it") == "waiting for approval: look at it"


def test_waiting_and_held_from_scontrol() -> None:
    assert classify(scontrol("workflow_scontrol_dependency.txt")) == WAITING
    held = scontrol("workflow_scontrol_held.txt")
    assert (held.reason, classify(held)) == ("JobHeldUser", HELD)


def test_a_failed_dependency_is_never_run_not_cancelled() -> None:
    killed = scontrol("workflow_scontrol_never_satisfied.txt")
    assert (killed.state, killed.reason) == ("CANCELLED", "DependencyNeverSatisfied")
    assert classify(killed) == NEVER_RUN
    assert "DependencyNeverSatisfied" in describe(NEVER_RUN, killed)
    # Without --kill-on-invalid-dep Slurm keeps it pending forever: still never-run.
    assert classify(scontrol("workflow_scontrol_pending_never_satisfied.txt")) == NEVER_RUN
    failed = by_id(p.parse_squeue((DATA / "squeue_workflow_failed.txt").read_text()))
    assert classify(failed["125"]) == FAILED and classify(failed["126"]) == NEVER_RUN
    assert classify(failed["128"]) == NEVER_RUN
    # A held gate is not checked by Slurm: held still, until the engine releases it.
    assert classify(failed["127"]) == HELD
    ended = by_id(p.parse_squeue((DATA / "squeue_workflow_ended.txt").read_text()))
    assert classify(ended["127"]) == NEVER_RUN


def test_a_released_gate_whose_dependency_failed_ends_as_never_run() -> None:
    # A second after `scontrol release` Slurm has not checked the dependency yet.
    assert classify(scontrol("workflow_scontrol_gate_released.txt")) == PENDING
    assert classify(scontrol("workflow_scontrol_gate_released_later.txt")) == NEVER_RUN


def test_sacct_keeps_only_the_last_pending_reason() -> None:
    jobs = by_id(p.parse_sacct((DATA / "workflow_sacct.txt").read_text()))
    assert classify(jobs["466"]) == FAILED
    assert (jobs["467"].reason, classify(jobs["467"])) == ("Dependency", NEVER_RUN)
    # The gate's sacct record says JobHeldUser: only the state recorded while scontrol knew
    # the job tells that it never ran because of its dependency.
    assert classify(jobs["468"]) == CANCELLED
    assert classify(jobs["468"], NEVER_RUN, "CANCELLED") == NEVER_RUN
    assert classify(jobs["469"]) == CANCELLED  # cancelled by hand while waiting forever


def test_a_forgotten_job_keeps_its_recorded_end() -> None:
    assert classify(None) == UNKNOWN
    assert classify(None, "completed", "COMPLETED") == "completed"
    assert classify(None, "running", "RUNNING") == UNKNOWN  # not ended: no guess


@pytest.mark.parametrize(("name", "ours"), [("rec.gate", True), ("allocation", True),
                                            ("", True), ("someone.else", False)])
def test_a_reused_job_id_is_not_taken_for_ours(name: str, ours: bool) -> None:
    run = Run(job_id="468", attempt=1, submitted="", command="", script="")
    assert run.update(HELD, scontrol("workflow_scontrol_held.txt"))
    assert run.job_name == "rec.gate" and run.slurm_state == "PENDING"
    other = JobInfo(job_id="468", state="RUNNING", source="scontrol", name=name)
    assert run.matches(other) is ours
