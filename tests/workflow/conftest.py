"""Fixtures for the workflow tests: the test bed's environment and workflows that clean up.

Cluster tests take `make_workflow`, which makes workflows in the test's tmp_path against the
virtual cluster (tests/cluster; a cluster that is down fails the test, it is not skipped)
and at the end cancels every job any of them submitted and waits until Slurm reports it gone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from hpckernel.slurm import sync as background
from hpckernel.slurm import wait_gone
from hpckernel.workflow import Workflow


@pytest.fixture
def cluster(cluster_env: dict[str, str]) -> dict[str, str]:
    """The test bed's variables (SLURM_CONF...) merged into os.environ."""
    return cluster_env


def job_ids(wf: Workflow) -> list[str]:
    """Every job the workflow's steps were ever submitted as."""
    return [run.job_id for runs in wf.engine.doc.runs.values() for run in runs]


def clean_up(wf: Workflow, extra_ids: Sequence[str] = ()) -> None:
    """Cancel every job of `wf` straight through Slurm (not through the workflow, which
    would save its file) and wait until each is gone."""
    if wf._widget is not None:
        wf._widget.close()
    slurm = wf.engine.slurm

    async def cancel() -> None:
        await wf.engine.stop_watching()
        for job_id in [*job_ids(wf), *extra_ids]:
            await slurm.cancel(job_id)
        for job_id in [*job_ids(wf), *extra_ids]:
            await wait_gone(slurm, job_id, timeout=60)

    background.run(cancel())


@pytest.fixture
def make_workflow(cluster: dict[str, str], tmp_path: Path
                  ) -> Iterator[Callable[..., Workflow]]:
    made: list[Workflow] = []

    def make(name: str = "wf", **kwargs: Any) -> Workflow:
        kwargs.setdefault("poll_interval", 0.3)
        wf = Workflow(name, tmp_path / f"{name}.workflow.yaml", **kwargs)
        made.append(wf)
        return wf

    yield make
    for wf in made:
        clean_up(wf)


def eventually(check: Callable[[], Any], timeout: float = 60, what: str = "",
               show: Callable[[], object] | None = None) -> Any:
    """Poll `check` until it returns something true; fail with `what` (and what `show`
    returns then) after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = f"; last seen: {show()}" if show else ""
            raise AssertionError(f"not reached within {timeout} s: {what or check}{seen}")
        time.sleep(0.2)
