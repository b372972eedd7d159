"""A notebook run's settings (``RunSpec``) and its run record, ``NB.run-<id>.json`` beside
the notebook: what ``hpckernel submit --resubmit`` reads to repeat the run."""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

from ..jobrequest import JobSettings, settings_from
from .params import inject, value_of

#: The kernel settings (``hpckernel.jobrequest``) that ``hpckernel submit`` takes.
SUBMIT_SETTINGS = ("nodes", "ntasks_per_node", "time", "partition", "account", "qos",
                   "constraint", "sbatch_args", "setup", "python")


class RunError(ValueError):
    """A run that cannot be made as asked; the message says what to change."""


@dataclass
class RunSpec:
    """A notebook run's settings: what ``hpckernel submit`` was asked, kept in the run
    record (:meth:`to_dict`) so that ``--resubmit`` can repeat it."""

    notebook: str  # absolute path of the notebook to run
    parameters: dict[str, str] = field(default_factory=dict)  # as typed after -p NAME=
    output: str = ""  # executed notebook; "{run_id}" is replaced; "": NB.run-<id>.ipynb
    timeout: float | None = None  # seconds per cell; None: the walltime is the limit
    local: bool = False  # on this machine's ranks instead of in a Slurm job
    ranks: int = 4  # with local
    # The Slurm request: the kernel's settings (only SUBMIT_SETTINGS of them are used).
    job: JobSettings = field(default_factory=JobSettings)
    run_id: str = ""  # the Slurm job id, or local-<timestamp>
    submitted: str = ""

    def parameter_values(self) -> dict[str, object]:
        """The parameters as the notebook gets them (Python values, see ``value_of``)."""
        return {name: value_of(text) for name, text in self.parameters.items()}

    @property
    def size(self) -> int:
        """The number of MPI ranks the run asks for."""
        return self.ranks if self.local else self.job.ranks

    def output_path(self) -> Path:
        """Where the executed notebook is written."""
        nb = Path(self.notebook)
        template = self.output or str(nb.with_name(f"{nb.stem}.run-{{run_id}}.ipynb"))
        return Path(template.replace("{run_id}", self.run_id))

    def record_path(self) -> Path:
        """The run record: ``NB.run-<id>.json`` beside the notebook."""
        nb = Path(self.notebook)
        return nb.with_name(f"{nb.stem}.run-{self.run_id}.json")

    def to_dict(self) -> dict[str, object]:
        """The settings as JSON data; of the Slurm request only what submit uses."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "job"}
        data["slurm"] = {name: getattr(self.job, name) for name in SUBMIT_SETTINGS}
        return data

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON text (the batch job reads it on stdin)."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        """From :meth:`to_dict`'s data (or a record of before "slurm", flat)."""
        slurm = data.get("slurm", data)
        job = settings_from({k: v for k, v in slurm.items() if k in SUBMIT_SETTINGS})
        known = {f.name for f in fields(cls)} - {"job"}
        return cls(**{k: v for k, v in data.items() if k in known}, job=job)


def local_run_id() -> str:
    """The run id of a ``--local`` run: ``local-`` and the time to the millisecond."""
    return "local-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")[:-3]


def read_notebook(path: Path) -> NotebookNode:
    """The notebook at ``path``, checked: a clear RunError if it is missing or not one."""
    if not path.is_file():
        raise RunError(f"no notebook at {path}")
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except (ValueError, nbformat.ValidationError) as e:  # NotJSONError is a ValueError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RunError(f"{path} is not a valid notebook: {first}") from None
    if not any(c.cell_type == "code" and c.source.strip() for c in nb.cells):
        raise RunError(f"{path} has no code cells to run")
    return nb


def prepare(spec: RunSpec) -> NotebookNode:
    """The notebook of ``spec`` with its parameters injected, ready to run."""
    nb = read_notebook(Path(spec.notebook))
    bad = [name for name in spec.parameters if not name.isidentifier()]
    if bad:
        raise RunError(f"parameter {bad[0]!r} is not a Python name")
    inject(nb, spec.parameter_values())
    return nb


def save_record(spec: RunSpec, **status: object) -> Path:
    """Write (or update) the run record; ``status`` adds fields such as the run's state."""
    path = spec.record_path()
    record = {**spec.to_dict(), **status}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def load_record(run: str) -> RunSpec:
    """The settings of an earlier run: its record (``NB.run-<id>.json``), or its executed
    notebook (``NB.run-<id>.ipynb``), whose record sits beside it."""
    path = Path(run)
    if path.suffix == ".ipynb":
        path = path.with_suffix(".json")
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(f"no run record at {path}: --resubmit takes the .json record (or the "
                       "executed .ipynb) of an earlier hpckernel submit") from None
    except ValueError as e:
        raise RunError(f"{path} is not a run record: {e}") from None
    if not isinstance(data, dict) or "notebook" not in data:
        raise RunError(f"{path} is not a run record of hpckernel submit")
    return RunSpec.from_dict(data)
