"""Every magic the hub offers works a second time in the same kernel, in another order.

A first call may import a module that changes what a second call finds (a submodule named
like the function it sits beside replaced ``%liveplot``'s function by the module).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from hpckernel.slurm import Job
from tests.kernel.harness import Kernel, Result

from .widgets import Comms

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster")]

PUBLISH = "import hpckernel\nfor i in range(3):\n    hpckernel.publish('loss', rank + i)\n"


def _magics_of_hpckernel(hub: Kernel) -> set[str]:
    """``%name`` / ``%%name`` of every magic an hpckernel class registered in the hub."""
    code = ("%%local\nmm = get_ipython().magics_manager\n"
            "print(sorted(('%' if kind == 'line' else '%%') + name\n"
            "             for kind, table in mm.magics.items() for name, f in table.items()\n"
            "             if type(getattr(f, '__self__', None)).__module__"
            ".startswith('hpckernel')))")
    return set(eval(hub.ok(code).text()))


class Steps:
    """The magics in order; each step makes what it needs (``%restart_ranks`` may have run
    just before) and checks its own outcome."""

    def __init__(self, hub: Kernel, comms: Comms) -> None:
        self.hub, self.comms = hub, comms
        self.jobs: list[str] = []

    def ok(self, code: str) -> Result:
        result = self.hub.run(code)
        assert result.status == "ok", (code, result.content)
        assert "Error" not in result.text(), (code, result.text())
        return result

    def widget(self, code: str, **state: str) -> str:
        self.comms.run(code)
        return self.comms.find(**state)

    def sbatch(self) -> None:
        self.comms.run("%%sbatch --job-name=hpck-twice --time=1\nsleep 120\n")
        # The newest follower: other widgets (the %squeue rows) open models meanwhile.
        job = next(c for c, s in reversed(self.comms.state.items()) if "job_id" in s)
        job_id = self.comms.state[job]["job_id"]
        assert job_id and job_id not in self.jobs
        self.jobs.append(job_id)

    def scancel_sacct(self) -> None:
        job_id = self.jobs[-1]
        assert "cancelled" in self.ok(f"%scancel {job_id}").text()
        assert re.search(rf"job: {job_id}\b", self.ok(f"%sacct {job_id}").text())

    def sacct_without_id(self) -> None:
        bad = self.hub.run("%sacct")  # outside a Slurm job there is no own job to show
        assert bad.status == "error" and "name a job" in str(bad.content), bad.content

    def attach_unknown(self) -> None:
        bad = self.hub.run("%attach 987654")
        assert bad.status == "error" and "unknown to Slurm" in str(bad.content), bad.content

    def all(self) -> dict[str, Callable[[], object]]:
        """Each magic (the keys are what the test must cover) and how to use it."""
        return {
            "%pxconfig": lambda: self.ok("%pxconfig --targets all --block"),
            "%%px": lambda: self.ok("%%px --targets 0:2\nx = rank"),
            "%px": lambda: self.ok("%px y = rank * 2"),
            "%pxresult": lambda: (self.ok("%%px --noblock\nz = rank"),
                                  self.ok("%pxresult")),
            "%pxoutput": lambda: (self.ok("%px print(rank)"),
                                  "[stdout:1]" in self.ok("%pxoutput 1").text()
                                  or pytest.fail("%pxoutput showed no rank 1")),
            "%ranks": lambda: "idle" in self.ok("%ranks").text() or pytest.fail("no ranks"),
            "%peek": lambda: (self.ok("%px w = rank"), self.ok("%peek w")),
            "%where": lambda: self.ok("%where"),
            "%push": lambda: (self.ok("%%local\nv = 5"), self.ok("%push v")),
            "%pull": lambda: (self.ok("%px u = rank"), self.ok("%pull u")),
            "%provenance": lambda: self.ok("%provenance 1"),
            "%restart_ranks": lambda: self.ok("%restart_ranks"),
            "%dashboard": lambda: self.widget("%dashboard", _model_name="VBoxModel"),
            "%liveplot": lambda: (self.ok(PUBLISH),
                                  self.widget("%liveplot loss", published="loss")),
            "%squeue": lambda: self.widget("%squeue", _model_name="VBoxModel"),
            "%%sbatch": self.sbatch,
            "%scancel": self.scancel_sacct,
            "%sacct": self.sacct_without_id,
            "%attach": self.attach_unknown,
            "%detach": lambda: self.ok("%detach"),  # nothing attached: nothing to do
        }


def test_each_magic_twice_in_one_kernel_in_another_order(hub: Kernel) -> None:
    steps = Steps(hub, Comms(hub))
    table = steps.all()
    try:
        assert _magics_of_hpckernel(hub) == set(table), "a magic this test does not cover"
        first = list(table)
        # The second round runs backwards, but a job is submitted before it is cancelled.
        second = [m for m in reversed(first) if m not in ("%%sbatch", "%scancel")]
        second += ["%%sbatch", "%scancel"]
        for magic in first + second:
            table[magic]()
        assert len(steps.jobs) == 2
    finally:
        for job_id in steps.jobs:
            Job(job_id).cancel()
