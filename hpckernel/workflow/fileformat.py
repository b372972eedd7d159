"""The workflow file: YAML next to the notebook, holding the steps and their provenance.

`Document` is a workflow in memory (name, steps, runs); `dump`/`save` write it and `load`
reads it back, checking every entry so that a hand-edited file that makes no sense is a
`WorkflowFileError` naming the entry, raised before anything is submitted. Example:

    hpckernel-workflow: 1
    name: droplet
    python: /home/me/.venv/bin/python
    steps:
      mesh:
        kind: batch
        script: make_mesh.sh
        sbatch: {nodes: 1, time: '00:10:00'}
        runs:
        - {job_id: '41', attempt: 1, state: completed, nodes: [n1], exit_code: 0, ...}
      sim: {kind: batch, script: run.sh, after: [mesh], sbatch: {nodes: 2}}
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import graph
from .errors import DefinitionError, WorkflowFileError
from .jobscript import Layout
from .provenance import RUN_FIELDS, Run
from .spec import KINDS, Step, check_name, check_step, normalise_options

VERSION = 1
_TOP = {"hpckernel-workflow", "name", "python", "steps"}
_COMMON = {"kind", "after", "sbatch", "sbatch_args", "runs"}
_BY_KIND = {
    "batch": {"script", "command"},
    "function": {"call", "label", "ranks"},
    "notebook": {"notebook", "parameters"},
    "gate": {"note"},
}
_STRINGS = {"script", "command", "notebook", "call", "label", "note"}


@dataclass
class Document:
    """A workflow as its file holds it: the steps in definition order and each step's runs
    (oldest first; the last is the current job)."""

    name: str
    path: Path
    python: str = sys.executable
    steps: dict[str, Step] = field(default_factory=dict)
    runs: dict[str, list[Run]] = field(default_factory=dict)

    @property
    def layout(self) -> Layout:
        """Where the workflow's files are (its runs directory, logs, results)."""
        return Layout(self.path.parent, self.name)

    def current(self, step: str) -> Run | None:
        """The newest run of ``step``; None if it was never submitted."""
        runs = self.runs.get(step)
        return runs[-1] if runs else None


# ---------------------------------------------------------------- writing


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Scripts and tracebacks read better as literal blocks than as escaped one-liners.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _step_dict(step: Step, runs: list[Run]) -> dict[str, object]:
    out: dict[str, object] = {"kind": step.kind}
    if step.after:
        out["after"] = list(step.after)
    for key in sorted(_BY_KIND[step.kind]):
        value = getattr(step, key)
        if value not in (None, "", {}):
            out[key] = dict(value) if isinstance(value, Mapping) else value
    if step.options:
        out["sbatch"] = dict(step.options)
    if step.sbatch_args:
        out["sbatch_args"] = list(step.sbatch_args)
    if runs:
        out["runs"] = [run.to_dict() for run in runs]
    return out


def dump(doc: Document) -> str:
    """The workflow file's YAML text: steps, their runs and provenance."""
    data = {"hpckernel-workflow": VERSION, "name": doc.name, "python": doc.python,
            "steps": {name: _step_dict(step, doc.runs.get(name, []))
                      for name, step in doc.steps.items()}}
    header = (f"# hpckernel workflow {doc.name!r}: Workflow.load({doc.path.name!r}) re-attaches "
              "to its jobs.\n")
    return header + yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                              width=100)


