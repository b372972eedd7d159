"""What a workflow is made of: `Step` (one Slurm job to be) and the checks on its definition.

Built by `Workflow.batch/function/notebook/gate` (workflow.py) and by the YAML reader
(fileformat.py), both of which call `check_step`, so a step from code and a step from a file
pass the same checks. Paths in a step are kept as written, relative to the workflow file's
directory (`base`), so a workflow directory can be moved or shared as a whole.
"""

from __future__ import annotations

import json
import keyword
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DefinitionError

KINDS = ("batch", "function", "notebook", "gate")
OptionValue = str | int | float | bool
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_OPTION = re.compile(r"^[a-z][a-z0-9_-]*$")
# Options the workflow sets itself; letting a step set them would break its dependencies,
# its gate or `sbatch --parsable`.
RESERVED_OPTIONS = frozenset({"dependency", "hold", "wrap", "parsable", "kill-on-invalid-dep",
                              "test-only", "array"})


@dataclass(frozen=True, eq=False)
class Step:
    """One step of a workflow; becomes one Slurm job per attempt.

    Returned by `Workflow.batch()` & co. so that it can be passed in another step's `after`.
    """

    name: str
    kind: str
    """"batch", "function", "notebook" or "gate"."""
    after: tuple[str, ...] = ()
    """Names of the steps that must complete first (`--dependency=afterok:...`)."""
    options: Mapping[str, OptionValue] = field(default_factory=dict)
    """sbatch options by long name with dashes ({"ntasks-per-node": 2, "exclusive": True})."""
    sbatch_args: tuple[str, ...] = ()
    """Extra sbatch arguments passed as they are."""
    script: str | None = None
    """batch: the batch script's path, relative to the workflow directory."""
    command: str | None = None
    """batch: an inline shell command instead of a script."""
    notebook: str | None = None
    """notebook: the notebook's path, relative to the workflow directory."""
    parameters: Mapping[str, object] = field(default_factory=dict)
    """notebook: values injected after the cell tagged "parameters"."""
    call: str | None = None
    """function: path of the cloudpickled (function, args, kwargs), relative to the workflow
    directory."""
    label: str = ""
    """function: the callable's qualified name, for people."""
    ranks: int | None = None
    """function: run under `srun` on this many ranks (None: once, in the batch shell)."""
    note: str = ""
    """gate: what the person should look at before approving."""

    def __repr__(self) -> str:
        after = f" after {', '.join(self.after)}" if self.after else ""
        return f"<{self.kind} step {self.name!r}{after}>"


