"""`Workflow`: steps, dependencies and human gates on Slurm, from a notebook (sync API).

    wf = Workflow("droplet")                      # file: ./droplet.workflow.yaml
    mesh = wf.batch("mesh", script="make_mesh.sh", nodes=1, time="00:10:00")
    sim = wf.batch("sim", script="run.sh", after=[mesh], nodes=2, ntasks_per_node=2)
    check = wf.gate("inspect", after=[sim], note="look at the residual plot")
    post = wf.notebook("post", "analysis.ipynb", after=[check], parameters={"run": "A"})
    wf.submit()                                   # every step queued at once
    wf                                            # the live widget
    wf.approve("inspect")                         # or its Continue button

Each method is a thin sync wrapper that runs the matching `Engine` coroutine on the private
loop of `hpckernel.slurm.sync`; the widget's buttons call these same methods. Paths (scripts,
notebooks) are relative to the workflow file's directory, which must be visible to the
compute nodes, as the jobs write their output and results there.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from hpckernel.slurm import Slurm

from ..slurm import sync as background
from . import call, fileformat, table
from .engine import Engine
from .errors import DefinitionError
from .fileformat import Document
from .spec import (
    OptionValue,
    Step,
    after_names,
    check_name,
    check_parameters,
    normalise_options,
)
from .states import StepStatus

if TYPE_CHECKING:
    from .widget import WorkflowWidget

T = TypeVar("T")


class Workflow:
    """A named set of steps submitted to Slurm as one, kept in a YAML file (`path`, default
    `<cwd>/<name>.workflow.yaml`). `Workflow.load(path)` re-attaches to its jobs.

    `python` is the interpreter that runs function and notebook steps inside their jobs
    (default: this kernel's); `slurm` a configured `hpckernel.slurm.Slurm`; `poll_interval`
    the first pause (seconds) between looks at Slurm while a step is active and the widget is
    shown or `wait` runs, doubling while nothing changes up to 30 times as long (default: the
    slurm's, 2 s -> 60 s); every call of yours looks at once. An existing workflow file is an
    error unless `overwrite` (its jobs and provenance would be lost).
    """

    def __init__(self, name: str, path: str | os.PathLike[str] | None = None, *,
                 python: str | None = None, slurm: Slurm | None = None,
                 poll_interval: float | None = None, overwrite: bool = False) -> None:
        check_name(name, "workflow")
        where = Path(path) if path is not None else Path.cwd() / f"{name}.workflow.yaml"
        if where.exists() and not overwrite:
            raise DefinitionError(
                f"workflow file {str(where)!r} exists already: Workflow.load({str(where)!r}) "
                f"re-attaches to its jobs; Workflow({name!r}, overwrite=True) replaces it")
        self._init(Document(name=name, path=where.resolve(), python=python or sys.executable),
                   slurm, poll_interval)

    def _init(self, doc: Document, slurm: Slurm | None, poll_interval: float | None) -> None:
        self.engine = Engine(doc, slurm or Slurm(), poll_interval=poll_interval)
        self._widget: WorkflowWidget | None = None

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, slurm: Slurm | None = None,
             poll_interval: float | None = None) -> Workflow:
        """Read a workflow file (checked entry by entry: `WorkflowFileError` says what is
        wrong where). Its steps' states come from Slurm by job id at the next refresh."""
        wf = cls.__new__(cls)
        wf._init(fileformat.load(Path(path).resolve()), slurm, poll_interval)
        return wf

    def _run(self, coro: Coroutine[object, None, T], timeout: float | None = None) -> T:
        return background.run(coro, timeout)

    # ---------------------------------------------------------------- properties

    @property
    def name(self) -> str:
        """The workflow's name."""
        return self.engine.doc.name

    @property
    def path(self) -> Path:
        """The workflow file."""
        return self.engine.doc.path

    @property
    def steps(self) -> dict[str, Step]:
        """The steps by name, in the order they were defined."""
        return dict(self.engine.doc.steps)

    def __getitem__(self, name: str) -> Step:
        return self.engine.step(name)

    # ---------------------------------------------------------------- defining steps

    def batch(self, name: str, script: str | os.PathLike[str] | None = None, *,
              command: str | None = None, after: object = None,
              sbatch_args: Sequence[str] = (), **options: OptionValue) -> Step:
        """A batch job running `script` (a file with "#!" first) or the shell `command`.

        Any sbatch option can be given by keyword (`nodes=2`, `ntasks_per_node=4`,
        `partition="short"`, `exclusive=True`) or verbatim in `sbatch_args`.
        """
        return self._add(Step(name=name, kind="batch", after=after_names(after),
                              options=dict(options), sbatch_args=tuple(sbatch_args),
                              script=os.fspath(script) if script is not None else None,
                              command=command))

    def function(self, name: str, fn: Callable[..., object], *, args: Sequence[object] = (),
                 kwargs: Mapping[str, object] | None = None, ranks: int | None = None,
                 after: object = None, sbatch_args: Sequence[str] = (),
                 **options: OptionValue) -> Step:
        """A job calling `fn(*args, **kwargs)` (cloudpickled now), under `srun` on `ranks`
        ranks if given; `wf.result(name)` returns its value (a list by rank with `ranks`)."""
        check_name(name)
        try:
            data = call.dump_call(fn, args, kwargs or {})
        except Exception as err:
            raise DefinitionError(f"function step {name!r}: cannot pickle the call: {err}"
                                  ) from err
        layout = self.engine.doc.layout
        return self._add(Step(name=name, kind="function", after=after_names(after),
                              options=dict(options), sbatch_args=tuple(sbatch_args),
                              call=os.path.relpath(layout.call(name), layout.base),
                              label=call.label(fn), ranks=ranks), data)

    def notebook(self, name: str, notebook: str | os.PathLike[str], *,
                 parameters: Mapping[str, object] | None = None, after: object = None,
                 sbatch_args: Sequence[str] = (), **options: OptionValue) -> Step:
        """A job executing `notebook` headless (nbclient, kernel python3) with `parameters`
        injected after its cell tagged "parameters"; the executed notebook is written next
        to the workflow file as `<workflow>.<step>.ipynb`."""
        return self._add(Step(name=name, kind="notebook", after=after_names(after),
                              options=dict(options), sbatch_args=tuple(sbatch_args),
                              notebook=os.fspath(notebook),
                              parameters=check_parameters(parameters or {}, name)))

    def gate(self, name: str, *, after: object = None, note: str = "",
             sbatch_args: Sequence[str] = (), **options: OptionValue) -> Step:
        """An interactive phase: a held placeholder job; the steps after it wait until
        `approve(name)` (or the widget's Continue button); `reject(name)` cancels them."""
        return self._add(Step(name=name, kind="gate", after=after_names(after),
                              options=dict(options), sbatch_args=tuple(sbatch_args), note=note))

    def _add(self, step: Step, call_data: bytes | None = None) -> Step:
        check_name(step.name)
        step = replace(step, options=normalise_options(step.options, step.name))
        return self._run(self.engine.add(step, call_data))

    # ---------------------------------------------------------------- running

    def submit(self) -> list[str]:
        """Queue every step not submitted yet, dependents held by Slurm dependencies; all or
        nothing. Saves the workflow file. Returns the steps submitted."""
        return self._run(self.engine.submit())

    def approve(self, gate: str) -> None:
        """Open `gate`: the steps after it run (`scontrol release`). Twice is an error."""
        self._run(self.engine.approve(gate))

    def reject(self, gate: str) -> list[str]:
        """Cancel `gate` and every step after it; returns the steps cancelled."""
        return self._run(self.engine.reject(gate))

    def resubmit(self, *steps: str) -> list[str]:
        """Run the (ended) `steps` again and every step after them; returns what was queued."""
        if not steps:
            raise DefinitionError("name the step(s) to resubmit: wf.resubmit('sim')")
        return self._run(self.engine.resubmit(steps))

    def cancel(self, *steps: str) -> list[str]:
        """scancel the named steps, or every active step; returns the steps cancelled."""
        return self._run(self.engine.cancel(steps))

    def refresh(self) -> dict[str, StepStatus]:
        """Each step's state, read from Slurm now."""
        return self._run(self.engine.refresh())

    def status(self) -> dict[str, str]:
        """{step: state} read from Slurm now ("completed", "held", "never-run", ...)."""
        return {name: st.state for name, st in self.refresh().items()}

    def wait(self, *steps: str, timeout: float | None = None) -> dict[str, str]:
        """Block until the named steps (default: all) have ended; {step: state}.

        Raises `WorkflowTimeout` listing what is still running (and gates left to approve).
        """
        statuses = self._run(self.engine.wait(steps, timeout))
        return {name: st.state for name, st in statuses.items()}

    def result(self, step: str, timeout: float | None = None) -> object:
        """The value function step `step` returned (waiting up to `timeout` s for it)."""
        return self._run(self.engine.result(step, timeout))

    def logs(self, step: str, lines: int = 20) -> str:
        """The last `lines` lines of the output of the step's current job."""
        return self.engine.log_tail(step, lines)

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the workflow file (to `path`, which becomes its file, if given)."""
        return self._run(self.engine.save(Path(path).resolve() if path is not None else None))

    # ---------------------------------------------------------------- views

    def widget(self) -> WorkflowWidget:
        """The live ipywidgets view."""
        if self._widget is None:
            # ipywidgets is imported when a view is first shown, not with every workflow.
            from .widget import WorkflowWidget

            self._widget = WorkflowWidget(self.engine)
        return self._widget

    def _title(self) -> str:
        return f"workflow {self.name} ({self.path})"

    def __repr__(self) -> str:
        return table.text(self._title(), self.engine.doc.steps, self.engine.statuses)

    def _repr_html_(self) -> str:
        return table.to_html(self._title(), self.engine.doc.steps, self.engine.statuses)

    def _repr_mimebundle_(self, include: object = None, exclude: object = None
                          ) -> dict[str, Any]:
        """The widget where ipywidgets is installed, with the HTML table as a fallback for
        front ends that cannot show widgets."""
        note = ""
        try:
            self.refresh()
        except Exception as err:  # a view must not fail: show the last known states
            note = f"\n(could not refresh from Slurm: {err})"
        bundle = {"text/plain": repr(self) + note, "text/html": self._repr_html_()}
        try:
            view = self.widget()
        except ImportError:
            return bundle
        return {**view.mimebundle(), **bundle}