def write(path: Path, text: str) -> Path:
    """Write a dumped workflow atomically: a reader or a crash never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------- reading


def load(path: Path) -> Document:
    """Read and check a workflow file; raises `WorkflowFileError` saying what is wrong where."""
    try:
        text = path.read_text()
    except OSError as err:
        raise WorkflowFileError(f"cannot read workflow file {path}: {err.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise WorkflowFileError(f"{path}: not valid YAML: {err}") from None
    try:
        return _document(data, path)
    except WorkflowFileError:
        raise
    except DefinitionError as err:
        raise WorkflowFileError(f"{path}: {err}") from None


def _fail(path: Path, where: str, problem: str) -> WorkflowFileError:
    return WorkflowFileError(f"{path}: {where}: {problem}")


def _document(data: object, path: Path) -> Document:
    if not isinstance(data, Mapping):
        raise _fail(path, "top level", "expected a mapping with hpckernel-workflow, name and "
                    f"steps, found {type(data).__name__}")
    unknown = set(data) - _TOP
    if unknown:
        raise _fail(path, "top level", f"unknown keys {sorted(map(str, unknown))}; allowed: "
                    f"{sorted(_TOP)}")
    if data.get("hpckernel-workflow") != VERSION:
        raise _fail(path, "hpckernel-workflow", f"expected {VERSION}, found "
                    f"{data.get('hpckernel-workflow')!r} (not a workflow file, or a newer one)")
    name = check_name(data.get("name"), "workflow")
    python = data.get("python", sys.executable)
    if not isinstance(python, str) or not python:
        raise _fail(path, "python", f"expected the path of a Python interpreter, not {python!r}")
    steps_data = data.get("steps")
    if not isinstance(steps_data, Mapping) or not steps_data:
        raise _fail(path, "steps", "expected a mapping of step names to steps")
    doc = Document(name=name, path=path, python=python)
    for step_name, entry in steps_data.items():
        check_name(step_name)
        step, runs = _step(path, step_name, entry)
        doc.steps[step_name] = step
        doc.runs[step_name] = runs
    for step in doc.steps.values():
        # Files are checked at submit time: a moved script must not stop a re-attach.
        check_step(step, list(doc.steps), doc.layout.base, files=False)
    graph.order(doc.steps)  # cycles
    return doc


def _step(path: Path, name: str, entry: object) -> tuple[Step, list[Run]]:
    where = f"step {name!r}"
    if not isinstance(entry, Mapping):
        raise _fail(path, where, f"expected a mapping, found {entry!r}")
    kind = entry.get("kind")
    if kind not in KINDS:
        raise _fail(path, where, f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    unknown = set(entry) - _COMMON - _BY_KIND[kind]
    if unknown:
        raise _fail(path, where, f"unknown keys {sorted(map(str, unknown))} for a {kind} step; "
                    f"allowed: {sorted(_COMMON | _BY_KIND[kind])}")
    after = entry.get("after") or []
    if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
        raise _fail(path, where, f"after must be a list of step names, not {after!r}")
    options = entry.get("sbatch") or {}
    if not isinstance(options, Mapping):
        raise _fail(path, where, f"sbatch must be a mapping of option names to values, "
                    f"not {options!r}")
    sbatch_args = entry.get("sbatch_args") or []
    if not isinstance(sbatch_args, list) or not all(isinstance(a, str) for a in sbatch_args):
        raise _fail(path, where, f"sbatch_args must be a list of strings, not {sbatch_args!r}")
    for key in _STRINGS & set(entry):
        if entry[key] is not None and not isinstance(entry[key], str):
            raise _fail(path, where, f"{key} must be a string, not {entry[key]!r}")
    parameters = entry.get("parameters") or {}
    if not isinstance(parameters, Mapping):
        raise _fail(path, where, f"parameters must be a mapping, not {parameters!r}")
    ranks = entry.get("ranks")
    if ranks is not None and (isinstance(ranks, bool) or not isinstance(ranks, int)):
        raise _fail(path, where, f"ranks must be an integer, not {ranks!r}")
    step = Step(name=name, kind=kind, after=tuple(after),
                options=normalise_options(options, name),
                sbatch_args=tuple(sbatch_args), script=entry.get("script"),
                command=entry.get("command"), notebook=entry.get("notebook"),
                parameters=dict(parameters), call=entry.get("call"),
                label=entry.get("label") or "", ranks=ranks, note=entry.get("note") or "")
    return step, _runs(path, where, entry.get("runs") or [])


def _runs(path: Path, where: str, runs: object) -> list[Run]:
    if not isinstance(runs, list):
        raise _fail(path, where, f"runs must be a list of job records, not {runs!r}")
    out = []
    for i, record in enumerate(runs):
        here = f"{where}, runs[{i}]"
        if not isinstance(record, Mapping):
            raise _fail(path, here, f"expected a mapping, found {record!r}")
        unknown = set(record) - set(RUN_FIELDS)
        if unknown:
            raise _fail(path, here, f"unknown keys {sorted(map(str, unknown))}")
        job_id = str(record.get("job_id", ""))
        if not job_id.isdigit():
            raise _fail(path, here, f"job_id must be a Slurm job id, not {record.get('job_id')!r}")
        for key in ("submitted", "command", "script"):
            if not isinstance(record.get(key), str):
                raise _fail(path, here, f"{key} must be a string, not {record.get(key)!r}")
        attempt = record.get("attempt", i + 1)
        if isinstance(attempt, bool) or not isinstance(attempt, int):
            raise _fail(path, here, f"attempt must be an integer, not {attempt!r}")
        nodes = record.get("nodes", [])
        if not isinstance(nodes, list):
            raise _fail(path, here, f"nodes must be a list, not {nodes!r}")
        out.append(Run.from_dict({**record, "job_id": job_id, "attempt": attempt}))
    return out