def check_name(name: object, what: str = "step") -> str:
    """A step or workflow name: used in job names and file names, so kept plain."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise DefinitionError(f"{what} name {name!r} is not allowed: use letters, digits, '_' "
                              "and '-' (up to 64, starting with a letter or '_')")
    return name


def after_names(after: object) -> tuple[str, ...]:
    """`after=` as given (a Step, a name, or a list of them) -> tuple of names."""
    if after is None:
        return ()
    items: Iterable[object] = [after] if isinstance(after, Step | str) else after  # type: ignore[assignment]
    try:
        given = list(items)
    except TypeError:
        raise DefinitionError(f"after={after!r}: give a step, a step name or a list of them"
                              ) from None
    names = []
    for item in given:
        if not isinstance(item, Step | str):
            raise DefinitionError(f"after={after!r}: {item!r} is neither a step nor a name")
        names.append(item.name if isinstance(item, Step) else item)
    return tuple(names)


def normalise_options(options: Mapping[str, object], step: str) -> dict[str, OptionValue]:
    """sbatch keyword options (`ntasks_per_node=2`) -> {"ntasks-per-node": 2}, checked."""
    out: dict[str, OptionValue] = {}
    for key, value in options.items():
        if not isinstance(key, str) or not _OPTION.match(key.lower()):
            raise DefinitionError(f"step {step!r}: {key!r} is not an sbatch option name")
        name = key.lower().replace("_", "-")
        if name in RESERVED_OPTIONS:
            hint = " (use after=[...])" if name == "dependency" else ""
            raise DefinitionError(f"step {step!r}: the workflow sets --{name} itself{hint}")
        if value is None or value is False:
            continue
        if not isinstance(value, str | int | float | bool):
            raise DefinitionError(f"step {step!r}: sbatch option {key}={value!r} must be a "
                                  "string, number or True")
        out[name] = value
    return out


def option_args(options: Mapping[str, OptionValue]) -> list[str]:
    """{"nodes": 2, "exclusive": True} -> ["--nodes=2", "--exclusive"]."""
    return [f"--{k}" if v is True else f"--{k}={v}" for k, v in options.items()]


def check_parameters(parameters: object, step: str) -> dict[str, object]:
    """Notebook parameters: identifiers mapped to JSON values (they travel through YAML and
    become Python literals in the injected cell)."""
    if not isinstance(parameters, Mapping):
        raise DefinitionError(f"step {step!r}: parameters must be a dict, not {parameters!r}")
    for key in parameters:
        if not isinstance(key, str) or not key.isidentifier() or keyword.iskeyword(key):
            raise DefinitionError(f"step {step!r}: parameter name {key!r} is not a Python "
                                  "identifier")
    try:
        json.dumps(dict(parameters), allow_nan=False)
    except (TypeError, ValueError) as err:
        raise DefinitionError(f"step {step!r}: parameters must be plain data (str, numbers, "
                              f"bools, None, lists, dicts): {err}") from None
    return dict(parameters)


def check_step(step: Step, known: Sequence[str], base: Path, *, files: bool = True) -> None:
    """Raise `DefinitionError` if `step` cannot be submitted as defined.

    `known` are the names of the steps defined before it (from code) or all steps (from a
    file, where `graph.order` then finds cycles). Scripts and notebooks are looked for under
    `base` unless `files` is false (reading a file back: they are checked at submit time).
    """
    name = check_name(step.name)
    if step.kind not in KINDS:
        raise DefinitionError(f"step {name!r}: unknown kind {step.kind!r}; one of "
                              f"{', '.join(KINDS)}")
    if name in step.after:
        raise DefinitionError(f"step {name!r} cannot come after itself")
    for up in step.after:
        if up not in known:
            raise DefinitionError(
                f"step {name!r}: after names unknown step {up!r}; known steps: "
                f"{', '.join(known) or 'none'} (define a step before the steps that follow it)")
    if len(set(step.after)) != len(step.after):
        raise DefinitionError(f"step {name!r}: after lists a step twice: {list(step.after)}")
    for arg in step.sbatch_args:
        if not isinstance(arg, str):
            raise DefinitionError(f"step {name!r}: sbatch_args must be strings, got {arg!r}")
        if arg.split("=")[0].lstrip("-") in RESERVED_OPTIONS:
            raise DefinitionError(f"step {name!r}: the workflow sets {arg.split('=')[0]} itself")
    normalise_options(step.options, name)
    if step.kind == "batch":
        if (step.script is None) == (step.command is None):
            raise DefinitionError(f"batch step {name!r}: give either script= (a file) or "
                                  "command= (a shell command), not both or neither")
        if step.script is not None:
            if files:
                check_script(base / step.script, name)
        elif not isinstance(step.command, str) or not step.command.strip():
            raise DefinitionError(f"batch step {name!r}: command= must be a non-empty string")
    elif step.kind == "notebook":
        if not step.notebook:
            raise DefinitionError(f"notebook step {name!r}: no notebook given")
        if files:
            check_file(base / step.notebook, name, "notebook")
        check_parameters(step.parameters, name)
    elif step.kind == "function":
        if not step.call:
            raise DefinitionError(f"function step {name!r}: no pickled call recorded")
        if files and not (base / step.call).is_file():
            raise DefinitionError(f"function step {name!r}: its pickled call {step.call!r} is "
                                  "missing: define the step again with wf.function(...)")
        if step.ranks is not None and (not isinstance(step.ranks, int) or step.ranks < 1):
            raise DefinitionError(f"function step {name!r}: ranks must be a positive integer, "
                                  f"not {step.ranks!r}")


def check_file(path: Path, step: str, what: str) -> None:
    """DefinitionError unless ``path`` (a step's script or notebook) is a file."""
    if not path.is_file():
        raise DefinitionError(f"step {step!r}: {what} {str(path)!r} does not exist (paths are "
                              "relative to the workflow file's directory)")


def check_script(path: Path, step: str) -> None:
    """sbatch rejects a script without an interpreter line; say so before submitting."""
    check_file(path, step, "script")
    with path.open("rb") as f:
        if f.read(2) != b"#!":
            raise DefinitionError(f"step {step!r}: script {str(path)!r} does not start with "
                                  "'#!': sbatch needs an interpreter line such as #!/bin/bash")
